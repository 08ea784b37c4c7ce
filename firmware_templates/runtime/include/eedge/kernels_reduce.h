/* int8 kernels of the reduce family: MEAN, SUM and REDUCE_MAX over any axes (eedge.ops.reductions). */
#ifndef EEDGE_KERNELS_REDUCE_H
#define EEDGE_KERNELS_REDUCE_H

#include <stdint.h>

#define EEDGE_REDUCE_MEAN 0
#define EEDGE_REDUCE_SUM 1
#define EEDGE_REDUCE_MAX 2

typedef struct {
    /* The input in canonical form: adjacent axes that are both reduced or both kept are
     * merged, unit axes dropped, and leading axes of size 1 pad it to four. */
    int32_t dims[4];
    int32_t reduce[4];          /* 1 where the axis is reduced */
    int32_t op;                 /* EEDGE_REDUCE_* */
    int32_t count;              /* input elements per output element */
    int32_t in_zero_point, out_zero_point;
    int32_t multiplier, shift;  /* MEAN (1/count folded in) and SUM; unused by MAX */
} eedge_reduce_params;

/* Output elements in row-major order of the kept axes (keep_dims or not: same bytes). */
void eedge_reduce_s8(const eedge_reduce_params *p, const int8_t *input, int8_t *output);

#endif /* EEDGE_KERNELS_REDUCE_H */
