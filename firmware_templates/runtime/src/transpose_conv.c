/* Transposed convolution, int8 NHWC, bit-exact with TFLite's reference kernel.
 *
 * TFLite scatters every input pixel into an int32 buffer the size of the output and
 * requantizes afterwards. Here each output pixel gathers the taps that reach it
 * instead (output y = input y * stride - pad + kernel y: kernel rows congruent to
 * y + pad modulo the stride, each with one input row), so the scratch is one tap list
 * (two words per kernel tap), not an output-sized int32 buffer. Integer sums do not
 * depend on their order, so the bytes are TFLite's; the bias is added after the
 * products and before the per-channel requantization, as in TFLite. Weights are OHWI:
 * a tap's weights for one output channel are its input channels, contiguous, so each
 * tap is a dot product over the input channels, for four output channels at once (one
 * input load serves four). On Cortex-M with DSP, SXTAB16 widens four input bytes and
 * adds the input offset, and SMLAD does two multiply-accumulates per instruction.
 */
#include <string.h>

#include "eedge/dsp.h"
#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"

/* acc[j] += sum over n channels of (x + offset) * w[j * stride], for four weight rows
 * `stride` bytes apart (four consecutive output channels of OHWI weights). One weight
 * pointer and the stride, rather than four pointers, keep the loop within the
 * Cortex-M4's registers (four pointers spilled two of them on every iteration). */
static inline void dot_1x4(const int8_t *x, const int8_t *w, int32_t stride, int32_t n,
                           int32_t offset, int32_t acc[4]) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const int8_t *const end = x + n;
#if defined(EEDGE_USE_DSP)
    const int8_t *const end4 = x + (n & ~3);
    const int32_t offsets = (int32_t)(((uint32_t)(uint16_t)offset << 16) | (uint16_t)offset);
    while (x < end4) {
        int32_t xv, wv;
        memcpy(&xv, x, 4);
        x += 4;
        {
            const int32_t xe = __sxtab16(offsets, xv), xo = sxtab16_ror8(offsets, xv);
            memcpy(&wv, w, 4);
            a0 = __smlad(xe, __sxtb16(wv), a0);
            a0 = __smlad(xo, sxtb16_ror8(wv), a0);
            memcpy(&wv, w + stride, 4);
            a1 = __smlad(xe, __sxtb16(wv), a1);
            a1 = __smlad(xo, sxtb16_ror8(wv), a1);
            memcpy(&wv, w + 2 * stride, 4);
            a2 = __smlad(xe, __sxtb16(wv), a2);
            a2 = __smlad(xo, sxtb16_ror8(wv), a2);
            memcpy(&wv, w + 3 * stride, 4);
            a3 = __smlad(xe, __sxtb16(wv), a3);
            a3 = __smlad(xo, sxtb16_ror8(wv), a3);
        }
        w += 4;
    }
#endif
    while (x < end) {
        const int32_t v = *x++ + offset;
        a0 += v * w[0];
        a1 += v * w[stride];
        a2 += v * w[2 * stride];
        a3 += v * w[3 * stride];
        ++w;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* acc += sum over n channels of (x + offset) * w: one output channel (the last few). */
static inline int32_t dot_1x1(const int8_t *x, const int8_t *w, int32_t n, int32_t offset,
                              int32_t acc) {
    int32_t i;
    for (i = 0; i < n; ++i) {
        acc += (x[i] + offset) * w[i];
    }
    return acc;
}

static inline int8_t finish(int32_t acc, const int32_t *bias, int32_t oc,
                            const eedge_transpose_conv_params *p) {
    if (bias != 0) {
        acc += bias[oc];
    }
    acc = eedge_requantize(acc, p->multiplier[oc], p->shift[oc]) + p->out_offset;
    return (int8_t)eedge_clamp(acc, p->act_min, p->act_max);
}

/* The taps reaching output pixel (oy, ox): pairs of (input offset, weight offset).
 * Taps whose weights are zero for every channel are left out: the lowering pads
 * kernels with zero rows and columns to express ONNX pads (PyTorch's k=3, s=2, p=1,
 * output_padding=1 becomes 4x4), and skipping them restores the 3x3 cost. */
static int32_t gather_taps(const eedge_transpose_conv_params *p, int32_t oy, int32_t ox,
                           int32_t *taps) {
    const int32_t ty = oy + p->pad_top, tx = ox + p->pad_left;
    int32_t n = 0, fy, fx;
    for (fy = ty % p->stride_h; fy < p->k_h && fy <= ty; fy += p->stride_h) {
        const int32_t iy = (ty - fy) / p->stride_h;
        if (iy >= p->in_h) {
            continue;
        }
        for (fx = tx % p->stride_w; fx < p->k_w && fx <= tx; fx += p->stride_w) {
            const int32_t ix = (tx - fx) / p->stride_w;
            if (ix < p->in_w && p->live[fy * p->k_w + fx]) {
                taps[2 * n] = (iy * p->in_w + ix) * p->in_c;
                taps[2 * n + 1] = (fy * p->k_w + fx) * p->in_c;
                ++n;
            }
        }
    }
    return n;
}

void eedge_transpose_conv_s8(const eedge_transpose_conv_params *p, const int8_t *input,
                             const int8_t *weights, const int32_t *bias, int8_t *output) {
    const int32_t filter = p->k_h * p->k_w * p->in_c, in_c = p->in_c, offset = p->in_offset;
    const int32_t out_c = p->out_c, groups = out_c & ~3;
    int32_t *taps = p->scratch;
    int32_t oy, ox, oc, t;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t n = gather_taps(p, oy, ox, taps);
            int8_t *out = output + (oy * p->out_w + ox) * out_c;
            for (oc = 0; oc < groups; oc += 4) {
                const int8_t *rows = weights + oc * filter;
                int32_t acc[4] = {0, 0, 0, 0};
                for (t = 0; t < n; ++t) {
                    dot_1x4(input + taps[2 * t], rows + taps[2 * t + 1], filter, in_c, offset,
                            acc);
                }
                out[oc] = finish(acc[0], bias, oc, p);
                out[oc + 1] = finish(acc[1], bias, oc + 1, p);
                out[oc + 2] = finish(acc[2], bias, oc + 2, p);
                out[oc + 3] = finish(acc[3], bias, oc + 3, p);
            }
            for (; oc < out_c; ++oc) {   /* the last out_c % 4 channels, one at a time */
                const int8_t *row = weights + oc * filter;
                int32_t acc = 0;
                for (t = 0; t < n; ++t) {
                    acc = dot_1x1(input + taps[2 * t], row + taps[2 * t + 1], in_c, offset, acc);
                }
                out[oc] = finish(acc, bias, oc, p);
            }
        }
    }
}
