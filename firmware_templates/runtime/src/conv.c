/* Convolution, int8 NHWC.
 *
 * Convolution works on im2col columns: the receptive fields of two output pixels
 * are gathered once (taps outside the image hold the input zero point, which
 * contributes nothing) and reused for every output channel, two channels at a time
 * (a 2x2 block: four accumulators). On Cortex-M with the DSP extension
 * (EEDGE_USE_DSP) SXTAB16 widens four input bytes and adds the input offset, and
 * SMLAD performs two multiply-accumulates per instruction. Integer sums do not
 * depend on their order, so every path gives TFLite's reference bytes.
 */
#include <string.h>

#include "eedge/dot_s8.h"
#include "eedge/kernels.h"

/* The receptive field of output pixel (oy, ox) as one int8 column. Taps outside the
 * image hold the input zero point, which the offset turns into zero. 1x1 kernels
 * with stride 1 and no padding read the input in place. */
static const int8_t *im2col(const eedge_conv_params *p, const int8_t *input, int32_t pixel,
                            int8_t *column) {
    const int32_t oy = pixel / p->out_w, ox = pixel % p->out_w;
    const int32_t y0 = oy * p->stride_h - p->pad_top;
    const int32_t x0 = ox * p->stride_w - p->pad_left;
    const int8_t zero_point = (int8_t)-p->in_offset;
    int32_t ky, kx;
    if (p->k_h == 1 && p->k_w == 1 && y0 >= 0 && x0 >= 0 && y0 < p->in_h && x0 < p->in_w) {
        return input + (y0 * p->in_w + x0) * p->in_c;
    }
    for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = y0 + ky * p->dil_h;
        int8_t *dst = column + ky * p->k_w * p->in_c;
        if (iy < 0 || iy >= p->in_h) {
            memset(dst, zero_point, (size_t)(p->k_w * p->in_c));
        } else if (p->dil_w == 1 && x0 >= 0 && x0 + p->k_w <= p->in_w) {
            /* the whole kernel row lies inside the image: one contiguous copy */
            memcpy(dst, input + (iy * p->in_w + x0) * p->in_c, (size_t)(p->k_w * p->in_c));
        } else {
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = x0 + kx * p->dil_w;
                if (ix < 0 || ix >= p->in_w) {
                    memset(dst + kx * p->in_c, zero_point, (size_t)p->in_c);
                } else {
                    memcpy(dst + kx * p->in_c, input + (iy * p->in_w + ix) * p->in_c,
                           (size_t)p->in_c);
                }
            }
        }
    }
    return column;
}

void eedge_conv2d_s8(const eedge_conv_params *p, const int8_t *input, const int8_t *weights,
                     const int32_t *bias, int8_t *output) {
    const int32_t k = p->k_h * p->k_w * p->in_c;
    const int32_t pixels = p->out_h * p->out_w;
    int8_t *buffer0 = (int8_t *)p->scratch;
    int8_t *buffer1 = buffer0 + ((k + 3) & ~3);
    int32_t pixel, oc;
    for (pixel = 0; pixel < pixels; pixel += 2) {
        const int32_t two = pixel + 1 < pixels;
        int8_t *out0 = output + pixel * p->out_c;
        int8_t *out1 = out0 + p->out_c;
        const int8_t *col0 = im2col(p, input, pixel, buffer0);
        const int8_t *col1 = two ? im2col(p, input, pixel + 1, buffer1) : col0;
        for (oc = 0; oc < p->out_c; oc += 2) {
            const int32_t pair = oc + 1 < p->out_c;
            const int8_t *w0 = weights + oc * k;
            const int8_t *w1 = pair ? w0 + k : w0;
            int32_t acc[4] = {0, 0, 0, 0};
            dot_2x2(w0, w1, col0, col1, k, p->in_offset, acc);
            out0[oc] = finish(acc[0], bias, oc, p->multiplier[oc], p->shift[oc], p->out_offset,
                              p->act_min, p->act_max);
            if (two) {
                out1[oc] = finish(acc[1], bias, oc, p->multiplier[oc], p->shift[oc],
                                  p->out_offset, p->act_min, p->act_max);
            }
            if (pair) {
                out0[oc + 1] = finish(acc[2], bias, oc + 1, p->multiplier[oc + 1],
                                      p->shift[oc + 1], p->out_offset, p->act_min, p->act_max);
                if (two) {
                    out1[oc + 1] = finish(acc[3], bias, oc + 1, p->multiplier[oc + 1],
                                          p->shift[oc + 1], p->out_offset, p->act_min,
                                          p->act_max);
                }
            }
        }
    }
}
