/* Convolution, depthwise convolution and fully connected layers, int8 NHWC.
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

#include "eedge/dsp.h"
#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"

#if defined(EEDGE_USE_DSP)
static inline int32_t rotate_right_8(int32_t v) {
    return (int32_t)(((uint32_t)v >> 8) | ((uint32_t)v << 24));
}
#endif

/* Two weight rows against two int8 columns (input offset added on the fly):
 * acc[2*row + column] += sum (c + offset) * w over n. SXTAB16/SXTB16 split four
 * bytes into lanes (0, 2) and (1, 3) alike for inputs and weights, so SMLAD pairs
 * matching elements without any reordering. */
static void dot_2x2(const int8_t *w0, const int8_t *w1, const int8_t *c0, const int8_t *c1,
                    int32_t n, int32_t offset, int32_t acc[4]) {
    int32_t a00 = 0, a01 = 0, a10 = 0, a11 = 0;
    int32_t i = 0;
#if defined(EEDGE_USE_DSP)
    const int32_t offsets = (int32_t)(((uint32_t)(uint16_t)offset << 16) | (uint16_t)offset);
    for (; i + 4 <= n; i += 4) {
        const int32_t x0 = load_i32(c0 + i), x1 = load_i32(c1 + i);
        const int32_t x0e = __sxtab16(offsets, x0), x0o = sxtab16_ror8(offsets, x0);
        const int32_t x1e = __sxtab16(offsets, x1), x1o = sxtab16_ror8(offsets, x1);
        int32_t w = load_i32(w0 + i);
        int32_t we = __sxtb16(w), wo = sxtb16_ror8(w);
        a00 = __smlad(x0e, we, a00);
        a00 = __smlad(x0o, wo, a00);
        a01 = __smlad(x1e, we, a01);
        a01 = __smlad(x1o, wo, a01);
        w = load_i32(w1 + i);
        we = __sxtb16(w);
        wo = sxtb16_ror8(w);
        a10 = __smlad(x0e, we, a10);
        a10 = __smlad(x0o, wo, a10);
        a11 = __smlad(x1e, we, a11);
        a11 = __smlad(x1o, wo, a11);
    }
#endif
    for (; i < n; ++i) {
        const int32_t x0 = c0[i] + offset, x1 = c1[i] + offset;
        a00 += w0[i] * x0;
        a01 += w0[i] * x1;
        a10 += w1[i] * x0;
        a11 += w1[i] * x1;
    }
    acc[0] += a00;
    acc[1] += a01;
    acc[2] += a10;
    acc[3] += a11;
}

static inline int8_t finish(int32_t acc, const int32_t *bias, int32_t oc, int32_t multiplier,
                            int32_t shift, int32_t out_offset, int32_t low, int32_t high) {
    if (bias != 0) {
        acc += bias[oc];
    }
    acc = eedge_requantize(acc, multiplier, shift) + out_offset;
    return (int8_t)eedge_clamp(acc, low, high);
}

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

void eedge_fully_connected_s8(const eedge_fc_params *p, const int8_t *input,
                              const int8_t *weights, const int32_t *bias, int8_t *output) {
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
