/* Helium (Arm MVE, Cortex-M55/M85) kernels for the hot int8 ops, bit-exact with the
 * portable kernels. Built only with EEDGE_USE_MVE (targets with `mve: true`).
 *
 * Each entry point returns 1 when it computed the op and 0 when it declines the shape
 * (the caller then runs the portable/DSP kernel), so a kernel only has to handle the
 * cases it was written and tested for.
 *
 * Integer sums do not depend on their order, so only the output stage needs care: it is
 * the vector form of eedge_requantize (fixedpoint.h), lane for lane:
 *   - the left shift is VSHL (register), which drops the bits shifted out like C's
 *     (uint32_t)x << left;
 *   - VQRDMULH computes sat((2ab + 2^31) >> 32) = floor((ab + 2^30) / 2^31), which is
 *     eedge_srdhm exactly, saturating in the same single case a = b = INT32_MIN;
 *   - VRSHL by -r rounds ties up ((x + 2^(r-1)) >> r, in infinite precision); the
 *     portable rounding divide rounds ties away from zero, so negative lanes are first
 *     lowered by one (saturating) when r > 0: for x = q 2^r + m (0 <= m < 2^r) that
 *     gives q + [m >= 2^(r-1) + 1], which is eedge_rdbpot's q + [m > threshold] with
 *     threshold 2^(r-1) for negative x; for x = INT32_MIN the saturation keeps x and
 *     both give x >> r. With r = 0 there is no correction and no rounding.
 */
#ifndef EEDGE_KERNELS_MVE_H
#define EEDGE_KERNELS_MVE_H

#include <stdint.h>

#include "eedge/kernels.h"

#if defined(EEDGE_USE_MVE)
#include <arm_mve.h>

int eedge_conv2d_s8_mve(const eedge_conv_params *p, const int8_t *input, const int8_t *weights,
                        const int32_t *bias, int8_t *output);
int eedge_depthwise_conv2d_s8_mve(const eedge_conv_params *p, const int8_t *input,
                                  const int8_t *weights, const int32_t *bias, int8_t *output);
int eedge_fully_connected_s8_mve(const eedge_fc_params *p, const int8_t *input,
                                 const int8_t *weights, const int32_t *bias, int8_t *output);

/* eedge_requantize on four lanes (see the proof above). */
static inline int32x4_t eedge_mve_requantize(int32x4_t x, int32x4_t multiplier,
                                             int32x4_t shift) {
    const int32x4_t zero = vdupq_n_s32(0);
    const int32x4_t neg_right = vminq_s32(shift, zero);
    int32x4_t v = vshlq_s32(x, vmaxq_s32(shift, zero));
    v = vqrdmulhq_s32(v, multiplier);
    /* -1 where v < 0 and r > 0: the sign bit survives the AND only if -r is negative */
    v = vqaddq_s32(v, vshrq_n_s32(vandq_s32(v, neg_right), 31));
    return vrshlq_s32(v, neg_right);
}

/* eedge_mve_requantize when every lane's shift is a right shift (shift <= 0) */
static inline int32x4_t eedge_mve_requantize_right(int32x4_t x, int32x4_t multiplier,
                                                   int32x4_t shift) {
    const int32x4_t v = vqrdmulhq_s32(x, multiplier);
    return vrshlq_s32(vqaddq_s32(v, vshrq_n_s32(vandq_s32(v, shift), 31)), shift);
}

/* N int32 sums to int8 outputs: requantize (per channel, or with multiplier[0] and
 * shift[0] for all), add the output zero point, clamp, store N bytes. */
static inline void eedge_mve_output_stage(const int32_t *acc, int32_t n,
                                          const int32_t *multiplier, const int32_t *shift,
                                          int32_t per_channel, int32_t out_offset,
                                          int32_t low, int32_t high, int8_t *out) {
    const int32x4_t m_all = vdupq_n_s32(multiplier[0]), s_all = vdupq_n_s32(shift[0]);
    const int32x4_t lo = vdupq_n_s32(low), hi = vdupq_n_s32(high);
    int32_t i;
    for (i = 0; i + 4 <= n; i += 4) { /* whole vectors: no predication */
        const int32x4_t m = per_channel ? vldrwq_s32(multiplier + i) : m_all;
        const int32x4_t s = per_channel ? vldrwq_s32(shift + i) : s_all;
        int32x4_t v = eedge_mve_requantize(vldrwq_s32(acc + i), m, s);
        v = vminq_s32(vmaxq_s32(vaddq_n_s32(v, out_offset), lo), hi);
        vstrbq_s32(out + i, v);
    }
    if (i < n) { /* the last 1..3 outputs */
        const mve_pred16_t pr = vctp32q((uint32_t)(n - i));
        const int32x4_t m = per_channel ? vldrwq_z_s32(multiplier + i, pr) : m_all;
        const int32x4_t s = per_channel ? vldrwq_z_s32(shift + i, pr) : s_all;
        int32x4_t v = eedge_mve_requantize(vldrwq_z_s32(acc + i, pr), m, s);
        v = vminq_s32(vmaxq_s32(vaddq_n_s32(v, out_offset), lo), hi);
        vstrbq_p_s32(out + i, v, pr);
    }
}
#endif /* EEDGE_USE_MVE */

#endif /* EEDGE_KERNELS_MVE_H */
