/* Depthwise convolution, int8 NHWC, bit-exact with TFLite's reference kernel.
 *
 * Depth multiplier 1 (every layer of DS-CNN and MobileNet) has its own path with
 * each output's int32 sum kept in a register from the bias to the int8 byte: a
 * depthwise output is only k_h * k_w MACs, so what surrounds them (accumulator
 * set-up, requantization, loop control) costs as much as the MACs themselves. The
 * 3x3 windows that lie wholly inside the image (every tap valid, dilation 1, any
 * stride) run with the nine taps unrolled; windows over the padding loop over
 * their valid taps only. Other depth multipliers take the general loop below,
 * which sums into the scratch array. */
#include "eedge/dsp.h"
#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"
#include "eedge/kernels_mve.h"

/* first and one-past-last kernel index whose input coordinate is inside [0, size) */
static void valid_taps(int32_t origin, int32_t kernel, int32_t dilation, int32_t size,
                       int32_t *first, int32_t *last) {
    int32_t k = 0;
    while (k < kernel && origin + k * dilation < 0) {
        ++k;
    }
    *first = k;
    while (k < kernel && origin + k * dilation < size) {
        ++k;
    }
    *last = k;
}

/* One output channel's int8 value from its sum. With p->dw_requant (the code
 * generator sets it only when every sum stays within +-2^30 and every shift is a
 * right shift of 1 to 22 bits) channel c has four words q = dw_requant + 4c: the
 * multiplier, the rounding term 2^(r-1) + out_offset * 2^r, the right shift r and
 * the bias. The requantization is then one high multiply-accumulate (SMMLAR: the
 * rounded high word of twice the sum times the multiplier, plus the rounding term)
 * and a shift, which also adds the zero point (its multiple of 2^r passes through
 * the floor). Subtracting 1 for negative sums rounds ties away from zero like
 * TFLite's RoundingDivideByPOT: that takes the product's sign, but where the sum is
 * negative and the product is not, the product is 0 and no tie can occur. */
static inline int32_t dw_fast(int32_t acc, const int32_t *q) {
    const int32_t a2 = (int32_t)((uint32_t)acc << 1);
#if defined(EEDGE_USE_DSP)
    int32_t t;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(t) : "r"(a2), "r"(q[0]), "r"(q[1]));
#else
    const int32_t t = eedge_high_mul_small(a2, q[0]) + q[1];
#endif
    return (t + (a2 >> 31)) >> q[2];
}

static inline int8_t dw_output(const eedge_conv_params *p, int32_t acc, int32_t c) {
    const int32_t v = p->dw_requant != 0 ? dw_fast(acc, p->dw_requant + 4 * c)
                                         : eedge_requantize(acc, p->multiplier[c], p->shift[c]) +
                                               p->out_offset;
    return (int8_t)eedge_clamp(v, p->act_min, p->act_max);
}

static inline int32_t dw_bias(const eedge_conv_params *p, const int32_t *bias, int32_t c) {
    if (p->dw_requant != 0) {
        return p->dw_requant[4 * c + 3];
    }
    return bias != 0 ? bias[c] : 0;
}

#if defined(EEDGE_USE_DSP)
/* per-lane max(v, low) then min(v, high) on four int8 lanes: SSUB8 sets a GE flag for
 * each lane where the first operand is the larger, SEL picks by those flags */
static inline int32_t clamp_s8x4(int32_t v, int32_t low, int32_t high) {
    int32_t r, t;
    __asm__("ssub8 %1, %2, %3\n\tsel %0, %2, %3"
            : "=&r"(r), "=&r"(t) : "r"(v), "r"(low) : "cc");
    __asm__("ssub8 %1, %3, %2\n\tsel %0, %2, %3"
            : "=&r"(v), "=&r"(t) : "r"(r), "r"(high) : "cc");
    return v;
}

/* four saturated values' low bytes in one word (byte i from vi): v0's upper bytes are
 * all overwritten by the three inserts */
static inline int32_t pack_s8x4(int32_t v0, int32_t v1, int32_t v2, int32_t v3) {
    __asm__("bfi %0, %1, #8, #8\n\tbfi %0, %2, #16, #8\n\tbfi %0, %3, #24, #8"
            : "+&r"(v0) : "r"(v1), "r"(v2), "r"(v3));
    return v0;
}

static inline void store_s8x4(int8_t *out, int32_t word) {
    memcpy(out, &word, 4);
}

/* Four channels' sums to four int8 bytes (general requantization). */
static void dw_store4_general(const eedge_conv_params *p, int32_t c, const int32_t a[4],
                              int8_t *out) {
    int32_t k;
    for (k = 0; k < 4; ++k) {
        out[k] = dw_output(p, a[k], c + k);
    }
}

/* One tap for four channels: SXTAB16 widens two bytes and adds the input offset in
 * one instruction; SMLABB/SMLATT accumulate the bottom and top halves separately, so
 * each channel keeps its own sum. */
#define DW_TAP(xp, wp)                                                                   \
    do {                                                                                 \
        const int32_t xv_ = load_i32(xp), wv_ = load_i32(wp);                            \
        const int32_t x02_ = __sxtab16(offsets, xv_), x13_ = sxtab16_ror8(offsets, xv_); \
        const int32_t w02_ = __sxtb16(wv_), w13_ = sxtb16_ror8(wv_);                     \
        a0 = __smlabb(x02_, w02_, a0);                                                   \
        a2 = __smlatt(x02_, w02_, a2);                                                   \
        a1 = __smlabb(x13_, w13_, a1);                                                   \
        a3 = __smlatt(x13_, w13_, a3);                                                   \
    } while (0)

/* One tap for four channels with the weights already widened (p->dw_weights): an
 * LDRD of two words instead of a load and two SXTB16. */
#define DW_TAP16(xp, wp)                                                                 \
    do {                                                                                 \
        const int32_t xv_ = load_i32(xp), w02_ = (wp)[0], w13_ = (wp)[1];                \
        const int32_t x02_ = __sxtab16(offsets, xv_), x13_ = sxtab16_ror8(offsets, xv_); \
        a0 = __smlabb(x02_, w02_, a0);                                                   \
        a2 = __smlatt(x02_, w02_, a2);                                                   \
        a1 = __smlabb(x13_, w13_, a1);                                                   \
        a3 = __smlatt(x13_, w13_, a3);                                                   \
    } while (0)

/* `pixels` horizontally consecutive outputs whose 3x3 windows (dilation 1) lie inside
 * the image, x at the first window's first tap: channels [0, out_c & ~3) with the
 * short requantization and the widened weights. A block of 4 channels keeps its sums
 * in registers and reads its 18 weight words and 16 constants at fixed offsets from
 * two pointers; the input taps are at the window plus 0, in_c and 2 * in_c on each of
 * three rows. The empty asm hides the row pointer's value from the compiler, which
 * otherwise keeps one base pointer per tap on the stack across the block loop. */
static void dw3x3_run(const eedge_conv_params *p, const int8_t *x, int8_t *out,
                      int32_t pixels, int32_t offsets) {
    const int32_t ch = p->in_c, row = p->in_w * p->in_c, step = p->stride_w * p->in_c;
    const int32_t blocks = ch >> 2;
    const int32_t low = (int32_t)(0x01010101u * (uint8_t)p->act_min);
    const int32_t high = (int32_t)(0x01010101u * (uint8_t)p->act_max);
    for (; pixels > 0; --pixels, x += step, out += ch) {
        const int32_t *q = p->dw_requant, *wr = p->dw_weights;
        const int8_t *xb = x;
        int8_t *o = out;
        int32_t b;
        for (b = blocks; b > 0; --b, q += 16, wr += 18, xb += 4, o += 4) {
            int32_t a0 = q[3], a1 = q[7], a2 = q[11], a3 = q[15];
            const int8_t *xr = xb;
            DW_TAP16(xr, wr);
            DW_TAP16(xr + ch, wr + 2);
            DW_TAP16(xr + 2 * ch, wr + 4);
            xr += row;
            __asm__("" : "+r"(xr));
            DW_TAP16(xr, wr + 6);
            DW_TAP16(xr + ch, wr + 8);
            DW_TAP16(xr + 2 * ch, wr + 10);
            xr += row;
            __asm__("" : "+r"(xr));
            DW_TAP16(xr, wr + 12);
            DW_TAP16(xr + ch, wr + 14);
            DW_TAP16(xr + 2 * ch, wr + 16);
            a0 = __ssat(dw_fast(a0, q), 8);
            a1 = __ssat(dw_fast(a1, q + 4), 8);
            a2 = __ssat(dw_fast(a2, q + 8), 8);
            a3 = __ssat(dw_fast(a3, q + 12), 8);
            store_s8x4(o, clamp_s8x4(pack_s8x4(a0, a1, a2, a3), low, high));
        }
    }
}

/* a 3x3 window over the padding (taps [ky0, ky1) x [kx0, kx1) valid), with the short
 * requantization and the widened weights: channels [0, out_c & ~3) */
static void dw3x3_edge(const eedge_conv_params *p, const int8_t *input, int32_t window,
                       int8_t *out, int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1,
                       int32_t offsets) {
    const int32_t ch = p->in_c, x_row = p->in_w * p->in_c, end = p->out_c & ~3;
    const int32_t low = (int32_t)(0x01010101u * (uint8_t)p->act_min);
    const int32_t high = (int32_t)(0x01010101u * (uint8_t)p->act_max);
    const int32_t *q = p->dw_requant, *wb = p->dw_weights + 2 * (3 * ky0 + kx0);
    const int8_t *xb = input + (window + ky0 * x_row + kx0 * ch);
    int32_t c, ky, kx;
    for (c = 0; c < end; c += 4, q += 16, wb += 18) {
        int32_t a0 = q[3], a1 = q[7], a2 = q[11], a3 = q[15];
        for (ky = ky0; ky < ky1; ++ky) {
            const int8_t *xp = xb + c + (ky - ky0) * x_row;
            const int32_t *wp = wb + 6 * (ky - ky0);
            for (kx = kx0; kx < kx1; ++kx) {
                DW_TAP16(xp, wp);
                xp += ch;
                wp += 2;
            }
        }
        a0 = __ssat(dw_fast(a0, q), 8);
        a1 = __ssat(dw_fast(a1, q + 4), 8);
        a2 = __ssat(dw_fast(a2, q + 8), 8);
        a3 = __ssat(dw_fast(a3, q + 12), 8);
        store_s8x4(out + c, clamp_s8x4(pack_s8x4(a0, a1, a2, a3), low, high));
    }
}

/* any window (taps [ky0, ky1) x [kx0, kx1) valid): channels [0, out_c & ~3) */
static void dw_window4(const eedge_conv_params *p, const int8_t *input, int32_t window,
                       const int8_t *w, const int32_t *bias, int8_t *out, int32_t ky0,
                       int32_t ky1, int32_t kx0, int32_t kx1, int32_t offsets) {
    const int32_t x_row = p->in_w * p->in_c * p->dil_h, x_step = p->in_c * p->dil_w;
    const int32_t w_row = p->k_w * p->out_c, end = p->out_c & ~3;
    int32_t c, ky, kx;
    for (c = 0; c < end; c += 4) {
        int32_t a[4];
        int32_t a0 = dw_bias(p, bias, c), a1 = dw_bias(p, bias, c + 1);
        int32_t a2 = dw_bias(p, bias, c + 2), a3 = dw_bias(p, bias, c + 3);
        for (ky = ky0; ky < ky1; ++ky) {
            const int8_t *xp = input + (window + ky * x_row + kx0 * x_step + c);
            const int8_t *wp = w + ky * w_row + kx0 * p->out_c + c;
            for (kx = kx0; kx < kx1; ++kx) {
                DW_TAP(xp, wp);
                xp += x_step;
                wp += p->out_c;
            }
        }
        if (p->dw_requant != 0) {
            const int32_t *q = p->dw_requant + 4 * c;
            const int32_t low = (int32_t)(0x01010101u * (uint8_t)p->act_min);
            const int32_t high = (int32_t)(0x01010101u * (uint8_t)p->act_max);
            a0 = __ssat(dw_fast(a0, q), 8);
            a1 = __ssat(dw_fast(a1, q + 4), 8);
            a2 = __ssat(dw_fast(a2, q + 8), 8);
            a3 = __ssat(dw_fast(a3, q + 12), 8);
            store_s8x4(out + c, clamp_s8x4(pack_s8x4(a0, a1, a2, a3), low, high));
        } else {
            a[0] = a0;
            a[1] = a1;
            a[2] = a2;
            a[3] = a3;
            dw_store4_general(p, c, a, out + c);
        }
    }
}
#endif

/* channels [c0, out_c) of one pixel, one at a time (the portable path: all of them) */
static void dw_window1(const eedge_conv_params *p, const int8_t *input, int32_t window,
                       const int8_t *w, const int32_t *bias, int8_t *out, int32_t c0,
                       int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1) {
    const int32_t x_row = p->in_w * p->in_c * p->dil_h, x_step = p->in_c * p->dil_w;
    const int32_t w_row = p->k_w * p->out_c;
    int32_t c, ky, kx;
    for (c = c0; c < p->out_c; ++c) {
        int32_t acc = dw_bias(p, bias, c);
        for (ky = ky0; ky < ky1; ++ky) {
            const int8_t *xp = input + (window + ky * x_row + kx0 * x_step + c);
            const int8_t *wp = w + ky * w_row + kx0 * p->out_c + c;
            for (kx = kx0; kx < kx1; ++kx) {
                acc += (*xp + p->in_offset) * *wp;
                xp += x_step;
                wp += p->out_c;
            }
        }
        out[c] = dw_output(p, acc, c);
    }
}

#if !defined(EEDGE_USE_DSP)
/* The portable path, any window (taps [ky0, ky1) x [kx0, kx1) valid): channels
 * [0, out_c & ~3), four at a time. A tap's four channels are adjacent bytes of the
 * input and of the weights, so one pointer each walks them with constant offsets, and
 * the four sums stay in registers from the bias to the output byte (one channel at a
 * time would redo the window's pointer arithmetic for every channel). */
static void dw_block4(const eedge_conv_params *p, const int8_t *input, int32_t window,
                      const int8_t *w, const int32_t *bias, int8_t *out, int32_t ky0,
                      int32_t ky1, int32_t kx0, int32_t kx1) {
    const int32_t x_row = p->in_w * p->in_c * p->dil_h, x_step = p->in_c * p->dil_w;
    const int32_t w_step = p->out_c, w_row = p->k_w * p->out_c, end = p->out_c & ~3;
    const int32_t offset = p->in_offset, low = p->act_min, high = p->act_max;
    const int32_t rows = ky1 - ky0, taps = kx1 - kx0;
    const int32_t *q = p->dw_requant;
    /* a whole window with the offset folded into the bias: raw int8 products */
    const int32_t *folded = rows == p->k_h && taps == p->k_w ? p->conv_bias : 0;
    const int8_t *x_first = input + (window + ky0 * x_row + kx0 * x_step);
    const int8_t *w_first = w + ky0 * w_row + kx0 * w_step;
    int32_t c, ky, kx;
    for (c = 0; c < end; c += 4) {
        int32_t a0, a1, a2, a3;
        const int8_t *xr = x_first + c, *wr = w_first + c;
        if (folded != 0) {
            a0 = folded[c];
            a1 = folded[c + 1];
            a2 = folded[c + 2];
            a3 = folded[c + 3];
        } else if (q != 0) {
            a0 = q[4 * c + 3];
            a1 = q[4 * c + 7];
            a2 = q[4 * c + 11];
            a3 = q[4 * c + 15];
        } else if (bias != 0) {
            a0 = bias[c];
            a1 = bias[c + 1];
            a2 = bias[c + 2];
            a3 = bias[c + 3];
        } else {
            a0 = a1 = a2 = a3 = 0;
        }
#define EEDGE_DW_TAP4(xp, wp, OFFSET)                                                     \
    do {                                                                                  \
        a0 += ((xp)[0] OFFSET) * (wp)[0];                                                 \
        a1 += ((xp)[1] OFFSET) * (wp)[1];                                                 \
        a2 += ((xp)[2] OFFSET) * (wp)[2];                                                 \
        a3 += ((xp)[3] OFFSET) * (wp)[3];                                                 \
    } while (0)
#define EEDGE_DW_TAP16(xp, u, v)                                                          \
    do {                                                                                  \
        const int32_t u_ = (u), v_ = (v);                                                 \
        a0 += (xp)[0] * (int16_t)u_;                                                      \
        a1 += (xp)[1] * (int16_t)v_;                                                      \
        a2 += (xp)[2] * (u_ >> 16);                                                       \
        a3 += (xp)[3] * (v_ >> 16);                                                       \
    } while (0)
/* a row of 3 taps written out (every 3x3 window whose columns are all inside the
 * image): no tap counter to keep */
#define EEDGE_DW_ROW3(OFFSET)                                                             \
    for (ky = rows; ky > 0; --ky, xr += x_row, wr += w_row) {                             \
        const int8_t *xp = xr, *wp = wr;                                                  \
        EEDGE_DW_TAP4(xp, wp, OFFSET);                                                    \
        xp += x_step;                                                                     \
        wp += w_step;                                                                     \
        EEDGE_DW_TAP4(xp, wp, OFFSET);                                                    \
        xp += x_step;                                                                     \
        wp += w_step;                                                                     \
        EEDGE_DW_TAP4(xp, wp, OFFSET);                                                    \
    }
        if (taps == 3 && folded != 0 && p->dw_weights != 0) {
            /* 3x3 (dilation 1): the block's weights from the DSP path's widened table,
             * per tap two words {c0 | c2 << 16, c1 | c3 << 16} at fixed offsets from one
             * pointer, so only the input pointer moves between taps */
            const int32_t *wq = p->dw_weights + 18 * (c >> 2);
            for (ky = 3; ky > 0; --ky, xr += x_row, wq += 6) {
                const int8_t *xp = xr;
                EEDGE_DW_TAP16(xp, wq[0], wq[1]);
                xp += x_step;
                EEDGE_DW_TAP16(xp, wq[2], wq[3]);
                xp += x_step;
                EEDGE_DW_TAP16(xp, wq[4], wq[5]);
            }
        } else if (taps == 3 && folded != 0) {
            EEDGE_DW_ROW3()
        } else if (taps == 3) {
            EEDGE_DW_ROW3(+ offset)
        } else {
            for (ky = rows; ky > 0; --ky, xr += x_row, wr += w_row) {
                const int8_t *xp = xr, *wp = wr;
                for (kx = taps; kx > 0; --kx, xp += x_step, wp += w_step) {
                    EEDGE_DW_TAP4(xp, wp, + (folded != 0 ? 0 : offset));
                }
            }
        }
#undef EEDGE_DW_ROW3
#undef EEDGE_DW_TAP16
#undef EEDGE_DW_TAP4
        if (q != 0) {
            const int32_t *qc = q + 4 * c;
            out[c] = (int8_t)eedge_clamp(dw_fast(a0, qc), low, high);
            out[c + 1] = (int8_t)eedge_clamp(dw_fast(a1, qc + 4), low, high);
            out[c + 2] = (int8_t)eedge_clamp(dw_fast(a2, qc + 8), low, high);
            out[c + 3] = (int8_t)eedge_clamp(dw_fast(a3, qc + 12), low, high);
        } else {
            out[c] = dw_output(p, a0, c);
            out[c + 1] = dw_output(p, a1, c + 1);
            out[c + 2] = dw_output(p, a2, c + 2);
            out[c + 3] = dw_output(p, a3, c + 3);
        }
    }
}
#endif

#if defined(EEDGE_USE_DSP)
/* ceil(a / b) for b > 0 */
static int32_t div_up(int32_t a, int32_t b) {
    return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}
#endif

static void depthwise_m1(const eedge_conv_params *p, const int8_t *input,
                         const int8_t *weights, const int32_t *bias, int8_t *output) {
    int32_t oy, ox;
#if defined(EEDGE_USE_DSP)
    /* outputs [in_lo, in_hi) of a row have every column tap inside the image (3x3
     * fast path only; otherwise the range is empty) */
    int32_t in_lo = 0, in_hi = 0, fast3x3 = 0;
    const int32_t offsets = (int32_t)(((uint32_t)(uint16_t)p->in_offset << 16) |
                                      (uint16_t)p->in_offset);
    if (p->k_h == 3 && p->k_w == 3 && p->dil_h == 1 && p->dil_w == 1 && p->dw_requant != 0 &&
        p->dw_weights != 0 && p->in_c >= 4) {
        fast3x3 = 1;
        in_lo = div_up(p->pad_left, p->stride_w);
        /* x0 + 2 <= in_w - 1  <=>  ox * stride_w <= in_w - 3 + pad_left */
        in_hi = p->in_w - 3 + p->pad_left >= 0 ? (p->in_w - 3 + p->pad_left) / p->stride_w + 1
                                                : 0;
        if (in_hi > p->out_w) {
            in_hi = p->out_w;
        }
        if (in_hi < in_lo) {
            in_hi = in_lo;
        }
    }
#endif
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        int32_t ky0, ky1;
        valid_taps(y0, p->k_h, p->dil_h, p->in_h, &ky0, &ky1);
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            /* offset of the window's first tap, negative when it starts in the padding:
             * kept an integer, so pointers are only formed for taps inside the image */
            const int32_t window = (y0 * p->in_w + x0) * p->in_c;
            int8_t *out = output + (oy * p->out_w + ox) * p->out_c;
            int32_t kx0, kx1;
#if defined(EEDGE_USE_DSP)
            if (ox == in_lo && in_hi > in_lo && ky0 == 0 && ky1 == 3) {
                /* the row's inside run: its blocks of 4 channels, then any others */
                const int32_t n = in_hi - in_lo;
                dw3x3_run(p, input + window, out, n, offsets);
                if ((p->in_c & 3) != 0) {
                    int32_t k;
                    for (k = 0; k < n; ++k) {
                        dw_window1(p, input, window + k * p->stride_w * p->in_c, weights,
                                   bias, out + k * p->out_c, p->in_c & ~3, 0, 3, 0, 3);
                    }
                }
                ox = in_hi - 1;
                continue;
            }
#endif
            valid_taps(x0, p->k_w, p->dil_w, p->in_w, &kx0, &kx1);
#if defined(EEDGE_USE_DSP)
            if (fast3x3) {
                dw3x3_edge(p, input, window, out, ky0, ky1, kx0, kx1, offsets);
            } else {
                dw_window4(p, input, window, weights, bias, out, ky0, ky1, kx0, kx1, offsets);
            }
#else
            dw_block4(p, input, window, weights, bias, out, ky0, ky1, kx0, kx1);
#endif
            dw_window1(p, input, window, weights, bias, out, p->out_c & ~3, ky0, ky1, kx0, kx1);
        }
    }
}

void eedge_depthwise_conv2d_s8(const eedge_conv_params *p, const int8_t *input,
                               const int8_t *weights, const int32_t *bias, int8_t *output) {
#if defined(EEDGE_USE_MVE)
    /* Helium (MVE) kernel, *_mve.c: 0 for a shape it leaves to this one */
    if (eedge_depthwise_conv2d_s8_mve(p, input, weights, bias, output)) {
        return;
    }
#endif
    int32_t *acc = p->scratch;
    const int32_t m = p->depth_multiplier;
    int32_t oy, ox, ky, kx, c, j;
    if (m == 1) {
        depthwise_m1(p, input, weights, bias, output);
        return;
    }
    /* depth multiplier m: input channel c feeds output channels c*m .. c*m + m-1 */
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        int32_t ky0, ky1;
        valid_taps(y0, p->k_h, p->dil_h, p->in_h, &ky0, &ky1);
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            const int32_t window = (y0 * p->in_w + x0) * p->in_c;
            int8_t *out = output + (oy * p->out_w + ox) * p->out_c;
            int32_t kx0, kx1;
            valid_taps(x0, p->k_w, p->dil_w, p->in_w, &kx0, &kx1);
            for (c = 0; c < p->out_c; ++c) {
                acc[c] = bias != 0 ? bias[c] : 0;
            }
            for (ky = ky0; ky < ky1; ++ky) {
                for (kx = kx0; kx < kx1; ++kx) {
                    const int8_t *x = input + (window + (ky * p->dil_h * p->in_w +
                                                         kx * p->dil_w) * p->in_c);
                    const int8_t *w = weights + (ky * p->k_w + kx) * p->out_c;
                    for (c = 0; c < p->in_c; ++c) {
                        const int32_t v = x[c] + p->in_offset;
                        for (j = 0; j < m; ++j) {
                            acc[c * m + j] += v * w[c * m + j];
                        }
                    }
                }
            }
            for (c = 0; c < p->out_c; ++c) {
                out[c] = dw_output(p, acc[c], c);
            }
        }
    }
}
