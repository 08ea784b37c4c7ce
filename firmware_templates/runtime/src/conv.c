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
#include "eedge/kernels_mve.h"

#if defined(__GNUC__)
#define EEDGE_CONV_NOINLINE __attribute__((noinline))
#define EEDGE_CONV_INLINE __attribute__((always_inline)) inline
#else
#define EEDGE_CONV_NOINLINE
#define EEDGE_CONV_INLINE inline
#endif

/* n bytes (a multiple of 4) widened into a column slot from dst on; returns the slot's
 * next group. Each 4 bytes b0..b3 become (b0 + offset, b2 + offset) and (b1 + offset,
 * b3 + offset) as 16-bit lanes. */
#if defined(EEDGE_USE_DSP)
static int32_t *widen(int32_t *dst, const int8_t *src, int32_t n, int32_t offset) {
    const int32_t offsets = (int32_t)(((uint32_t)(uint16_t)offset << 16) | (uint16_t)offset);
    for (; n > 0; n -= 4, src += 4, dst += 4) {
        const int32_t x = load_i32(src);
        dst[0] = __sxtab16(offsets, x);
        dst[1] = sxtab16_ror8(offsets, x);
    }
    return dst;
}

/* n taps (a multiple of 4) outside the image: the zero point, 0 once offset */
static int32_t *widen_padding(int32_t *dst, int32_t n) {
    for (; n > 0; n -= 4, dst += 4) {
        dst[0] = 0;
        dst[1] = 0;
    }
    return dst;
}

static int8_t *copy_bytes(int8_t *dst, const int8_t *src, int32_t n) {
    while (n-- > 0) {
        *dst++ = *src++;
    }
    return dst;
}

static int8_t *fill_bytes(int8_t *dst, int8_t value, int32_t n) {
    while (n-- > 0) {
        *dst++ = value;
    }
    return dst;
}

/* The receptive field of output pixel `pixel` into column slot `slot` (0 or 1), tap
 * order (ky, kx, c). With in_c a multiple of 4 every run of taps starts a group of 4
 * and is widened straight from the input; otherwise the field is first copied as
 * bytes into `line` (zero points outside the image, then up to a multiple of 4). */
static void gather(const eedge_conv_params *p, const int8_t *input, int32_t pixel,
                   int32_t *column, int32_t slot, int8_t *line) {
    const int32_t oy = pixel / p->out_w, ox = pixel % p->out_w;
    const int32_t y0 = oy * p->stride_h - p->pad_top;
    const int32_t x0 = ox * p->stride_w - p->pad_left;
    const int32_t in_c = p->in_c, row = p->k_w * in_c, offset = p->in_offset;
    const int8_t zero_point = (int8_t)-offset;
    const int32_t whole_rows = p->dil_w == 1 && x0 >= 0 && x0 + p->k_w <= p->in_w;
    int32_t *dst = column + 2 * slot;
    int8_t *bytes = line;
    int32_t ky, kx;
    for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = y0 + ky * p->dil_h;
        const int8_t *src = input + (iy * p->in_w + x0) * in_c;
        if ((in_c & 3) == 0) {
            if (iy < 0 || iy >= p->in_h) {
                dst = widen_padding(dst, row);
            } else if (whole_rows) {
                dst = widen(dst, src, row, offset);
            } else {
                for (kx = 0; kx < p->k_w; ++kx) {
                    const int32_t ix = x0 + kx * p->dil_w;
                    dst = ix < 0 || ix >= p->in_w
                              ? widen_padding(dst, in_c)
                              : widen(dst, input + (iy * p->in_w + ix) * in_c, in_c, offset);
                }
            }
        } else if (iy < 0 || iy >= p->in_h) {
            bytes = fill_bytes(bytes, zero_point, row);
        } else if (whole_rows) {
            bytes = copy_bytes(bytes, src, row);
        } else {
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = x0 + kx * p->dil_w;
                bytes = ix < 0 || ix >= p->in_w
                            ? fill_bytes(bytes, zero_point, in_c)
                            : copy_bytes(bytes, input + (iy * p->in_w + ix) * in_c, in_c);
            }
        }
    }
    if ((in_c & 3) != 0) {
        const int32_t k = (int32_t)(bytes - line);
        const int32_t k4 = (k + 3) & ~3;
        fill_bytes(bytes, zero_point, k4 - k);
        widen(dst, line, k4, offset);
    }
}
#else
/* The portable column: word i holds tap i of both pixels with the input offset added,
 * pixel 0 in the low 16 bits and pixel 1 in the high 16 (taps outside the image: 0).
 * One word load then feeds the four products of a tap in the 2x2 block, and each
 * input byte is widened once per pixel pair instead of once per output channel pair.
 * Slot 0 writes a tap's low lane (clearing the high one), slot 1 then adds its value
 * times 2^16 (mod 2^32 that sets the high lane exactly). */
static uint32_t *put_taps(uint32_t *dst, const int8_t *src, int32_t n, int32_t offset,
                          int32_t slot) {
    if (slot == 0) {
        while (n-- > 0) {
            *dst++ = (uint32_t)(*src++ + offset) & 0xFFFFu;
        }
    } else {
        while (n-- > 0) {
            *dst++ += (uint32_t)(*src++ + offset) << 16;
        }
    }
    return dst;
}

static uint32_t *put_padding(uint32_t *dst, int32_t n, int32_t slot) {
    if (slot == 0) {
        while (n-- > 0) {
            *dst++ = 0;
        }
        return dst;
    }
    return dst + n;
}

/* The receptive field of output pixel `pixel` into lane `slot` (0 or 1) of the column,
 * tap order (ky, kx, c); slot 0 is written first. */
static void gather(const eedge_conv_params *p, const int8_t *input, int32_t pixel,
                   int32_t *column, int32_t slot, int8_t *line) {
    const int32_t oy = pixel / p->out_w, ox = pixel % p->out_w;
    const int32_t y0 = oy * p->stride_h - p->pad_top;
    const int32_t x0 = ox * p->stride_w - p->pad_left;
    const int32_t in_c = p->in_c, row = p->k_w * in_c, offset = p->in_offset;
    const int32_t whole_rows = p->dil_w == 1 && x0 >= 0 && x0 + p->k_w <= p->in_w;
    uint32_t *dst = (uint32_t *)column;
    int32_t ky, kx;
    (void)line;
    for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = y0 + ky * p->dil_h;
        if (iy < 0 || iy >= p->in_h) {
            dst = put_padding(dst, row, slot);
        } else if (whole_rows) {
            dst = put_taps(dst, input + (iy * p->in_w + x0) * in_c, row, offset, slot);
        } else {
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = x0 + kx * p->dil_w;
                dst = ix < 0 || ix >= p->in_w
                          ? put_padding(dst, in_c, slot)
                          : put_taps(dst, input + (iy * p->in_w + ix) * in_c, in_c, offset,
                                     slot);
            }
        }
    }
}
#endif

#if defined(EEDGE_USE_DSP)
/* One group of 4 taps for the 2x2 block: two weight words widened into (0, 2) and (1, 3)
 * lanes, each pixel's column pairs (already int16 with the offset) read with LDRD, and
 * eight SMLADs. Written once, used twice per pass of the unrolled loop below. */
#define CONV_TAP_GROUP \
        "ldr %[u], [%[w0]], #4\n\t" \
        "ldr %[v], [%[w1]], #4\n\t" \
        "ldrd %[c0], %[c1], [%[col]], #8\n\t" \
        "sxtb16 %[ue], %[u]\n\t" \
        "sxtb16 %[u], %[u], ror #8\n\t" \
        "sxtb16 %[ve], %[v]\n\t" \
        "sxtb16 %[v], %[v], ror #8\n\t" \
        "smlad %[a00], %[c0], %[ue], %[a00]\n\t" \
        "smlad %[a00], %[c1], %[u], %[a00]\n\t" \
        "smlad %[a10], %[c0], %[ve], %[a10]\n\t" \
        "smlad %[a10], %[c1], %[v], %[a10]\n\t" \
        "ldrd %[c0], %[c1], [%[col]], #8\n\t" \
        "smlad %[a01], %[c0], %[ue], %[a01]\n\t" \
        "smlad %[a01], %[c1], %[u], %[a01]\n\t" \
        "smlad %[a11], %[c0], %[ve], %[a11]\n\t" \
        "smlad %[a11], %[c1], %[v], %[a11]\n\t"

/* The groups of 4 taps of two weight rows from w0 and w1 until w0 reaches end (at least
 * one group), against the two columns from col: the pointers advance past them. */
static EEDGE_CONV_INLINE void mac_groups(int32_t *s00, int32_t *s01, int32_t *s10,
                                         int32_t *s11, const int8_t **pw0,
                                         const int8_t **pw1, const int32_t **pcol,
                                         const int8_t *end) {
    int32_t a00 = *s00, a01 = *s01, a10 = *s10, a11 = *s11;
    const int8_t *w0 = *pw0, *w1 = *pw1;
    const int32_t *col = *pcol;
    /* Two ldr, two ldrd, four sxtb16 and eight smlad per group of 4 taps: 14 values
     * live (4 sums, 4 pointers, 6 operands), every register Thumb code can use, so
     * the loop is written out: compiled C hoists the column loads and spills. ldr
     * reads the weights at any alignment; the column is word-aligned for ldrd. */
    int32_t u, v, ue, ve, c0, c1;
    __asm__ volatile(
        /* two groups per pass; an odd count enters at the second */
        "sub %[u], %[end], %[w0]\n\t"
        "tst %[u], #4\n\t"
        "bne 2f\n\t"
        "1:\n\t"
        CONV_TAP_GROUP
        "2:\n\t"
        CONV_TAP_GROUP
        "cmp %[w0], %[end]\n\t"
        "bne 1b"
        /* early clobbers: `end` may equal w1 on entry and must keep its own register */
        : [a00] "+&r"(a00), [a01] "+&r"(a01), [a10] "+&r"(a10), [a11] "+&r"(a11),
          [w0] "+&r"(w0), [w1] "+&r"(w1), [col] "+&r"(col), [u] "=&r"(u), [v] "=&r"(v),
          [ue] "=&r"(ue), [ve] "=&r"(ve), [c0] "=&r"(c0), [c1] "=&r"(c1)
        : [end] "r"(end)
        : "cc", "memory");
    *s00 = a00;
    *s01 = a01;
    *s10 = a10;
    *s11 = a11;
    *pw0 = w0;
    *pw1 = w1;
    *pcol = col;
}

#endif

/* Two weight rows (k bytes each) against the two columns:
 * acc[2 * row + pixel] += sum over taps. */
static EEDGE_CONV_INLINE void dot_2x2(const int8_t *w0, const int8_t *w1, const int32_t *col, int32_t k,
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
        mac_groups(&a00, &a01, &a10, &a11, &w0, &w1, &col, w0 + (k & ~3));
    }
    if ((k & 3) != 0) {
        /* the last 1-3 weights, zero-filled (the column's lanes there are 0): the word
         * that ends the row, shifted down, or byte by byte when the row is shorter */
        uint32_t u = 0, v = 0;
        if (k >= 4) {
            const int32_t drop = 8 * (4 - (k & 3));
            u = (uint32_t)load_i32(w0 + (k & 3) - 4) >> drop;
            v = (uint32_t)load_i32(w1 + (k & 3) - 4) >> drop;
        } else {
            for (n = 0; n < k; ++n) {
                u |= (uint32_t)(uint8_t)w0[n] << (8 * n);
                v |= (uint32_t)(uint8_t)w1[n] << (8 * n);
            }
        }
        EEDGE_CONV_STEP((int32_t)u, (int32_t)v);
    }
#undef EEDGE_CONV_STEP
#else
    /* tap i of the two pixels is column word i (see gather): 4 taps per pass, then
     * the last 0-3 */
    const int32_t *const end4 = col + (k & ~3), *const end = col + k;
#define EEDGE_CONV_TAP(i)                                                                 \
    do {                                                                                  \
        const int32_t x_ = col[i], u_ = w0[i], v_ = w1[i];                                \
        const int32_t x0_ = (int16_t)x_, x1_ = x_ >> 16;                                  \
        a00 += u_ * x0_;                                                                  \
        a01 += u_ * x1_;                                                                  \
        a10 += v_ * x0_;                                                                  \
        a11 += v_ * x1_;                                                                  \
    } while (0)
    for (; col != end4; col += 4, w0 += 4, w1 += 4) {
        EEDGE_CONV_TAP(0);
        EEDGE_CONV_TAP(1);
        EEDGE_CONV_TAP(2);
        EEDGE_CONV_TAP(3);
    }
    for (; col != end; ++col, ++w0, ++w1) {
        EEDGE_CONV_TAP(0);
    }
#undef EEDGE_CONV_TAP
#endif
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* Output channels per output pass: their sums wait on the stack (two pixels), so the
 * block loop and the requantization each run with their values in registers instead of
 * spilling them around each other. */
#define EEDGE_CONV_CHUNK 16

/* n weight rows from w (k bytes each, bias from `bias` if not 0) against the two columns:
 * sums[j] (pixel 0) and sums[EEDGE_CONV_CHUNK + j] (pixel 1). Pairs of rows, then an odd
 * last row paired with itself; without a bias the sums start from a zero pair. */
static EEDGE_CONV_NOINLINE void dot_rows(const int8_t *w, int32_t k, const int32_t *column,
                                         const int32_t *bias, int32_t n, int32_t *sums) {
    static const int32_t no_bias[2] = {0, 0};
    const int32_t bias_step = bias != 0 ? 2 : 0;
    const int8_t *pairs_end = w + (n & ~1) * k;
    int32_t acc[4];
    if (bias == 0) {
        bias = no_bias;
    }
#if defined(EEDGE_USE_DSP)
    if ((k & 3) == 0 && k > 0) {
        /* no tail: row 0 ends where row 1 starts and row 1 ends where the next pair
         * starts, so the loop's own pointers carry on (fewer values to reload around
         * the loop, which takes every register) */
        for (; w != pairs_end; bias += bias_step, sums += 2) {
            int32_t a00 = bias[0], a01 = a00, a10 = bias[1], a11 = a10;
            const int8_t *w1 = w + k, *const end = w1;
            const int32_t *col = column;
            mac_groups(&a00, &a01, &a10, &a11, &w, &w1, &col, end);
            w = w1;
            sums[0] = a00;
            sums[1] = a10;
            sums[EEDGE_CONV_CHUNK] = a01;
            sums[EEDGE_CONV_CHUNK + 1] = a11;
        }
    }
#endif
    for (; w != pairs_end; w += 2 * k, bias += bias_step, sums += 2) {
        acc[0] = acc[1] = bias[0];
        acc[2] = acc[3] = bias[1];
        dot_2x2(w, w + k, column, k, acc);
        sums[0] = acc[0];
        sums[1] = acc[2];
        sums[EEDGE_CONV_CHUNK] = acc[1];
        sums[EEDGE_CONV_CHUNK + 1] = acc[3];
    }
    if ((n & 1) != 0) {
        acc[0] = acc[1] = acc[2] = acc[3] = bias[0];
        dot_2x2(w, w, column, k, acc);
        sums[0] = acc[0];
        sums[EEDGE_CONV_CHUNK] = acc[1];
    }
}

/* TFLite's requantization of sums in the short form conv_requant allows (every sum
 * within +-2^30, right shift r of 1..22 bits, checked by the code generator): the
 * doubling high multiply is the rounded high word of 2 * sum * m (SMMULR), and the
 * rounding shift with ties away from zero is (h - (h < 0) + 2^(r-1)) >> r, whose
 * rounding term also holds the output zero point times 2^r. The channel's three words
 * are read once for both pixels and before any store (int8 stores may alias them). */
#define EEDGE_CONV_SHORT_LOOP(CLAMP)                                                      \
    for (i = 0; i < n; ++i, q += 3) {                                                     \
        const int32_t m = q[0], rounding = q[1], r = q[2];                                \
        int32_t h0 = eedge_high_mul_small((int32_t)((uint32_t)sums[i] << 1), m);          \
        int32_t h1 =                                                                      \
            eedge_high_mul_small((int32_t)((uint32_t)sums[EEDGE_CONV_CHUNK + i] << 1), m); \
        h0 = (h0 + (h0 >> 31) + rounding) >> r;                                           \
        h1 = (h1 + (h1 >> 31) + rounding) >> r;                                           \
        o0[i] = (int8_t)CLAMP(h0);                                                        \
        o1[i] = (int8_t)CLAMP(h1);                                                        \
    }
#if defined(EEDGE_USE_DSP)
#define EEDGE_CONV_INT8(x) __ssat(x, 8)   /* gcc does not turn the clamp into SSAT */
#else
#define EEDGE_CONV_INT8(x) eedge_clamp(x, -128, 127)
#endif
#define EEDGE_CONV_RANGE(x) eedge_clamp(x, low, high)

/* n channels' sums of one or two pixels to int8 (o1 may be a dummy). */
static EEDGE_CONV_NOINLINE void output_stage(const eedge_conv_params *p, const int32_t *sums,
                                             int32_t oc0, int32_t n, int8_t *o0, int8_t *o1) {
    const int32_t low = p->act_min, high = p->act_max;
    const int32_t *q = p->conv_requant + 3 * oc0;
    int32_t i;
    if (p->conv_requant != 0 && low == -128 && high == 127) {
        EEDGE_CONV_SHORT_LOOP(EEDGE_CONV_INT8)   /* one SSAT */
    } else if (p->conv_requant != 0) {
        EEDGE_CONV_SHORT_LOOP(EEDGE_CONV_RANGE)
    } else {
        /* eedge_requantize with the channel's shift split, mask and threshold worked out
         * once for both pixels (the same arithmetic as eedge_rdbpot) */
        const int32_t out_offset = p->out_offset;
        for (i = 0; i < n; ++i) {
            const int32_t m = p->multiplier[oc0 + i], s = p->shift[oc0 + i];
            const int left = s > 0 ? (int)s : 0, right = s > 0 ? 0 : (int)-s;
            const int32_t mask = (int32_t)((1u << right) - 1u), half = mask >> 1;
            int32_t h0 = eedge_srdhm((int32_t)((uint32_t)sums[i] << left), m);
            int32_t h1 = eedge_srdhm((int32_t)((uint32_t)sums[EEDGE_CONV_CHUNK + i] << left), m);
            h0 = (h0 >> right) + ((h0 & mask) > half + (h0 < 0) ? 1 : 0);
            h1 = (h1 >> right) + ((h1 & mask) > half + (h1 < 0) ? 1 : 0);
            o0[i] = (int8_t)eedge_clamp(h0 + out_offset, low, high);
            o1[i] = (int8_t)eedge_clamp(h1 + out_offset, low, high);
        }
    }
}
#undef EEDGE_CONV_SHORT_LOOP
#undef EEDGE_CONV_INT8
#undef EEDGE_CONV_RANGE

#if !defined(EEDGE_USE_DSP)
/* The portable path with the input offset folded into the bias (p->conv_bias: bias +
 * in_offset * sum of the channel's weights, from the code generator): the MACs take
 * raw int8 inputs, so a receptive field is its bytes as they are (taps outside the
 * image hold the input zero point, whose product with the offset folded is 0), read in
 * place for a 1x1 kernel, and each tap of the 2x2 block is four byte loads and four
 * multiply-adds, no widening pass and no unpacking. */

/* output pixel `pixel`'s receptive field as int8 bytes: in place, or copied into line */
static const int8_t *field_bytes(const eedge_conv_params *p, const int8_t *input,
                                 int32_t pixel, int8_t *line) {
    const int32_t oy = pixel / p->out_w, ox = pixel % p->out_w;
    const int32_t y0 = oy * p->stride_h - p->pad_top;
    const int32_t x0 = ox * p->stride_w - p->pad_left;
    const int32_t in_c = p->in_c, row = p->k_w * in_c;
    const int8_t zero_point = (int8_t)-p->in_offset;
    int8_t *dst = line;
    int32_t ky, kx;
    if (p->k_h == 1 && p->k_w == 1 && y0 >= 0 && x0 >= 0 && y0 < p->in_h && x0 < p->in_w) {
        return input + (y0 * p->in_w + x0) * in_c;
    }
    for (ky = 0; ky < p->k_h; ++ky, dst += row) {
        const int32_t iy = y0 + ky * p->dil_h;
        if (iy < 0 || iy >= p->in_h) {
            memset(dst, zero_point, (size_t)row);
        } else if (p->dil_w == 1 && x0 >= 0 && x0 + p->k_w <= p->in_w) {
            memcpy(dst, input + (iy * p->in_w + x0) * in_c, (size_t)row);
        } else {
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = x0 + kx * p->dil_w;
                if (ix < 0 || ix >= p->in_w) {
                    memset(dst + kx * in_c, zero_point, (size_t)in_c);
                } else {
                    memcpy(dst + kx * in_c, input + (iy * p->in_w + ix) * in_c, (size_t)in_c);
                }
            }
        }
    }
    return line;
}

/* n weight rows from w (k bytes each, folded biases from `bias`) against the byte
 * columns c0 and c1: sums[j] (pixel 0) and sums[EEDGE_CONV_CHUNK + j] (pixel 1). Pairs
 * of rows, whose pointers end where the next pair starts, then an odd last row. */
static EEDGE_CONV_NOINLINE void dot_rows_bytes(const int8_t *w, int32_t k, const int8_t *c0,
                                               const int8_t *c1, const int32_t *bias,
                                               int32_t n, int32_t *sums) {
    const int8_t *const pairs_end = w + (n & ~1) * k;
    const int8_t *const end4 = c0 + (k & ~3), *const end = c0 + k;
    for (; w != pairs_end; bias += 2, sums += 2) {
        const int8_t *w0 = w, *w1 = w + k, *x0 = c0, *x1 = c1;
        int32_t a00 = bias[0], a01 = a00, a10 = bias[1], a11 = a10;
#define EEDGE_CONV_TAP(i)                                                                 \
    do {                                                                                  \
        const int32_t s_ = x0[i], t_ = x1[i], u_ = w0[i], v_ = w1[i];                     \
        a00 += u_ * s_;                                                                   \
        a01 += u_ * t_;                                                                   \
        a10 += v_ * s_;                                                                   \
        a11 += v_ * t_;                                                                   \
    } while (0)
        for (; x0 != end4; x0 += 4, x1 += 4, w0 += 4, w1 += 4) {
            EEDGE_CONV_TAP(0);
            EEDGE_CONV_TAP(1);
            EEDGE_CONV_TAP(2);
            EEDGE_CONV_TAP(3);
        }
        for (; x0 != end; ++x0, ++x1, ++w0, ++w1) {
            EEDGE_CONV_TAP(0);
        }
#undef EEDGE_CONV_TAP
        w = w1;
        sums[0] = a00;
        sums[1] = a10;
        sums[EEDGE_CONV_CHUNK] = a01;
        sums[EEDGE_CONV_CHUNK + 1] = a11;
    }
    if ((n & 1) != 0) {
        const int8_t *x0 = c0, *x1 = c1;
        int32_t a00 = bias[0], a01 = a00;
        for (; x0 != end; ++x0, ++x1, ++w) {
            a00 += *w * *x0;
            a01 += *w * *x1;
        }
        sums[0] = a00;
        sums[EEDGE_CONV_CHUNK] = a01;
    }
}

static void conv_folded(const eedge_conv_params *p, const int8_t *input,
                        const int8_t *weights, int8_t *output) {
    const int32_t k = p->k_h * p->k_w * p->in_c;
    const int32_t pixels = p->out_h * p->out_w;
    const int32_t out_c = p->out_c;
    int8_t *line0 = (int8_t *)p->scratch;
    int8_t *line1 = line0 + ((k + 3) & ~3);
    int32_t sums[2 * EEDGE_CONV_CHUNK];
    int8_t dummy[EEDGE_CONV_CHUNK];
    int32_t pixel, oc0;
    for (pixel = 0; pixel < pixels; pixel += 2) {
        const int32_t two = pixel + 1 < pixels;
        int8_t *out0 = output + pixel * out_c;
        int8_t *out1 = out0 + out_c;
        const int8_t *c0 = field_bytes(p, input, pixel, line0);
        const int8_t *c1 = two ? field_bytes(p, input, pixel + 1, line1) : c0;
        for (oc0 = 0; oc0 < out_c; oc0 += EEDGE_CONV_CHUNK) {
            const int32_t n = out_c - oc0 < EEDGE_CONV_CHUNK ? out_c - oc0 : EEDGE_CONV_CHUNK;
            dot_rows_bytes(weights + oc0 * k, k, c0, c1, p->conv_bias + oc0, n, sums);
            output_stage(p, sums, oc0, n, out0 + oc0, two ? out1 + oc0 : dummy);
        }
    }
}
#endif

void eedge_conv2d_s8(const eedge_conv_params *p, const int8_t *input, const int8_t *weights,
                     const int32_t *bias, int8_t *output) {
#if defined(EEDGE_USE_MVE)
    /* Helium (MVE) kernel, *_mve.c: 0 for a shape it leaves to this one */
    if (eedge_conv2d_s8_mve(p, input, weights, bias, output)) {
        return;
    }
#endif
    const int32_t k = p->k_h * p->k_w * p->in_c;
    const int32_t pixels = p->out_h * p->out_w;
    const int32_t out_c = p->out_c;
    int32_t *column = p->scratch;
    /* after the two columns (4 words per group of 4 taps): the byte copy of a field */
    int8_t *line = (int8_t *)(column + 4 * ((k + 3) / 4));
    int32_t sums[2 * EEDGE_CONV_CHUNK];
    int8_t dummy[EEDGE_CONV_CHUNK];
    int32_t pixel, oc0;
#if !defined(EEDGE_USE_DSP)
    if (p->conv_bias != 0) {
        conv_folded(p, input, weights, output);
        return;
    }
#endif
    for (pixel = 0; pixel < pixels; pixel += 2) {
        const int32_t two = pixel + 1 < pixels;
        int8_t *out0 = output + pixel * out_c;
        int8_t *out1 = out0 + out_c;
        gather(p, input, pixel, column, 0, line);
        gather(p, input, two ? pixel + 1 : pixel, column, 1, line);
        for (oc0 = 0; oc0 < out_c; oc0 += EEDGE_CONV_CHUNK) {
            const int32_t n = out_c - oc0 < EEDGE_CONV_CHUNK ? out_c - oc0 : EEDGE_CONV_CHUNK;
            dot_rows(weights + oc0 * k, k, column, bias != 0 ? bias + oc0 : 0, n, sums);
            output_stage(p, sums, oc0, n, out0 + oc0, two ? out1 + oc0 : dummy);
        }
    }
}
