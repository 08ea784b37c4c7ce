/* TFLite's integer requantization arithmetic ("double rounding" form), bit-exact.
 *
 * The same functions as eedge/reference/fixedpoint.py: a Q31 multiplier with a
 * shift, a saturating rounding doubling high multiply, and a rounding right
 * shift whose ties go away from zero. No floating point anywhere.
 */
#ifndef EEDGE_FIXEDPOINT_H
#define EEDGE_FIXEDPOINT_H

#include <stdint.h>

/* gemmlowp writes this as (ab + nudge) / 2^31 with nudge = 2^30 or 1 - 2^30 and C's
 * truncating division; for both signs that equals floor((ab + 2^30) / 2^31), an
 * add and an arithmetic shift (gcc and clang shift signed values arithmetically). */
static inline int32_t eedge_srdhm(int32_t a, int32_t b) {
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

static inline int32_t eedge_rdbpot(int32_t x, int exponent) {
    const int32_t mask = (int32_t)((1u << exponent) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* x * multiplier * 2^shift, rounded like TFLite (shift > 0 shifts left). */
static inline int32_t eedge_requantize(int32_t x, int32_t multiplier, int32_t shift) {
    const int left = shift > 0 ? (int)shift : 0;
    const int right = shift > 0 ? 0 : (int)-shift;
    return eedge_rdbpot(eedge_srdhm((int32_t)((uint32_t)x << left), multiplier), right);
}

/* eedge_srdhm(x, m) for m > 0 and |x| < 2^30, given x2 = 2x: floor((x2 m + 2^31) / 2^32),
 * one SMMULR on Cortex-M with the DSP extension. The output stages of FULLY_CONNECTED,
 * BATCH_MATMUL and the binary kernels use it when their sums are known to be that small. */
static inline int32_t eedge_high_mul_small(int32_t x2, int32_t m) {
#if defined(EEDGE_USE_DSP)
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(x2), "r"(m));
    return r;
#else
    return (int32_t)(((int64_t)x2 * m + (int64_t)0x80000000) >> 32);
#endif
}

static inline int32_t eedge_clamp(int32_t x, int32_t low, int32_t high) {
    return x < low ? low : (x > high ? high : x);
}

#endif /* EEDGE_FIXEDPOINT_H */
