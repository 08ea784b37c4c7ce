/* Fully connected layers, int8: one input vector, or many rows against the same
 * weights (keep_num_dims), bit-exact with TFLite Micro's reference kernel. */
#include "eedge/dot_s8.h"
#include "eedge/kernels.h"
#include "eedge/kernels_mve.h"

/* Four weight rows against one int8 vector: the vector is unpacked once per step. */
static void dot_4x1(const int8_t *w, int32_t stride, const int8_t *x, int32_t n,
                    int32_t offset, int32_t acc[4]) {
    const int8_t *w0 = w, *w1 = w + stride, *w2 = w + 2 * stride, *w3 = w + 3 * stride;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int32_t i = 0;
#if defined(EEDGE_USE_DSP)
    const int32_t offsets = (int32_t)(((uint32_t)(uint16_t)offset << 16) | (uint16_t)offset);
    for (; i + 4 <= n; i += 4) {
        const int32_t xv = load_i32(x + i);
        const int32_t xe = __sxtab16(offsets, xv), xo = sxtab16_ror8(offsets, xv);
        int32_t v = load_i32(w0 + i);
        a0 = __smlad(xe, __sxtb16(v), a0);
        a0 = __smlad(xo, sxtb16_ror8(v), a0);
        v = load_i32(w1 + i);
        a1 = __smlad(xe, __sxtb16(v), a1);
        a1 = __smlad(xo, sxtb16_ror8(v), a1);
        v = load_i32(w2 + i);
        a2 = __smlad(xe, __sxtb16(v), a2);
        a2 = __smlad(xo, sxtb16_ror8(v), a2);
        v = load_i32(w3 + i);
        a3 = __smlad(xe, __sxtb16(v), a3);
        a3 = __smlad(xo, sxtb16_ror8(v), a3);
    }
#endif
    for (; i < n; ++i) {
        const int32_t xi = x[i] + offset;
        a0 += w0[i] * xi;
        a1 += w1[i] * xi;
        a2 += w2[i] * xi;
        a3 += w3[i] * xi;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* The output stage of one row: int32 sums (bias included) to int8. A separate loop with
 * few live values: inside the block loop the requantization constants spill. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void fc_requantize_row(const int32_t *acc, int32_t n, const int32_t *multiplier,
                              const int32_t *shift, int32_t per_channel, int32_t out_offset,
                              int32_t low, int32_t high, int8_t *out) {
    int32_t i;
    if (!per_channel && shift[0] <= 0) {
        /* One multiplier (m > 0, never INT32_MIN) and a right shift r. For |x| < 2^30 the
         * doubling high multiply floor((x m + 2^30) / 2^31) is the rounded high word of
         * (2x) m (SMMULR on the DSP path) and the rounding shift is (v + half - (v < 0))
         * >> r without overflow (|v| <= |x|); larger sums take the general arithmetic. */
        const int32_t m = multiplier[0], r = -shift[0];
        const int32_t half = r > 0 ? (int32_t)(1u << (r - 1)) : 0, neg = r > 0 ? -1 : 0;
        for (i = 0; i < n; ++i) {
            const int32_t x = acc[i];
            int32_t v;
            if ((uint32_t)x + 0x40000000u < 0x80000000u) {
                const int32_t h = eedge_high_mul_small((int32_t)((uint32_t)x << 1), m);
                v = (int32_t)((uint32_t)h + (uint32_t)half + (uint32_t)((h >> 31) & neg)) >> r;
            } else {
                v = eedge_requantize(x, m, -r);
            }
            out[i] = (int8_t)eedge_clamp(v + out_offset, low, high);
        }
        return;
    }
    if (per_channel) {
        for (i = 0; i < n; ++i) {
            const int32_t v = eedge_requantize(acc[i], multiplier[i], shift[i]) + out_offset;
            out[i] = (int8_t)eedge_clamp(v, low, high);
        }
    } else {
        const int32_t m = multiplier[0], sh = shift[0];
        for (i = 0; i < n; ++i) {
            const int32_t v = eedge_requantize(acc[i], m, sh) + out_offset;
            out[i] = (int8_t)eedge_clamp(v, low, high);
        }
    }
}

#define FC_CHUNK 16

/* Packed weights (eedge_fc_params.packed), written by the emitter (emit.py, _fc_pack):
 * in_depth = 4 nb + rem. Rows come in blocks of four: nb groups of four words, group k
 * holding bytes 4k..4k+3 of rows 0, 1, 2, 3 (byte j of a word in bits 8j..8j+7), then,
 * when rem > 0, one word per row with its last rem bytes (zeros above). The out_depth % 4
 * last rows follow one by one: nb words, and a tail word when rem > 0. A block reads one
 * word stream (two LDRD per four inputs) instead of four row pointers, which leaves the
 * loop enough registers to keep everything out of the stack. The sums start from
 * folded_bias = bias + in_offset * sum(w), so the input needs no offset; sums wrap modulo
 * 2^32 (SMLAD does, the C adds in uint32_t) and the final one is exact because the
 * emitter checked that every true sum fits in int32 (check_accumulator). */

/* byte j (0..3) of a packed word, as a signed weight */
static inline int32_t fc_byte(int32_t word, int32_t j) {
    return (int32_t)(int8_t)(uint8_t)((uint32_t)word >> (8 * j));
}

/* byte i of the word stream in packing order (byte i & 3 of word i >> 2): on a
 * little-endian CPU that is the i-th byte in memory (a character-type read) */
static inline int32_t fc_stream_byte(const int32_t *w, int32_t i) {
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return ((const int8_t *)w)[i];
#else
    return fc_byte(w[i >> 2], i & 3);
#endif
}

/* sums of four rows (one block) against x (xw: x widened to 16-bit lanes, two words per
 * four inputs, or 0); returns the block's end in the stream */
static const int32_t *fc_block4(const int32_t *w, const int8_t *x, const int32_t *xw,
                                int32_t nb, int32_t rem, const int32_t *bias,
                                int32_t acc[4]) {
    int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
    int32_t k, j;
#if defined(EEDGE_USE_DSP) && defined(__GNUC__)
    if (nb > 0) {
        /* two groups (8 inputs x 4 rows) per pass; an odd count enters at the second */
        int32_t xe, xo, t0, t1, s, odd = nb & 1;
#define FC_ROWS                                                                          \
    "ldrd %[t0], %[t1], [%[w]], #8\n\t"                                                  \
    "sxtb16 %[s], %[t0]\n\t"                                                             \
    "smlad %[a0], %[xe], %[s], %[a0]\n\t"                                                \
    "sxtb16 %[t0], %[t0], ror #8\n\t"                                                    \
    "smlad %[a0], %[xo], %[t0], %[a0]\n\t"                                               \
    "sxtb16 %[s], %[t1]\n\t"                                                             \
    "smlad %[a1], %[xe], %[s], %[a1]\n\t"                                                \
    "sxtb16 %[t1], %[t1], ror #8\n\t"                                                    \
    "smlad %[a1], %[xo], %[t1], %[a1]\n\t"                                               \
    "ldrd %[t0], %[t1], [%[w]], #8\n\t"                                                  \
    "sxtb16 %[s], %[t0]\n\t"                                                             \
    "smlad %[a2], %[xe], %[s], %[a2]\n\t"                                                \
    "sxtb16 %[t0], %[t0], ror #8\n\t"                                                    \
    "smlad %[a2], %[xo], %[t0], %[a2]\n\t"                                               \
    "sxtb16 %[s], %[t1]\n\t"                                                             \
    "smlad %[a3], %[xe], %[s], %[a3]\n\t"                                                \
    "sxtb16 %[t1], %[t1], ror #8\n\t"                                                    \
    "smlad %[a3], %[xo], %[t1], %[a3]\n\t"
#define FC_X_BYTES                                                                       \
    "ldr %[xo], [%[xp]], #4\n\t"                                                         \
    "sxtb16 %[xe], %[xo]\n\t"                                                            \
    "sxtb16 %[xo], %[xo], ror #8\n\t"
#define FC_X_PAIRS "ldrd %[xe], %[xo], [%[xp]], #8\n\t"
        if (xw != 0) { /* the input widened once per layer: one LDRD per group */
            const int32_t *xp = xw, *end = xw + 2 * nb;
            __asm__ volatile("cmp %[odd], #0\n\t"
                             "bne 2f\n\t"
                             "1:\n\t" FC_X_PAIRS FC_ROWS
                             "2:\n\t" FC_X_PAIRS FC_ROWS
                             "cmp %[xp], %[end]\n\t"
                             "bne 1b\n\t"
                             : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
                               [xp] "+r"(xp), [w] "+r"(w), [xe] "=&r"(xe), [xo] "=&r"(xo),
                               [t0] "=&r"(t0), [t1] "=&r"(t1), [s] "=&r"(s)
                             : [end] "r"(end), [odd] "r"(odd)
                             : "cc", "memory");
        } else {
            const int8_t *xp = x, *end = x + 4 * nb;
            __asm__ volatile("cmp %[odd], #0\n\t"
                             "bne 2f\n\t"
                             "1:\n\t" FC_X_BYTES FC_ROWS
                             "2:\n\t" FC_X_BYTES FC_ROWS
                             "cmp %[xp], %[end]\n\t"
                             "bne 1b\n\t"
                             : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
                               [xp] "+r"(xp), [w] "+r"(w), [xe] "=&r"(xe), [xo] "=&r"(xo),
                               [t0] "=&r"(t0), [t1] "=&r"(t1), [s] "=&r"(s)
                             : [end] "r"(end), [odd] "r"(odd)
                             : "cc", "memory");
        }
#undef FC_ROWS
#undef FC_X_BYTES
#undef FC_X_PAIRS
    }
#else
    for (k = 0; k < nb; ++k, w += 4) {
        uint32_t u0 = (uint32_t)a0, u1 = (uint32_t)a1, u2 = (uint32_t)a2, u3 = (uint32_t)a3;
        for (j = 0; j < 4; ++j) {
            const int32_t xj = x[4 * k + j];
            u0 += (uint32_t)(xj * fc_stream_byte(w, j));
            u1 += (uint32_t)(xj * fc_stream_byte(w, 4 + j));
            u2 += (uint32_t)(xj * fc_stream_byte(w, 8 + j));
            u3 += (uint32_t)(xj * fc_stream_byte(w, 12 + j));
        }
        a0 = (int32_t)u0;
        a1 = (int32_t)u1;
        a2 = (int32_t)u2;
        a3 = (int32_t)u3;
    }
#endif
    if (rem > 0) {
        uint32_t u0 = (uint32_t)a0, u1 = (uint32_t)a1, u2 = (uint32_t)a2, u3 = (uint32_t)a3;
        for (j = 0; j < rem; ++j) {
            const int32_t xj = x[4 * nb + j];
            u0 += (uint32_t)(xj * fc_byte(w[0], j));
            u1 += (uint32_t)(xj * fc_byte(w[1], j));
            u2 += (uint32_t)(xj * fc_byte(w[2], j));
            u3 += (uint32_t)(xj * fc_byte(w[3], j));
        }
        a0 = (int32_t)u0;
        a1 = (int32_t)u1;
        a2 = (int32_t)u2;
        a3 = (int32_t)u3;
        w += 4;
    }
    (void)k;
    (void)xw;
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    return w;
}

/* the sum of one row (the out_depth % 4 last ones); returns the row's end in the stream */
static const int32_t *fc_row1(const int32_t *w, const int8_t *x, int32_t nb, int32_t rem,
                              int32_t bias, int32_t *acc) {
    uint32_t u = (uint32_t)bias;
    int32_t k, j;
    for (k = 0; k < nb; ++k) {
#if defined(EEDGE_USE_DSP)
        const int32_t xv = load_i32(x + 4 * k);
        u = (uint32_t)__smlad(__sxtb16(xv), __sxtb16(w[k]), (int32_t)u);
        u = (uint32_t)__smlad(sxtb16_ror8(xv), sxtb16_ror8(w[k]), (int32_t)u);
#else
        for (j = 0; j < 4; ++j) {
            u += (uint32_t)(x[4 * k + j] * fc_stream_byte(w, 4 * k + j));
        }
#endif
    }
    w += nb;
    if (rem > 0) {
        for (j = 0; j < rem; ++j) {
            u += (uint32_t)(x[4 * nb + j] * fc_byte(w[0], j));
        }
        ++w;
    }
    *acc = (int32_t)u;
    return w;
}

/* one output from the host table {multiplier, 2^(r-1) + out_offset << r, r}: the sum is
 * within +-2^30, so the doubling high multiply is SMMULR of twice the sum and the rounding
 * shift (ties away from zero) adds -1 for a negative product; out_offset << r is a
 * multiple of 2^r, so adding it before the shift adds out_offset after it */
static inline int8_t fc_out(int32_t x, const int32_t *rq, int32_t low, int32_t high) {
    const int32_t h = eedge_high_mul_small((int32_t)((uint32_t)x << 1), rq[0]);
    const int32_t v = (int32_t)((uint32_t)h + (uint32_t)rq[1] + (uint32_t)(h >> 31)) >> rq[2];
    return (int8_t)eedge_clamp(v, low, high);
}

/* its own entry point, so a model links either this kernel or the unpacked one, not both */
void eedge_fully_connected_packed_s8(const eedge_fc_params *p, const int8_t *input,
                                     int8_t *output) {
#if defined(EEDGE_USE_MVE)
    /* Helium (MVE) kernel, *_mve.c: 0 for a shape it leaves to this one */
    if (eedge_fully_connected_s8_mve(p, input, 0, 0, output)) {
        return;
    }
#endif
    const int32_t out_depth = p->out_depth, nb = p->in_depth >> 2, rem = p->in_depth & 3;
    const int32_t per_channel = p->per_channel, low = p->act_min, high = p->act_max;
    const int32_t *w = p->packed, *bias = p->folded_bias, *rq = p->requant;
    const int32_t step = per_channel ? 3 : 0;
    int32_t oc = 0, acc[4];
    const int32_t *xw = 0;
#if defined(EEDGE_USE_DSP)
    if (p->scratch != 0) { /* the input widened once for all blocks (fc_block4) */
        int32_t k;
        for (k = 0; k < nb; ++k) {
            const int32_t v = load_i32(input + 4 * k);
            p->scratch[2 * k] = __sxtb16(v);
            p->scratch[2 * k + 1] = sxtb16_ror8(v);
        }
        xw = p->scratch;
    }
#endif
    if (rq != 0) { /* each block's four sums straight to int8 */
        for (; oc + 4 <= out_depth; oc += 4, rq += 4 * step) {
            w = fc_block4(w, input, xw, nb, rem, bias + oc, acc);
            output[oc] = fc_out(acc[0], rq, low, high);
            output[oc + 1] = fc_out(acc[1], rq + step, low, high);
            output[oc + 2] = fc_out(acc[2], rq + 2 * step, low, high);
            output[oc + 3] = fc_out(acc[3], rq + 3 * step, low, high);
        }
        for (; oc < out_depth; ++oc, rq += step) {
            w = fc_row1(w, input, nb, rem, bias[oc], acc);
            output[oc] = fc_out(acc[0], rq, low, high);
        }
        return;
    }
    for (; oc < out_depth; oc += 4) {
        const int32_t count = out_depth - oc < 4 ? out_depth - oc : 4;
        int32_t k = 0;
        if (count == 4) {
            w = fc_block4(w, input, xw, nb, rem, bias + oc, acc);
        } else {
            for (; k < count; ++k) {
                w = fc_row1(w, input, nb, rem, bias[oc + k], acc + k);
            }
        }
        for (k = 0; k < count; ++k) { /* rare (sums beyond 2^30, left shifts): general */
            const int32_t q = per_channel ? oc + k : 0;
            const int32_t v = eedge_requantize(acc[k], p->multiplier[q], p->shift[q]);
            output[oc + k] = (int8_t)eedge_clamp(v + p->out_offset, low, high);
        }
    }
}

void eedge_fully_connected_s8(const eedge_fc_params *p, const int8_t *input,
                              const int8_t *weights, const int32_t *bias, int8_t *output) {
#if defined(EEDGE_USE_MVE)
    /* Helium (MVE) kernel, *_mve.c: 0 for a shape it leaves to this one */
    if (eedge_fully_connected_s8_mve(p, input, weights, bias, output)) {
        return;
    }
#endif
    /* the parameters in locals: every int8 store may alias *p, so the compiler would
     * reload them for each output otherwise */
    const int32_t in_depth = p->in_depth, out_depth = p->out_depth, in_offset = p->in_offset;
    const int32_t out_offset = p->out_offset, low = p->act_min, high = p->act_max;
    const int32_t per_channel = p->per_channel;
    const int32_t *multiplier = p->multiplier, *shift = p->shift;
    int32_t oc, i;
    if (p->weight_offset != 0) { /* asymmetric weights: rare, kept simple */
        for (oc = 0; oc < out_depth; ++oc) {
            const int8_t *row = weights + oc * in_depth;
            const int32_t q = per_channel ? oc : 0;
            int32_t acc = 0;
            for (i = 0; i < in_depth; ++i) {
                acc += ((int32_t)input[i] + in_offset) * ((int32_t)row[i] + p->weight_offset);
            }
            output[oc] = finish(acc, bias, oc, multiplier[q], shift[q], out_offset, low, high);
        }
        return;
    }
    /* sums of up to FC_CHUNK outputs, then their output stage in one tight loop */
    for (oc = 0; oc < out_depth; oc += FC_CHUNK) {
        int32_t acc[FC_CHUNK], r, k;
        const int32_t count = out_depth - oc < FC_CHUNK ? out_depth - oc : FC_CHUNK;
        for (k = 0; k + 4 <= count; k += 4) {
            dot_4x1(weights + (oc + k) * in_depth, in_depth, input, in_depth, in_offset,
                    acc + k);
        }
        for (; k < count; ++k) {
            int32_t pair[4] = {0, 0, 0, 0};
            const int8_t *row = weights + (oc + k) * in_depth;
            dot_2x2(row, row, input, input, in_depth, in_offset, pair);
            acc[k] = pair[0];
        }
        if (bias != 0) {
            for (r = 0; r < count; ++r) {
                acc[r] += bias[oc + r];
            }
        }
        fc_requantize_row(acc, count, per_channel ? multiplier + oc : multiplier,
                          per_channel ? shift + oc : shift, per_channel, out_offset, low, high,
                          output + oc);
    }
}

/* Two weight rows (w, w + n) against two input rows (x, x + n): one stride for both pairs,
 * so the DSP loop needs one register less than dot_2x2 and keeps everything in registers.
 * acc = {w0.x0, w0.x1, w1.x0, w1.x1}. */
static inline void fc_block_2x2(const int8_t *w, const int8_t *x, int32_t n, int32_t offset,
                                int32_t acc[4]) {
    int32_t a00 = 0, a01 = 0, a10 = 0, a11 = 0;
    int32_t i = 0;
#if defined(EEDGE_USE_DSP)
    const int32_t offsets = (int32_t)(((uint32_t)(uint16_t)offset << 16) | (uint16_t)offset);
    for (; i + 4 <= n; i += 4) {
        const int32_t x0 = load_i32(x + i), x1 = load_i32(x + n + i);
        const int32_t x0e = __sxtab16(offsets, x0), x0o = sxtab16_ror8(offsets, x0);
        const int32_t x1e = __sxtab16(offsets, x1), x1o = sxtab16_ror8(offsets, x1);
        int32_t v = load_i32(w + i);
        int32_t we = __sxtb16(v), wo = sxtb16_ror8(v);
        a00 = __smlad(x0e, we, a00);
        a00 = __smlad(x0o, wo, a00);
        a01 = __smlad(x1e, we, a01);
        a01 = __smlad(x1o, wo, a01);
        v = load_i32(w + n + i);
        we = __sxtb16(v);
        wo = sxtb16_ror8(v);
        a10 = __smlad(x0e, we, a10);
        a10 = __smlad(x0o, wo, a10);
        a11 = __smlad(x1e, we, a11);
        a11 = __smlad(x1o, wo, a11);
    }
#endif
    for (; i < n; ++i) {
        const int32_t x0 = x[i] + offset, x1 = x[n + i] + offset;
        a00 += w[i] * x0;
        a01 += w[i] * x1;
        a10 += w[n + i] * x0;
        a11 += w[n + i] * x1;
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* `rows` input vectors (the tokens of a keep_num_dims FULLY_CONNECTED) against the same
 * weights: two rows and two output channels per block (fc_block_2x2), so each weight word
 * is loaded and widened once for two rows; the two rows' sums go to `scratch`
 * (2 x out_depth words) and are requantized row by row. An odd last row and asymmetric
 * weights take the one-row kernel. */
void eedge_fully_connected_rows_s8(const eedge_fc_params *p, int32_t rows, const int8_t *input,
                                   const int8_t *weights, const int32_t *bias, int8_t *output,
                                   int32_t *scratch) {
    const int32_t in_depth = p->in_depth, out_depth = p->out_depth, in_offset = p->in_offset;
    int32_t r = 0, oc;
    if (p->weight_offset == 0) {
        int32_t *acc0 = scratch, *acc1 = scratch + out_depth;
        for (; r + 2 <= rows; r += 2) {
            const int8_t *x0 = input + r * in_depth, *x1 = x0 + in_depth;
            int8_t *o0 = output + r * out_depth;
            for (oc = 0; oc + 2 <= out_depth; oc += 2) {
                int32_t acc[4];
                const int32_t b0 = bias != 0 ? bias[oc] : 0, b1 = bias != 0 ? bias[oc + 1] : 0;
                fc_block_2x2(weights + oc * in_depth, x0, in_depth, in_offset, acc);
                acc0[oc] = acc[0] + b0;
                acc1[oc] = acc[1] + b0;
                acc0[oc + 1] = acc[2] + b1;
                acc1[oc + 1] = acc[3] + b1;
            }
            if (oc < out_depth) {
                const int8_t *w0 = weights + oc * in_depth;
                const int32_t b0 = bias != 0 ? bias[oc] : 0;
                int32_t acc[4] = {0, 0, 0, 0};
                dot_2x2(w0, w0, x0, x1, in_depth, in_offset, acc);
                acc0[oc] = acc[0] + b0;
                acc1[oc] = acc[1] + b0;
            }
            fc_requantize_row(acc0, out_depth, p->multiplier, p->shift, p->per_channel,
                              p->out_offset, p->act_min, p->act_max, o0);
            fc_requantize_row(acc1, out_depth, p->multiplier, p->shift, p->per_channel,
                              p->out_offset, p->act_min, p->act_max, o0 + out_depth);
        }
    }
    for (; r < rows; ++r) {
        eedge_fully_connected_s8(p, input + r * in_depth, weights, bias, output + r * out_depth);
    }
}
