/* Cortex-M DSP helpers the SIMD kernels share (only with EEDGE_USE_DSP).
 *
 * ACLE has __SXTB16/__SXTAB16 but no form with the byte rotation, which the
 * instructions encode for free; these wrappers use it. load_i32 reads four
 * bytes from any address (Cortex-M4/M7 allow unaligned word loads; memcpy
 * keeps the C strictly conforming and compiles to one LDR). */
#ifndef EEDGE_DSP_H
#define EEDGE_DSP_H

#if defined(EEDGE_USE_DSP)
#include <arm_acle.h>
#include <stdint.h>
#include <string.h>

static inline int32_t load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* bytes 1 and 3 of v, sign-extended into two 16-bit lanes */
static inline int32_t sxtb16_ror8(int32_t v) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/* a plus bytes 1 and 3 of v, lane by lane (16-bit lanes) */
static inline int32_t sxtab16_ror8(int32_t a, int32_t v) {
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(v));
    return r;
}
#endif

#endif /* EEDGE_DSP_H */
