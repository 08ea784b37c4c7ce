/* Convolution and depthwise convolution, int8 NHWC, per-channel requantization.
 *
 * Out-of-bounds taps are skipped, which equals padding with the input zero point
 * (their contribution (zp + in_offset) * w is zero). The DSP path (EEDGE_USE_DSP,
 * Cortex-M4/M7) packs pairs of int8 into int16x2 and uses SMLAD for two MACs per
 * instruction; sums of integers do not depend on their order, so both paths give
 * the same bytes.
 */
#include <string.h>

#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"

#if defined(EEDGE_USE_DSP)
#include <arm_acle.h>

static inline int32_t rotate_right_8(int32_t v) {
    return (int32_t)(((uint32_t)v >> 8) | ((uint32_t)v << 24));
}
#endif

static int32_t dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t x_offset) {
    int32_t acc = 0;
    int32_t i = 0;
#if defined(EEDGE_USE_DSP)
    const int32_t offsets = (int32_t)(((uint32_t)(uint16_t)x_offset << 16) |
                                      (uint16_t)x_offset);
    for (; i + 4 <= n; i += 4) {
        int32_t xs, ws;
        memcpy(&xs, x + i, 4);
        memcpy(&ws, w + i, 4);
        {
            /* bytes 0,2 and 1,3 sign-extended to 16-bit lanes, offset added per lane */
            const int32_t x02 = __sadd16(__sxtb16(xs), offsets);
            const int32_t x13 = __sadd16(__sxtb16(rotate_right_8(xs)), offsets);
            const int32_t w02 = __sxtb16(ws);
            const int32_t w13 = __sxtb16(rotate_right_8(ws));
            acc = __smlad(x02, w02, acc);
            acc = __smlad(x13, w13, acc);
        }
    }
#endif
    for (; i < n; ++i) {
        acc += ((int32_t)x[i] + x_offset) * (int32_t)w[i];
    }
    return acc;
}

void eedge_conv2d_s8(const eedge_conv_params *p, const int8_t *input, const int8_t *weights,
                     const int32_t *bias, int8_t *output) {
    int32_t oy, ox, oc, ky, kx;
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            int8_t *out = output + (oy * p->out_w + ox) * p->out_c;
            for (oc = 0; oc < p->out_c; ++oc) {
                const int8_t *filter = weights + oc * p->k_h * p->k_w * p->in_c;
                int32_t acc = 0;
                for (ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = y0 + ky * p->dil_h;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = x0 + kx * p->dil_w;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        acc += dot_s8(input + (iy * p->in_w + ix) * p->in_c,
                                      filter + (ky * p->k_w + kx) * p->in_c, p->in_c,
                                      p->in_offset);
                    }
                }
                if (bias != 0) {
                    acc += bias[oc];
                }
                acc = eedge_requantize(acc, p->multiplier[oc], p->shift[oc]) + p->out_offset;
                out[oc] = (int8_t)eedge_clamp(acc, p->act_min, p->act_max);
            }
        }
    }
}

void eedge_depthwise_conv2d_s8(const eedge_conv_params *p, const int8_t *input,
                               const int8_t *weights, const int32_t *bias, int8_t *output) {
    int32_t oy, ox, ic, m, ky, kx;
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            int8_t *out = output + (oy * p->out_w + ox) * p->out_c;
            for (ic = 0; ic < p->in_c; ++ic) {
                for (m = 0; m < p->depth_multiplier; ++m) {
                    const int32_t oc = ic * p->depth_multiplier + m;
                    int32_t acc = 0;
                    for (ky = 0; ky < p->k_h; ++ky) {
                        const int32_t iy = y0 + ky * p->dil_h;
                        if (iy < 0 || iy >= p->in_h) {
                            continue;
                        }
                        for (kx = 0; kx < p->k_w; ++kx) {
                            const int32_t ix = x0 + kx * p->dil_w;
                            if (ix < 0 || ix >= p->in_w) {
                                continue;
                            }
                            acc += ((int32_t)input[(iy * p->in_w + ix) * p->in_c + ic] +
                                    p->in_offset) *
                                   (int32_t)weights[(ky * p->k_w + kx) * p->out_c + oc];
                        }
                    }
                    if (bias != 0) {
                        acc += bias[oc];
                    }
                    acc = eedge_requantize(acc, p->multiplier[oc], p->shift[oc]) + p->out_offset;
                    out[oc] = (int8_t)eedge_clamp(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void eedge_fully_connected_s8(const eedge_fc_params *p, const int8_t *input,
                              const int8_t *weights, const int32_t *bias, int8_t *output) {
    int32_t oc, i;
    for (oc = 0; oc < p->out_depth; ++oc) {
        const int8_t *row = weights + oc * p->in_depth;
        int32_t acc;
        if (p->weight_offset == 0) {
            acc = dot_s8(input, row, p->in_depth, p->in_offset);
        } else {
            acc = 0;
            for (i = 0; i < p->in_depth; ++i) {
                acc += ((int32_t)input[i] + p->in_offset) * ((int32_t)row[i] + p->weight_offset);
            }
        }
        if (bias != 0) {
            acc += bias[oc];
        }
        acc = eedge_requantize(acc, p->multiplier[oc], p->shift[oc]) + p->out_offset;
        output[oc] = (int8_t)eedge_clamp(acc, p->act_min, p->act_max);
    }
}
