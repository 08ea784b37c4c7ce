/* int8 kernel of the matmul family: BATCH_MATMUL of two activations (eedge.ops.matmul). */
#ifndef EEDGE_KERNELS_MATMUL_H
#define EEDGE_KERNELS_MATMUL_H

#include <stdint.h>

typedef struct {
    int32_t batch[3];           /* output batch axes, outermost first, padded with leading 1s */
    int32_t lhs_step[3];        /* elements lhs advances per index of each batch axis (0: broadcast) */
    int32_t rhs_step[3];
    int32_t rows, cols, depth;  /* M, N, K: lhs (M, K) x rhs (K, N) -> (M, N) per batch */
    int32_t adj_x;              /* 1: lhs is stored (K, M) */
    int32_t adj_y;              /* 1: rhs is stored (N, K) */
    int32_t lhs_offset, rhs_offset;  /* -zero points */
    int32_t out_offset;         /* +output zero point */
    int32_t multiplier, shift;
    int32_t *scratch;           /* M + N words of row sums, then (adj_y ? 0 : N*K) +
                                 * (adj_x ? M*K : 0) bytes of packed operands; the model's */
} eedge_batch_matmul_params;

/* output must not overlap lhs or rhs (the planner never aliases it). */
void eedge_batch_matmul_s8(const eedge_batch_matmul_params *p, const int8_t *lhs,
                           const int8_t *rhs, int8_t *output);

#endif /* EEDGE_KERNELS_MATMUL_H */
