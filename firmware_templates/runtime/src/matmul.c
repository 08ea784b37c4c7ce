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
 * M*N*K multiply-accumulates. The offsets are applied per output from row sums
 * of lhs and column sums of rhs (computed once per distinct matrix), so the
 * inner loop multiplies raw bytes. The product works on 2x2 blocks (two lhs
 * rows against two rhs columns: four accumulators share every loaded byte). On
 * Cortex-M with the DSP extension (EEDGE_USE_DSP) one word load brings four
 * bytes of each operand, SXTB16 widens them into 16-bit lanes and SMLAD does
 * two multiply-accumulates per instruction.
 */
#include "eedge/dsp.h"
#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"

/* Out of line: inlined into the loops around it, its inner loop ran out of registers
 * (spills inside the loop cost a third more instructions on Cortex-M4). */
#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

/* acc[2*i + j] = sum over k < n of li[k] * rj[k] for i, j in {0, 1}, where l1 = l0 + l_step
 * and r1 = r0 + r_step (a step of 0 repeats a lone last row or column). Raw bytes: the
 * offsets are applied afterwards from row and column sums, which keeps the inner loop
 * within the registers (four sums, two pointers, two steps, the unpacked lanes). */
static NOINLINE void dot_2x2(const int8_t *l0, int32_t l_step, const int8_t *r0,
                             int32_t r_step, int32_t n, int32_t acc[4]) {
    int32_t a00 = 0, a01 = 0, a10 = 0, a11 = 0;
    int32_t k;
#if defined(EEDGE_USE_DSP)
    const int8_t *const end = l0 + (n & ~3);
    for (; l0 < end; l0 += 4, r0 += 4) {
        const int32_t x0 = load_i32(l0), x1 = load_i32(l0 + l_step);
        const int32_t y0 = load_i32(r0), y1 = load_i32(r0 + r_step);
        const int32_t x0e = __sxtb16(x0), x1e = __sxtb16(x1);
        const int32_t y0e = __sxtb16(y0), y1e = __sxtb16(y1);
        a00 = __smlad(x0e, y0e, a00);
        a01 = __smlad(x0e, y1e, a01);
        a10 = __smlad(x1e, y0e, a10);
        a11 = __smlad(x1e, y1e, a11);
        {
            const int32_t x0o = sxtb16_ror8(x0), x1o = sxtb16_ror8(x1);
            const int32_t y0o = sxtb16_ror8(y0), y1o = sxtb16_ror8(y1);
            a00 = __smlad(x0o, y0o, a00);
            a01 = __smlad(x0o, y1o, a01);
            a10 = __smlad(x1o, y0o, a10);
            a11 = __smlad(x1o, y1o, a11);
        }
    }
    n &= 3;
#endif
    for (k = 0; k < n; ++k) {
        const int32_t x0 = l0[k], x1 = l0[l_step + k];
        const int32_t y0 = r0[k], y1 = r0[r_step + k];
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

/* sums[r] = sum of row r of x (rows, n) */
static void row_sums(const int8_t *x, int32_t rows, int32_t n, int32_t *sums) {
    int32_t r, k;
    for (r = 0; r < rows; ++r, x += n) {
        int32_t s = 0;
        k = 0;
#if defined(EEDGE_USE_DSP)
        for (; k + 4 <= n; k += 4) {
            const int32_t v = load_i32(x + k);
            s = __smlad(__sxtb16(v), 0x00010001, s);
            s = __smlad(sxtb16_ror8(v), 0x00010001, s);
        }
#endif
        for (; k < n; ++k) {
            s += x[k];
        }
        sums[r] = s;
    }
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

/* The output stage's constants in locals (passed by value): `out` is an int8_t pointer,
 * which may alias *p, so fields read through p would be reloaded after every store. */
typedef struct {
    int32_t lhs_offset, rhs_offset, multiplier, shift, out_offset;
    uint32_t constant;   /* K * lhs_offset * rhs_offset */
} bmm_out;

/* sum (l + lo)(r + ro) = sum l*r + ro * sum l + lo * sum r + K * lo * ro; the terms are
 * added modulo 2^32 (unsigned), which gives the exact int32 total the generator bounds.
 * One row's raw sums at a time, in a loop of its own: inside the block loop the output
 * stage's constants did not fit the registers (every output reloaded them). */
static NOINLINE void requantize_row(bmm_out o, const int32_t *raw, int32_t lsum,
                                    const int32_t *rsum, int32_t count, int8_t *out) {
    const uint32_t row_term = (uint32_t)(o.rhs_offset * lsum) + o.constant;
    int32_t i;
    if (o.shift <= 0) {
        /* as conv.c's FC output stage: for |total| < 2^30 the doubling high multiply is
         * the rounded high word of twice the total times m (SMMULR on the DSP path) and
         * the rounding shift cannot overflow; larger totals take the general arithmetic */
        const int32_t m = o.multiplier, r = -o.shift;
        const int32_t half = r > 0 ? (int32_t)(1u << (r - 1)) : 0, neg = r > 0 ? -1 : 0;
        for (i = 0; i < count; ++i) {
            const int32_t x = (int32_t)((uint32_t)raw[i] + row_term +
                                        (uint32_t)(o.lhs_offset * rsum[i]));
            int32_t v;
            if ((uint32_t)x + 0x40000000u < 0x80000000u) {
                const int32_t h = eedge_high_mul_small((int32_t)((uint32_t)x << 1), m);
                v = (int32_t)((uint32_t)h + (uint32_t)half + (uint32_t)((h >> 31) & neg)) >> r;
            } else {
                v = eedge_requantize(x, m, o.shift);
            }
            out[i] = (int8_t)eedge_clamp(v + o.out_offset, -128, 127);
        }
        return;
    }
    for (i = 0; i < count; ++i) {
        const uint32_t total = (uint32_t)raw[i] + row_term + (uint32_t)(o.lhs_offset * rsum[i]);
        out[i] = (int8_t)eedge_clamp(eedge_requantize((int32_t)total, o.multiplier, o.shift) +
                                     o.out_offset, -128, 127);
    }
}

#define BMM_CHUNK 32   /* columns per pass: two rows of raw sums on the stack (256 bytes) */

/* One (M, K) x (N, K)^T product, both operands contiguous along K, with their row sums. */
static void matmul_one(const eedge_batch_matmul_params *p, const int8_t *lhs,
                       const int8_t *rhs_t, const int32_t *lsum, const int32_t *rsum,
                       int8_t *out) {
    const int32_t M = p->rows, N = p->cols, K = p->depth;
    const bmm_out o = {p->lhs_offset, p->rhs_offset, p->multiplier, p->shift, p->out_offset,
                       (uint32_t)(K * p->lhs_offset * p->rhs_offset)};
    int32_t m, n0, n, acc[4], raw0[BMM_CHUNK], raw1[BMM_CHUNK];
    for (m = 0; m < M; m += 2) {
        const int8_t *l0 = lhs + m * K;
        const int32_t two_rows = m + 1 < M;
        int8_t *o0 = out + m * N;
        for (n0 = 0; n0 < N; n0 += BMM_CHUNK) {
            const int32_t count = N - n0 < BMM_CHUNK ? N - n0 : BMM_CHUNK;
            for (n = 0; n < count; n += 2) {
                const int32_t two_cols = n + 1 < count;
                dot_2x2(l0, two_rows ? K : 0, rhs_t + (n0 + n) * K, two_cols ? K : 0, K, acc);
                raw0[n] = acc[0];
                raw1[n] = acc[2];
                if (two_cols) {
                    raw0[n + 1] = acc[1];
                    raw1[n + 1] = acc[3];
                }
            }
            requantize_row(o, raw0, lsum[m], rsum + n0, count, o0 + n0);
            if (two_rows) {
                requantize_row(o, raw1, lsum[m + 1], rsum + n0, count, o0 + N + n0);
            }
        }
    }
}

void eedge_batch_matmul_s8(const eedge_batch_matmul_params *p, const int8_t *lhs,
                           const int8_t *rhs, int8_t *output) {
    const int32_t M = p->rows, N = p->cols, K = p->depth;
    int32_t *lsum = p->scratch;                                    /* M row sums of lhs */
    int32_t *rsum = lsum + M;                                      /* N column sums of rhs */
    int8_t *packed_rhs = (int8_t *)(rsum + N);                     /* (N, K) unless adj_y */
    int8_t *packed_lhs = packed_rhs + (p->adj_y ? 0 : N * K);      /* (M, K) if adj_x */
    const int8_t *rhs_done = 0, *lhs_done = 0;  /* the matrices the sums (and packs) hold */
    int8_t *out = output;
    int32_t b0, b1, b2;
    for (b0 = 0; b0 < p->batch[0]; ++b0) {
        for (b1 = 0; b1 < p->batch[1]; ++b1) {
            for (b2 = 0; b2 < p->batch[2]; ++b2) {
                const int8_t *l = lhs + b0 * p->lhs_step[0] + b1 * p->lhs_step[1] +
                                  b2 * p->lhs_step[2];
                const int8_t *r = rhs + b0 * p->rhs_step[0] + b1 * p->rhs_step[1] +
                                  b2 * p->rhs_step[2];
                const int8_t *l_rows = p->adj_x ? packed_lhs : l;
                const int8_t *r_rows = p->adj_y ? r : packed_rhs;
                if (r != rhs_done) {
                    if (!p->adj_y) {
                        transpose_s8(r, K, N, packed_rhs);
                    }
                    row_sums(r_rows, N, K, rsum);
                    rhs_done = r;
                }
                if (l != lhs_done) {
                    if (p->adj_x) {
                        transpose_s8(l, K, M, packed_lhs);
                    }
                    row_sums(l_rows, M, K, lsum);
                    lhs_done = l;
                }
                matmul_one(p, l_rows, r_rows, lsum, rsum, out);
                out += M * N;
            }
        }
    }
}
