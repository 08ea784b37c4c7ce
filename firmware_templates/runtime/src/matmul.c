/* BATCH_MATMUL, int8: out = requantize(sum_k (lhs[m,k] + lo) * (rhs[k,n] + ro)), clamped.
 *
 * TFLite Micro's arithmetic (reference/batch_matmul.h): an exact int32 sum of
 * offset products, one MultiplyByQuantizedMultiplier, the output zero point, a
 * clamp to int8. Integer sums do not depend on their order, so the blocking and
 * SIMD below give its bytes exactly.
 *
 * Both operands are read along K. lhs rows (adj_x = 0) and rhs stored (N, K)
 * (adj_y = 1, attention's Q.K^T) already are contiguous along K and are read in
 * place; otherwise the operand is packed once per distinct matrix into the
 * model's scratch (K contiguous), which costs K*N (or M*K) byte moves against
 * M*N*K multiply-accumulates. The product then works on 2x2 blocks (two lhs
 * rows against two rhs columns: four accumulators share every loaded byte). On
 * Cortex-M with the DSP extension (EEDGE_USE_DSP) one word load brings four
 * bytes of each operand, SXTAB16 widens them into 16-bit lanes with the offset
 * added (|x + offset| <= 255 fits a lane), and SMLAD does two
 * multiply-accumulates per instruction.
 */
#include "eedge/dsp.h"
#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"

/* acc[2*i + j] = sum over n of (li[k] + lo) * (rj[k] + ro), i, j in {0, 1} */
static void dot_2x2(const int8_t *l0, const int8_t *l1, const int8_t *r0, const int8_t *r1,
                    int32_t n, int32_t lo, int32_t ro, int32_t acc[4]) {
    int32_t a00 = 0, a01 = 0, a10 = 0, a11 = 0;
    int32_t k = 0;
#if defined(EEDGE_USE_DSP)
    const int32_t lo2 = (int32_t)(((uint32_t)(uint16_t)lo << 16) | (uint16_t)lo);
    const int32_t ro2 = (int32_t)(((uint32_t)(uint16_t)ro << 16) | (uint16_t)ro);
    for (; k + 4 <= n; k += 4) {
        const int32_t x0 = load_i32(l0 + k), x1 = load_i32(l1 + k);
        const int32_t y0 = load_i32(r0 + k), y1 = load_i32(r1 + k);
        const int32_t x0e = __sxtab16(lo2, x0), x0o = sxtab16_ror8(lo2, x0);
        const int32_t x1e = __sxtab16(lo2, x1), x1o = sxtab16_ror8(lo2, x1);
        const int32_t y0e = __sxtab16(ro2, y0), y0o = sxtab16_ror8(ro2, y0);
        const int32_t y1e = __sxtab16(ro2, y1), y1o = sxtab16_ror8(ro2, y1);
        a00 = __smlad(x0e, y0e, a00);
        a00 = __smlad(x0o, y0o, a00);
        a01 = __smlad(x0e, y1e, a01);
        a01 = __smlad(x0o, y1o, a01);
        a10 = __smlad(x1e, y0e, a10);
        a10 = __smlad(x1o, y0o, a10);
        a11 = __smlad(x1e, y1e, a11);
        a11 = __smlad(x1o, y1o, a11);
    }
#endif
    for (; k < n; ++k) {
        const int32_t x0 = l0[k] + lo, x1 = l1[k] + lo;
        const int32_t y0 = r0[k] + ro, y1 = r1[k] + ro;
        a00 += x0 * y0;
        a01 += x0 * y1;
        a10 += x1 * y0;
        a11 += x1 * y1;
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* dst (cols, rows) = transpose of src (rows, cols) */
static void transpose_s8(const int8_t *src, int32_t rows, int32_t cols, int8_t *dst) {
    int32_t r, c;
    for (r = 0; r < rows; ++r) {
        for (c = 0; c < cols; ++c) {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

static inline int8_t finish(const eedge_batch_matmul_params *p, int32_t acc) {
    return (int8_t)eedge_clamp(eedge_requantize(acc, p->multiplier, p->shift) + p->out_offset,
                               -128, 127);
}

/* One (M, K) x (N, K)^T product, both operands contiguous along K. A lone last row or
 * column is computed against itself twice and written once. */
static void matmul_one(const eedge_batch_matmul_params *p, const int8_t *lhs,
                       const int8_t *rhs_t, int8_t *out) {
    const int32_t M = p->rows, N = p->cols, K = p->depth;
    int32_t m, n, acc[4];
    for (m = 0; m < M; m += 2) {
        const int8_t *l0 = lhs + m * K;
        const int8_t *l1 = m + 1 < M ? l0 + K : l0;
        int8_t *o0 = out + m * N;
        for (n = 0; n < N; n += 2) {
            const int8_t *r0 = rhs_t + n * K;
            const int8_t *r1 = n + 1 < N ? r0 + K : r0;
            dot_2x2(l0, l1, r0, r1, K, p->lhs_offset, p->rhs_offset, acc);
            o0[n] = finish(p, acc[0]);
            if (n + 1 < N) {
                o0[n + 1] = finish(p, acc[1]);
            }
            if (m + 1 < M) {
                o0[N + n] = finish(p, acc[2]);
                if (n + 1 < N) {
                    o0[N + n + 1] = finish(p, acc[3]);
                }
            }
        }
    }
}

void eedge_batch_matmul_s8(const eedge_batch_matmul_params *p, const int8_t *lhs,
                           const int8_t *rhs, int8_t *output) {
    const int32_t M = p->rows, N = p->cols, K = p->depth;
    int8_t *packed_rhs = (int8_t *)p->scratch;                      /* (N, K) unless adj_y */
    int8_t *packed_lhs = packed_rhs + (p->adj_y ? 0 : N * K);       /* (M, K) if adj_x */
    const int8_t *rhs_done = 0, *lhs_done = 0;  /* the matrices the packs hold */
    int8_t *out = output;
    int32_t b0, b1, b2;
    for (b0 = 0; b0 < p->batch[0]; ++b0) {
        for (b1 = 0; b1 < p->batch[1]; ++b1) {
            for (b2 = 0; b2 < p->batch[2]; ++b2) {
                const int8_t *l = lhs + b0 * p->lhs_step[0] + b1 * p->lhs_step[1] +
                                  b2 * p->lhs_step[2];
                const int8_t *r = rhs + b0 * p->rhs_step[0] + b1 * p->rhs_step[1] +
                                  b2 * p->rhs_step[2];
                if (!p->adj_y) {
                    if (r != rhs_done) {
                        transpose_s8(r, K, N, packed_rhs);
                        rhs_done = r;
                    }
                    r = packed_rhs;
                }
                if (p->adj_x) {
                    if (l != lhs_done) {
                        transpose_s8(l, K, M, packed_lhs);
                        lhs_done = l;
                    }
                    l = packed_lhs;
                }
                matmul_one(p, l, r, out);
                out += M * N;
            }
        }
    }
}
