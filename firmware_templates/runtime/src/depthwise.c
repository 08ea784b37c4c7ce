/* Depthwise convolution, int8 NHWC, bit-exact with TFLite's reference kernel. */
#include "eedge/dsp.h"
#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"

/* Depthwise, multiplier 1, DSP path: four channels per step. SXTAB16 widens two
 * bytes and adds the input offset in one instruction; SMLABB/SMLATT accumulate the
 * bottom and top halves separately, so each channel keeps its own sum. */
#if defined(EEDGE_USE_DSP)
static void depthwise_block4(const eedge_conv_params *p, const int8_t *x, int32_t window,
                             const int8_t *w, int32_t ky0, int32_t ky1, int32_t kx0,
                             int32_t kx1, int32_t offsets, int32_t acc[4]) {
    const int32_t x_row = p->in_w * p->in_c * p->dil_h, x_step = p->in_c * p->dil_w;
    const int32_t w_row = p->k_w * p->out_c;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t ky, kx;
    for (ky = ky0; ky < ky1; ++ky) {
        const int8_t *xp = x + (window + ky * x_row + kx0 * x_step);
        const int8_t *wp = w + ky * w_row + kx0 * p->out_c;
        for (kx = kx0; kx < kx1; ++kx) {
            const int32_t xv = load_i32(xp), wv = load_i32(wp);
            const int32_t x02 = __sxtab16(offsets, xv), x13 = sxtab16_ror8(offsets, xv);
            const int32_t w02 = __sxtb16(wv), w13 = sxtb16_ror8(wv);
            a0 = __smlabb(x02, w02, a0);
            a2 = __smlatt(x02, w02, a2);
            a1 = __smlabb(x13, w13, a1);
            a3 = __smlatt(x13, w13, a3);
            xp += x_step;
            wp += p->out_c;
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
#endif

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

void eedge_depthwise_conv2d_s8(const eedge_conv_params *p, const int8_t *input,
                               const int8_t *weights, const int32_t *bias, int8_t *output) {
    int32_t *acc = p->scratch;
    const int32_t m = p->depth_multiplier;
#if defined(EEDGE_USE_DSP)
    const int32_t offsets = (int32_t)(((uint32_t)(uint16_t)p->in_offset << 16) |
                                      (uint16_t)p->in_offset);
#endif
    int32_t oy, ox, ky, kx, c, j;
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
            for (c = 0; c < p->out_c; ++c) {
                acc[c] = bias != 0 ? bias[c] : 0;
            }
#if defined(EEDGE_USE_DSP)
            if (m == 1) {
                for (; done + 4 <= p->out_c; done += 4) {
                    depthwise_block4(p, input + done, window, weights + done, ky0, ky1, kx0,
                                     kx1, offsets, acc + done);
                }
            }
#endif
            if (done < p->out_c) {
                for (ky = ky0; ky < ky1; ++ky) {
                    for (kx = kx0; kx < kx1; ++kx) {
                        const int8_t *x = input + (window + (ky * p->dil_h * p->in_w +
                                                             kx * p->dil_w) * p->in_c);
                        const int8_t *w = weights + (ky * p->k_w + kx) * p->out_c;
                        if (m == 1) {
                            for (c = done; c < p->out_c; ++c) {
                                acc[c] += (x[c] + p->in_offset) * w[c];
                            }
                        } else {
                            for (c = 0; c < p->in_c; ++c) {
                                const int32_t v = x[c] + p->in_offset;
                                for (j = 0; j < m; ++j) {
                                    acc[c * m + j] += v * w[c * m + j];
                                }
                            }
                        }
                    }
                }
            }
            for (c = 0; c < p->out_c; ++c) {
                const int32_t v = eedge_requantize(acc[c], p->multiplier[c], p->shift[c]) +
                                  p->out_offset;
                out[c] = (int8_t)eedge_clamp(v, p->act_min, p->act_max);
            }
        }
    }
}
