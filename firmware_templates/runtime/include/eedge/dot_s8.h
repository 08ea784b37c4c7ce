/* Two int8 weight rows against two int8 columns, shared by convolution and fully
 * connected layers (conv.c, fully_connected.c). */
#ifndef EEDGE_DOT_S8_H
#define EEDGE_DOT_S8_H

#include <stdint.h>

#include "eedge/dsp.h"
#include "eedge/fixedpoint.h"

/* Two weight rows against two int8 columns (input offset added on the fly):
 * acc[2*row + column] += sum (c + offset) * w over n. SXTAB16/SXTB16 split four
 * bytes into lanes (0, 2) and (1, 3) alike for inputs and weights, so SMLAD pairs
 * matching elements without any reordering. */
static inline void dot_2x2(const int8_t *w0, const int8_t *w1, const int8_t *c0, const int8_t *c1,
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

#endif /* EEDGE_DOT_S8_H */
