/* Convolution, depthwise convolution and fully connected layers, int8 NHWC.
 *
 * Convolution works on im2col columns: for a pair of output pixels, their input
 * patches are copied once into int16 with the input offset added (zero where the
 * window leaves the image, which equals padding with the input zero point), then
 * reused for every output channel, two channels at a time. The Cortex-M DSP path
 * (EEDGE_USE_DSP) stores each group of four patch values as (x0, x2, x1, x3) so
 * that SXTB16 on four weight bytes lines up with them and SMLAD does two
 * multiply-accumulates per instruction. Sums of integers do not depend on their
 * order, so every path gives the same bytes as TFLite's reference kernels.
 */
#include <string.h>

#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"

#if defined(EEDGE_USE_DSP)
#include <arm_acle.h>

static inline int32_t load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline int32_t rotate_right_8(int32_t v) {
    return (int32_t)(((uint32_t)v >> 8) | ((uint32_t)v << 24));
}
#endif

/* int8 values + offset -> int16 */
static void widen(const int8_t *x, int32_t n, int32_t offset, int16_t *out) {
    int32_t i;
    for (i = 0; i < n; ++i) {
        out[i] = (int16_t)(x[i] + offset);
    }
}

/* Lay a whole column out for the dot products: (x0, x2, x1, x3) per group of four
 * on the DSP path (to match SXTB16 on weights), untouched otherwise. */
static void arrange(int16_t *column, int32_t n) {
#if defined(EEDGE_USE_DSP)
    int32_t i;
    for (i = 0; i + 4 <= n; i += 4) {
        const int16_t second = column[i + 1];
        column[i + 1] = column[i + 2];
        column[i + 2] = second;
    }
#else
    (void)column;
    (void)n;
#endif
}

/* Two weight rows against two columns: acc[row][column] += sum w * c over n. */
static void dot_2x2(const int8_t *w0, const int8_t *w1, const int16_t *c0, const int16_t *c1,
                    int32_t n, int32_t acc[4]) {
    int32_t a00 = 0, a01 = 0, a10 = 0, a11 = 0;
    int32_t i = 0;
#if defined(EEDGE_USE_DSP)
    for (; i + 4 <= n; i += 4) {
        const int32_t wa = load_i32(w0 + i), wb = load_i32(w1 + i);
        const int32_t wa02 = __sxtb16(wa), wa13 = __sxtb16(rotate_right_8(wa));
        const int32_t wb02 = __sxtb16(wb), wb13 = __sxtb16(rotate_right_8(wb));
        const int32_t c0a = load_i32(c0 + i), c0b = load_i32(c0 + i + 2);
        const int32_t c1a = load_i32(c1 + i), c1b = load_i32(c1 + i + 2);
        a00 = __smlad(c0a, wa02, a00);
        a00 = __smlad(c0b, wa13, a00);
        a01 = __smlad(c1a, wa02, a01);
        a01 = __smlad(c1b, wa13, a01);
        a10 = __smlad(c0a, wb02, a10);
        a10 = __smlad(c0b, wb13, a10);
        a11 = __smlad(c1a, wb02, a11);
        a11 = __smlad(c1b, wb13, a11);
    }
#endif
    for (; i < n; ++i) {
        a00 += w0[i] * c0[i];
        a01 += w0[i] * c1[i];
        a10 += w1[i] * c0[i];
        a11 += w1[i] * c1[i];
    }
    acc[0] += a00;
    acc[1] += a01;
    acc[2] += a10;
    acc[3] += a11;
}

static int32_t dot_1x1(const int8_t *w, const int16_t *c, int32_t n) {
    int32_t acc = 0;
    int32_t i = 0;
#if defined(EEDGE_USE_DSP)
    for (; i + 4 <= n; i += 4) {
        const int32_t wv = load_i32(w + i);
        acc = __smlad(load_i32(c + i), __sxtb16(wv), acc);
        acc = __smlad(load_i32(c + i + 2), __sxtb16(rotate_right_8(wv)), acc);
    }
#endif
    for (; i < n; ++i) {
        acc += w[i] * c[i];
    }
    return acc;
}

static inline int8_t finish(int32_t acc, const int32_t *bias, int32_t oc, int32_t multiplier,
                            int32_t shift, int32_t out_offset, int32_t low, int32_t high) {
    if (bias != 0) {
        acc += bias[oc];
    }
    acc = eedge_requantize(acc, multiplier, shift) + out_offset;
    return (int8_t)eedge_clamp(acc, low, high);
}

/* Copy the receptive field of output pixel (oy, ox) into an int16 column. */
static void im2col(const eedge_conv_params *p, const int8_t *input, int32_t oy, int32_t ox,
                   int16_t *column) {
    const int32_t y0 = oy * p->stride_h - p->pad_top;
    const int32_t x0 = ox * p->stride_w - p->pad_left;
    int32_t ky, kx;
    for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = y0 + ky * p->dil_h;
        for (kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = x0 + kx * p->dil_w;
            int16_t *dst = column + (ky * p->k_w + kx) * p->in_c;
            if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                /* outside the image: the tap must contribute zero */
                int32_t c;
                for (c = 0; c < p->in_c; ++c) {
                    dst[c] = 0;
                }
            } else {
                widen(input + (iy * p->in_w + ix) * p->in_c, p->in_c, p->in_offset, dst);
            }
        }
    }
    arrange(column, p->k_h * p->k_w * p->in_c);
}

void eedge_conv2d_s8(const eedge_conv_params *p, const int8_t *input, const int8_t *weights,
                     const int32_t *bias, int8_t *output) {
    const int32_t k = p->k_h * p->k_w * p->in_c;
    const int32_t pixels = p->out_h * p->out_w;
    int16_t *col0 = (int16_t *)p->scratch;
    int16_t *col1 = col0 + k + (k & 1);
    int32_t pixel, oc;
    for (pixel = 0; pixel < pixels; pixel += 2) {
        const int32_t two = pixel + 1 < pixels;
        int8_t *out0 = output + pixel * p->out_c;
        int8_t *out1 = out0 + p->out_c;
        im2col(p, input, pixel / p->out_w, pixel % p->out_w, col0);
        if (two) {
            im2col(p, input, (pixel + 1) / p->out_w, (pixel + 1) % p->out_w, col1);
        } else {
            memcpy(col1, col0, (size_t)k * sizeof(int16_t));
        }
        for (oc = 0; oc < p->out_c; oc += 2) {
            const int32_t pair = oc + 1 < p->out_c;
            const int8_t *w0 = weights + oc * k;
            const int8_t *w1 = pair ? w0 + k : w0;
            int32_t acc[4] = {0, 0, 0, 0};
            dot_2x2(w0, w1, col0, col1, k, acc);
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

void eedge_depthwise_conv2d_s8(const eedge_conv_params *p, const int8_t *input,
                               const int8_t *weights, const int32_t *bias, int8_t *output) {
    int32_t *acc = p->scratch;
    const int32_t m = p->depth_multiplier;
    int32_t oy, ox, ky, kx, c, j;
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            int8_t *out = output + (oy * p->out_w + ox) * p->out_c;
            for (c = 0; c < p->out_c; ++c) {
                acc[c] = bias != 0 ? bias[c] : 0;
            }
            for (ky = 0; ky < p->k_h; ++ky) {
                const int32_t iy = y0 + ky * p->dil_h;
                if (iy < 0 || iy >= p->in_h) {
                    continue;
                }
                for (kx = 0; kx < p->k_w; ++kx) {
                    const int32_t ix = x0 + kx * p->dil_w;
                    const int8_t *x = input + (iy * p->in_w + ix) * p->in_c;
                    const int8_t *w = weights + (ky * p->k_w + kx) * p->out_c;
                    if (ix < 0 || ix >= p->in_w) {
                        continue;
                    }
                    if (m == 1) {
                        for (c = 0; c < p->out_c; ++c) {
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
            for (c = 0; c < p->out_c; ++c) {
                const int32_t v = eedge_requantize(acc[c], p->multiplier[c], p->shift[c]) +
                                  p->out_offset;
                out[c] = (int8_t)eedge_clamp(v, p->act_min, p->act_max);
            }
        }
    }
}

void eedge_fully_connected_s8(const eedge_fc_params *p, const int8_t *input,
                              const int8_t *weights, const int32_t *bias, int8_t *output) {
    int32_t oc, i;
    if (p->weight_offset != 0) { /* asymmetric weights: rare, kept simple */
        for (oc = 0; oc < p->out_depth; ++oc) {
            const int8_t *row = weights + oc * p->in_depth;
            int32_t acc = 0;
            for (i = 0; i < p->in_depth; ++i) {
                acc += ((int32_t)input[i] + p->in_offset) * ((int32_t)row[i] + p->weight_offset);
            }
            output[oc] = finish(acc, bias, oc, p->multiplier[oc], p->shift[oc], p->out_offset,
                                p->act_min, p->act_max);
        }
        return;
    }
    {
        int16_t *column = (int16_t *)p->scratch;
        widen(input, p->in_depth, p->in_offset, column);
        arrange(column, p->in_depth);
        for (oc = 0; oc < p->out_depth; ++oc) {
            const int32_t acc = dot_1x1(weights + oc * p->in_depth, column, p->in_depth);
            output[oc] = finish(acc, bias, oc, p->multiplier[oc], p->shift[oc], p->out_offset,
                                p->act_min, p->act_max);
        }
    }
}
