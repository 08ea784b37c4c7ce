/* Transposed convolution, int8 NHWC, bit-exact with TFLite's reference kernel.
 *
 * TFLite scatters every input pixel into an int32 buffer the size of the output and
 * requantizes afterwards. Here each output pixel gathers the taps that reach it
 * instead (output y = input y * stride - pad + kernel y, so kernel rows congruent to
 * y + pad modulo the stride, each with one input row), so no output-sized scratch is
 * needed; integer sums do not depend on their order, so the bytes are TFLite's. The
 * bias is added after the products and before the per-channel requantization, as in
 * TFLite. Weights are OHWI: each tap's weights for one output channel are the input
 * channels, contiguous, so each tap is a dot product over the input channels; on
 * Cortex-M with DSP, SXTAB16 widens four input bytes and adds the input offset and
 * SMLAD does two multiply-accumulates per instruction, for two output channels at once.
 */
#include <string.h>

#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"

#if defined(EEDGE_USE_DSP)
#include <arm_acle.h>

static inline int32_t sxtb16_ror8(int32_t v) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

static inline int32_t sxtab16_ror8(int32_t a, int32_t v) {
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(v));
    return r;
}
#endif

/* acc[0] += sum (x + offset) * w0, acc[1] += sum (x + offset) * w1 over n channels. */
static inline void dot_1x2(const int8_t *x, const int8_t *w0, const int8_t *w1, int32_t n,
                           int32_t offset, int32_t acc[2]) {
    int32_t a0 = acc[0], a1 = acc[1];
    int32_t i = 0;
#if defined(EEDGE_USE_DSP)
    const int32_t offsets = (int32_t)(((uint32_t)(uint16_t)offset << 16) | (uint16_t)offset);
    for (; i + 4 <= n; i += 4) {
        int32_t xv, wv;
        memcpy(&xv, x + i, 4);
        {
            const int32_t xe = __sxtab16(offsets, xv), xo = sxtab16_ror8(offsets, xv);
            memcpy(&wv, w0 + i, 4);
            a0 = __smlad(xe, __sxtb16(wv), a0);
            a0 = __smlad(xo, sxtb16_ror8(wv), a0);
            memcpy(&wv, w1 + i, 4);
            a1 = __smlad(xe, __sxtb16(wv), a1);
            a1 = __smlad(xo, sxtb16_ror8(wv), a1);
        }
    }
#endif
    for (; i < n; ++i) {
        const int32_t v = x[i] + offset;
        a0 += v * w0[i];
        a1 += v * w1[i];
    }
    acc[0] = a0;
    acc[1] = a1;
}

static inline int8_t finish(int32_t acc, const int32_t *bias, int32_t oc,
                            const eedge_transpose_conv_params *p) {
    if (bias != 0) {
        acc += bias[oc];
    }
    acc = eedge_requantize(acc, p->multiplier[oc], p->shift[oc]) + p->out_offset;
    return (int8_t)eedge_clamp(acc, p->act_min, p->act_max);
}

void eedge_transpose_conv_s8(const eedge_transpose_conv_params *p, const int8_t *input,
                             const int8_t *weights, const int32_t *bias, int8_t *output) {
    const int32_t tap = p->in_c, filter = p->k_h * p->k_w * p->in_c;
    int32_t oy, ox, oc, fy, fx;
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t ty = oy + p->pad_top;
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t tx = ox + p->pad_left;
            int8_t *out = output + (oy * p->out_w + ox) * p->out_c;
            for (oc = 0; oc < p->out_c; oc += 2) {
                const int32_t pair = oc + 1 < p->out_c;
                const int8_t *w0 = weights + oc * filter;
                const int8_t *w1 = pair ? w0 + filter : w0;
                int32_t acc[2] = {0, 0};
                for (fy = ty % p->stride_h; fy < p->k_h && fy <= ty; fy += p->stride_h) {
                    const int32_t iy = (ty - fy) / p->stride_h;
                    if (iy >= p->in_h) {
                        continue;
                    }
                    for (fx = tx % p->stride_w; fx < p->k_w && fx <= tx; fx += p->stride_w) {
                        const int32_t ix = (tx - fx) / p->stride_w;
                        const int32_t k = (fy * p->k_w + fx) * tap;
                        if (ix >= p->in_w) {
                            continue;
                        }
                        dot_1x2(input + (iy * p->in_w + ix) * p->in_c, w0 + k, w1 + k, p->in_c,
                                p->in_offset, acc);
                    }
                }
                out[oc] = finish(acc[0], bias, oc, p);
                if (pair) {
                    out[oc + 1] = finish(acc[1], bias, oc + 1, p);
                }
            }
        }
    }
}
