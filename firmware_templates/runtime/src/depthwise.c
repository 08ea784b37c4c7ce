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
 * right shift of 1 to 22 bits) the requantization is one high multiply and a
 * rounding shift: q[0] is the multiplier, q[1] the right shift, q[2] the
 * rounding term 2^(r-1) plus the output zero point scaled by 2^r, so the shift
 * also adds the zero point (exact: the added multiple of 2^r passes through the
 * floor). Subtracting 1 from negative products makes the rounding go away from
 * zero on ties, like TFLite's RoundingDivideByPOT. */
static inline int32_t dw_fast(int32_t acc, const int32_t *q) {
    const int32_t h = eedge_high_mul_small((int32_t)((uint32_t)acc << 1), q[0]);
    return (h + q[2] + (h >> 31)) >> q[1];
}

static inline int8_t dw_output(const eedge_conv_params *p, int32_t acc, int32_t c) {
    const int32_t v = p->dw_requant != 0 ? dw_fast(acc, p->dw_requant + 3 * c)
                                         : eedge_requantize(acc, p->multiplier[c], p->shift[c]) +
                                               p->out_offset;
    return (int8_t)eedge_clamp(v, p->act_min, p->act_max);
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

/* Four channels' sums to four int8 bytes at out (one word store). */
static inline void dw_store4(const eedge_conv_params *p, int32_t c, int32_t a0, int32_t a1,
                             int32_t a2, int32_t a3, int32_t low, int32_t high, int8_t *out) {
    int32_t v0, v1, v2, v3;
    uint32_t word;
    if (p->dw_requant != 0) {
        const int32_t *q = p->dw_requant + 3 * c;
        v0 = __ssat(dw_fast(a0, q), 8);
        v1 = __ssat(dw_fast(a1, q + 3), 8);
        v2 = __ssat(dw_fast(a2, q + 6), 8);
        v3 = __ssat(dw_fast(a3, q + 9), 8);
    } else {
        v0 = __ssat(eedge_requantize(a0, p->multiplier[c], p->shift[c]) + p->out_offset, 8);
        v1 = __ssat(eedge_requantize(a1, p->multiplier[c + 1], p->shift[c + 1]) + p->out_offset,
                    8);
        v2 = __ssat(eedge_requantize(a2, p->multiplier[c + 2], p->shift[c + 2]) + p->out_offset,
                    8);
        v3 = __ssat(eedge_requantize(a3, p->multiplier[c + 3], p->shift[c + 3]) + p->out_offset,
                    8);
    }
    word = ((uint32_t)v0 & 0xffu) | (((uint32_t)v1 & 0xffu) << 8) |
           (((uint32_t)v2 & 0xffu) << 16) | ((uint32_t)v3 << 24);
    word = (uint32_t)clamp_s8x4((int32_t)word, low, high);
    memcpy(out, &word, 4);
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

/* a 3x3 window inside the image, dilation 1: channels [0, blocks * 4) of one pixel */
static void dw3x3_inside(const eedge_conv_params *p, const int8_t *x, const int8_t *w,
                         const int32_t *bias, int8_t *out, int32_t blocks, int32_t offsets,
                         int32_t low, int32_t high) {
    const int32_t ch = p->in_c, row = p->in_w * p->in_c;
    int32_t c;
    for (c = 0; c < 4 * blocks; c += 4) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        const int8_t *xr = x + c, *wr = w + c;
        if (bias != 0) {
            a0 = bias[c];
            a1 = bias[c + 1];
            a2 = bias[c + 2];
            a3 = bias[c + 3];
        }
        DW_TAP(xr, wr);
        DW_TAP(xr + ch, wr + ch);
        DW_TAP(xr + 2 * ch, wr + 2 * ch);
        xr += row;
        wr += 3 * ch;
        DW_TAP(xr, wr);
        DW_TAP(xr + ch, wr + ch);
        DW_TAP(xr + 2 * ch, wr + 2 * ch);
        xr += row;
        wr += 3 * ch;
        DW_TAP(xr, wr);
        DW_TAP(xr + ch, wr + ch);
        DW_TAP(xr + 2 * ch, wr + 2 * ch);
        dw_store4(p, c, a0, a1, a2, a3, low, high, out + c);
    }
}

/* any window (taps [ky0, ky1) x [kx0, kx1) valid): channels [0, blocks * 4) */
static void dw_window4(const eedge_conv_params *p, const int8_t *input, int32_t window,
                       const int8_t *w, const int32_t *bias, int8_t *out, int32_t blocks,
                       int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1, int32_t offsets,
                       int32_t low, int32_t high) {
    const int32_t x_row = p->in_w * p->in_c * p->dil_h, x_step = p->in_c * p->dil_w;
    const int32_t w_row = p->k_w * p->out_c;
    int32_t c, ky, kx;
    for (c = 0; c < 4 * blocks; c += 4) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        if (bias != 0) {
            a0 = bias[c];
            a1 = bias[c + 1];
            a2 = bias[c + 2];
            a3 = bias[c + 3];
        }
        for (ky = ky0; ky < ky1; ++ky) {
            const int8_t *xp = input + (window + ky * x_row + kx0 * x_step + c);
            const int8_t *wp = w + ky * w_row + kx0 * p->out_c + c;
            for (kx = kx0; kx < kx1; ++kx) {
                DW_TAP(xp, wp);
                xp += x_step;
                wp += p->out_c;
            }
        }
        dw_store4(p, c, a0, a1, a2, a3, low, high, out + c);
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
        int32_t acc = bias != 0 ? bias[c] : 0;
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

static void depthwise_m1(const eedge_conv_params *p, const int8_t *input,
                         const int8_t *weights, const int32_t *bias, int8_t *output) {
    int32_t oy, ox;
#if defined(EEDGE_USE_DSP)
    const int32_t offsets = (int32_t)(((uint32_t)(uint16_t)p->in_offset << 16) |
                                      (uint16_t)p->in_offset);
    const int32_t low = (int32_t)(0x01010101u * (uint8_t)p->act_min);
    const int32_t high = (int32_t)(0x01010101u * (uint8_t)p->act_max);
    const int32_t blocks = p->out_c / 4;
    const int32_t fast3x3 = p->k_h == 3 && p->k_w == 3 && p->dil_h == 1 && p->dil_w == 1;
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
            int32_t kx0, kx1, done = 0;
            valid_taps(x0, p->k_w, p->dil_w, p->in_w, &kx0, &kx1);
#if defined(EEDGE_USE_DSP)
            if (fast3x3 && ky0 == 0 && ky1 == 3 && kx0 == 0 && kx1 == 3) {
                dw3x3_inside(p, input + window, weights, bias, out, blocks, offsets, low,
                             high);
            } else {
                dw_window4(p, input, window, weights, bias, out, blocks, ky0, ky1, kx0, kx1,
                           offsets, low, high);
            }
            done = 4 * blocks;
#endif
            dw_window1(p, input, window, weights, bias, out, done, ky0, ky1, kx0, kx1);
        }
    }
}

void eedge_depthwise_conv2d_s8(const eedge_conv_params *p, const int8_t *input,
                               const int8_t *weights, const int32_t *bias, int8_t *output) {
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
