/* Convolution, int8 NHWC.
 *
 * A GEMM over im2col columns. The receptive fields of two output pixels are
 * gathered once per pixel pair, already widened to 16 bits with the input offset
 * added (taps outside the image hold the input zero point, which becomes 0), and
 * reused for every output channel, two channels at a time (a 2x2 block: four
 * accumulators). Widening once per pixel instead of once per (pixel, channel)
 * takes the input's unpacking out of the inner loop, which then only loads,
 * unpacks the weights and multiply-accumulates.
 *
 * Column layout (int32 words, the two pixels interleaved so one pointer walks
 * both): for every 4 taps t0..t3 of the receptive field, pixel 0's words
 * (t0, t2) and (t1, t3), then pixel 1's, each word two 16-bit lanes (low lane
 * first). That is the lane order SXTB16 and SXTB16 ROR #8 give four weight bytes,
 * so one SMLAD multiplies matching taps with no reordering. A receptive field
 * whose size is not a multiple of 4 ends with lanes of 0.
 *
 * Integer sums do not depend on their order, so the DSP path (EEDGE_USE_DSP)
 * and the portable path give TFLite's reference bytes alike.
 */
#include <string.h>

#include "eedge/dsp.h"
#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"

/* Writes one pixel's receptive field, in tap order, into its column slot: bytes
 * are staged until four are there (runs need not start on a multiple of 4 when
 * in_c is not one), then widened into the slot's two words. */
typedef struct {
    int32_t *dst;       /* the slot's two words of the next group of 4 taps */
    int32_t offset;     /* input offset (-zero point) */
    int32_t staged;     /* bytes waiting in stage */
    int8_t stage[4];
} column_writer;

/* (b0 + offset, b2 + offset) and (b1 + offset, b3 + offset) as 16-bit lanes. */
static inline void widen4(column_writer *w, const int8_t *bytes) {
#if defined(EEDGE_USE_DSP)
    const int32_t offsets =
        (int32_t)(((uint32_t)(uint16_t)w->offset << 16) | (uint16_t)w->offset);
    const int32_t x = load_i32(bytes);
    w->dst[0] = __sxtab16(offsets, x);
    w->dst[1] = sxtab16_ror8(offsets, x);
#else
    const uint32_t v0 = (uint32_t)(bytes[0] + w->offset) & 0xFFFFu;
    const uint32_t v1 = (uint32_t)(bytes[1] + w->offset) & 0xFFFFu;
    const uint32_t v2 = (uint32_t)(bytes[2] + w->offset) & 0xFFFFu;
    const uint32_t v3 = (uint32_t)(bytes[3] + w->offset) & 0xFFFFu;
    w->dst[0] = (int32_t)(v0 | (v2 << 16));
    w->dst[1] = (int32_t)(v1 | (v3 << 16));
#endif
    w->dst += 4;
}

static void put_bytes(column_writer *w, const int8_t *src, int32_t n) {
    while (n > 0 && w->staged > 0) {
        w->stage[w->staged++] = *src++;
        --n;
        if (w->staged == 4) {
            widen4(w, w->stage);
            w->staged = 0;
        }
    }
    for (; n >= 4; n -= 4, src += 4) {
        widen4(w, src);
    }
    while (n-- > 0) {
        w->stage[w->staged++] = *src++;
    }
}

/* n taps outside the image: the zero point, 0 once offset */
static void put_padding(column_writer *w, int32_t n) {
    const int8_t zero_point = (int8_t)-w->offset;
    while (n > 0 && w->staged > 0) {
        put_bytes(w, &zero_point, 1);
        --n;
    }
    for (; n >= 4; n -= 4) {
        w->dst[0] = 0;
        w->dst[1] = 0;
        w->dst += 4;
    }
    while (n-- > 0) {
        w->stage[w->staged++] = zero_point;
    }
}

/* The receptive field of output pixel `pixel` into column slot `slot` (0 or 1). */
static void gather(const eedge_conv_params *p, const int8_t *input, int32_t pixel,
                   int32_t *column, int32_t slot) {
    const int32_t oy = pixel / p->out_w, ox = pixel % p->out_w;
    const int32_t y0 = oy * p->stride_h - p->pad_top;
    const int32_t x0 = ox * p->stride_w - p->pad_left;
    const int32_t row = p->k_w * p->in_c;
    column_writer w;
    int32_t ky, kx;
    w.dst = column + 2 * slot;
    w.offset = p->in_offset;
    w.staged = 0;
    for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = y0 + ky * p->dil_h;
        if (iy < 0 || iy >= p->in_h) {
            put_padding(&w, row);
        } else if (p->dil_w == 1 && x0 >= 0 && x0 + p->k_w <= p->in_w) {
            /* the whole kernel row lies inside the image: one contiguous run */
            put_bytes(&w, input + (iy * p->in_w + x0) * p->in_c, row);
        } else {
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = x0 + kx * p->dil_w;
                if (ix < 0 || ix >= p->in_w) {
                    put_padding(&w, p->in_c);
                } else {
                    put_bytes(&w, input + (iy * p->in_w + ix) * p->in_c, p->in_c);
                }
            }
        }
    }
    if (w.staged > 0) {
        put_padding(&w, 4 - w.staged);
    }
}

/* Two weight rows (k bytes each) against the two columns:
 * acc[2 * row + pixel] += sum over taps. */
static inline void dot_2x2(const int8_t *w0, const int8_t *w1, const int32_t *col, int32_t k,
                           int32_t acc[4]) {
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
#if defined(EEDGE_USE_DSP)
    int32_t n;
/* one group of 4 taps: u and v hold 4 weights of row 0 and of row 1 */
#define EEDGE_CONV_STEP(u, v)                                                             \
    do {                                                                                  \
        const int32_t ue = __sxtb16(u), uo = sxtb16_ror8(u);                             \
        const int32_t ve = __sxtb16(v), vo = sxtb16_ror8(v);                             \
        a00 = __smlad(col[0], ue, a00);                                                   \
        a00 = __smlad(col[1], uo, a00);                                                   \
        a01 = __smlad(col[2], ue, a01);                                                   \
        a01 = __smlad(col[3], uo, a01);                                                   \
        a10 = __smlad(col[0], ve, a10);                                                   \
        a10 = __smlad(col[1], vo, a10);                                                   \
        a11 = __smlad(col[2], ve, a11);                                                   \
        a11 = __smlad(col[3], vo, a11);                                                   \
        col += 4;                                                                         \
    } while (0)
    if ((k >> 2) > 0) {
        /* Two ldr, two ldrd, four sxtb16 and eight smlad per group of 4 taps: 14 values
         * live (4 sums, 4 pointers, 6 operands), every register Thumb code can use, so
         * the loop is written out: compiled C hoists the column loads and spills. ldr
         * reads the weights at any alignment; the column is word-aligned for ldrd. */
        const int8_t *end = w0 + (k & ~3);
        int32_t u, v, ue, ve, c0, c1;
        __asm__ volatile(
            "1:\n\t"
            "ldr %[u], [%[w0]], #4\n\t"
            "ldr %[v], [%[w1]], #4\n\t"
            "ldrd %[c0], %[c1], [%[col]], #8\n\t"
            "sxtb16 %[ue], %[u]\n\t"
            "sxtb16 %[u], %[u], ror #8\n\t"
            "sxtb16 %[ve], %[v]\n\t"
            "sxtb16 %[v], %[v], ror #8\n\t"
            "smlad %[a00], %[c0], %[ue], %[a00]\n\t"
            "smlad %[a00], %[c1], %[u], %[a00]\n\t"
            "smlad %[a10], %[c0], %[ve], %[a10]\n\t"
            "smlad %[a10], %[c1], %[v], %[a10]\n\t"
            "ldrd %[c0], %[c1], [%[col]], #8\n\t"
            "smlad %[a01], %[c0], %[ue], %[a01]\n\t"
            "smlad %[a01], %[c1], %[u], %[a01]\n\t"
            "smlad %[a11], %[c0], %[ve], %[a11]\n\t"
            "smlad %[a11], %[c1], %[v], %[a11]\n\t"
            "cmp %[w0], %[end]\n\t"
            "bne 1b"
            : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11),
              [w0] "+r"(w0), [w1] "+r"(w1), [col] "+r"(col), [u] "=&r"(u), [v] "=&r"(v),
              [ue] "=&r"(ue), [ve] "=&r"(ve), [c0] "=&r"(c0), [c1] "=&r"(c1)
            : [end] "r"(end)
            : "cc", "memory");
    }
    if ((k & 3) != 0) {
        /* the last 1-3 weights, zero-filled (the column's lanes there are 0 too) */
        uint32_t u = 0, v = 0;
        for (n = 0; n < (k & 3); ++n) {
            u |= (uint32_t)(uint8_t)w0[n] << (8 * n);
            v |= (uint32_t)(uint8_t)w1[n] << (8 * n);
        }
        EEDGE_CONV_STEP((int32_t)u, (int32_t)v);
    }
#undef EEDGE_CONV_STEP
#else
    int32_t i;
    for (i = 0; i < k; ++i) {
        /* tap i: word (i & 1) of its group, low lane for i % 4 < 2 */
        const int32_t *group = col + 4 * (i >> 2) + (i & 1);
        const int32_t lane = 16 * ((i >> 1) & 1);
        const int32_t x0 = (int32_t)(int16_t)(uint16_t)((uint32_t)group[0] >> lane);
        const int32_t x1 = (int32_t)(int16_t)(uint16_t)((uint32_t)group[2] >> lane);
        a00 += w0[i] * x0;
        a01 += w0[i] * x1;
        a10 += w1[i] * x0;
        a11 += w1[i] * x1;
    }
#endif
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* Output channels per output pass: their sums wait on the stack (two pixels), so the
 * requantization runs in its own loop with its constants in registers instead of
 * spilling them inside the block loop. */
#define EEDGE_CONV_CHUNK 16

/* n channels' sums of one or two pixels to int8 (o1 may be a dummy). */
static void output_stage(const eedge_conv_params *p, const int32_t *sums, int32_t oc0,
                         int32_t n, int8_t *o0, int8_t *o1) {
    const int32_t low = p->act_min, high = p->act_max;
    int32_t i;
    if (p->conv_requant != 0) {
        /* Every sum within +-2^30 and every shift r a right shift of 1..22 bits (checked
         * by the code generator): TFLite's doubling high multiply is the rounded high
         * word of 2 * sum * m (SMMULR), and its rounding shift with ties away from zero
         * is (h - (h < 0) + 2^(r-1)) >> r; the table's rounding term also holds the
         * output zero point times 2^r, which the shift turns into + zero point. */
        const int32_t *q = p->conv_requant + 3 * oc0;
        for (i = 0; i < n; ++i, q += 3) {
            const int32_t m = q[0], rounding = q[1], r = q[2];
            int32_t h0 = eedge_high_mul_small((int32_t)((uint32_t)sums[i] << 1), m);
            int32_t h1 = eedge_high_mul_small((int32_t)((uint32_t)sums[EEDGE_CONV_CHUNK + i] << 1),
                                              m);
            h0 = (h0 + (h0 >> 31) + rounding) >> r;
            h1 = (h1 + (h1 >> 31) + rounding) >> r;
            o0[i] = (int8_t)eedge_clamp(h0, low, high);
            o1[i] = (int8_t)eedge_clamp(h1, low, high);
        }
    } else {
        for (i = 0; i < n; ++i) {
            const int32_t m = p->multiplier[oc0 + i], s = p->shift[oc0 + i];
            o0[i] = (int8_t)eedge_clamp(eedge_requantize(sums[i], m, s) + p->out_offset, low,
                                        high);
            o1[i] = (int8_t)eedge_clamp(
                eedge_requantize(sums[EEDGE_CONV_CHUNK + i], m, s) + p->out_offset, low, high);
        }
    }
}

void eedge_conv2d_s8(const eedge_conv_params *p, const int8_t *input, const int8_t *weights,
                     const int32_t *bias, int8_t *output) {
    const int32_t k = p->k_h * p->k_w * p->in_c;
    const int32_t pixels = p->out_h * p->out_w;
    const int32_t out_c = p->out_c;
    int32_t *column = p->scratch;
    int32_t sums[2 * EEDGE_CONV_CHUNK];
    int8_t dummy[EEDGE_CONV_CHUNK];
    int32_t pixel, oc0, j;
    for (pixel = 0; pixel < pixels; pixel += 2) {
        const int32_t two = pixel + 1 < pixels;
        int8_t *out0 = output + pixel * out_c;
        int8_t *out1 = out0 + out_c;
        gather(p, input, pixel, column, 0);
        gather(p, input, two ? pixel + 1 : pixel, column, 1);
        for (oc0 = 0; oc0 < out_c; oc0 += EEDGE_CONV_CHUNK) {
            const int32_t n = out_c - oc0 < EEDGE_CONV_CHUNK ? out_c - oc0 : EEDGE_CONV_CHUNK;
            for (j = 0; j < n; j += 2) {
                const int32_t oc = oc0 + j, oc1 = j + 1 < n ? oc + 1 : oc;
                int32_t acc[4];
                acc[0] = acc[1] = bias != 0 ? bias[oc] : 0;
                acc[2] = acc[3] = bias != 0 ? bias[oc1] : 0;
                dot_2x2(weights + oc * k, weights + oc1 * k, column, k, acc);
                sums[j] = acc[0];
                sums[EEDGE_CONV_CHUNK + j] = acc[1];
                sums[j + 1] = acc[2];
                sums[EEDGE_CONV_CHUNK + j + 1] = acc[3];
            }
            output_stage(p, sums, oc0, n, out0 + oc0, two ? out1 + oc0 : dummy);
        }
    }
}
