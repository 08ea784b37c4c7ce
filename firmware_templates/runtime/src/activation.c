/* Unary activations (int8): a 256-byte table lookup, and PRELU with per-channel alpha. */
#include <string.h>

#if defined(EEDGE_USE_DSP)
#include <arm_acle.h>
#endif

#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"

static inline int8_t eedge_lookup(const int8_t *table, int8_t x) {
    return table[(uint8_t)x];
}

void eedge_lut_s8(const int8_t table[256], const int8_t *input, int8_t *output, int32_t size) {
    int32_t i = 0;
#if defined(EEDGE_USE_DSP)
    /* One word of four bytes per iteration: one load, four lookups, one store (the byte
     * order inside the word does not matter, each byte maps to its own place).
     * memcpy keeps unaligned arena offsets legal; it compiles to LDR/STR on Cortex-M4. */
    const uint8_t *t = (const uint8_t *)table;
    for (; i + 4 <= size; i += 4) {
        uint32_t word;
        memcpy(&word, input + i, 4);
        word = (uint32_t)t[word & 0xFFu] | ((uint32_t)t[(word >> 8) & 0xFFu] << 8) |
               ((uint32_t)t[(word >> 16) & 0xFFu] << 16) | ((uint32_t)t[word >> 24] << 24);
        memcpy(output + i, &word, 4);
    }
#endif
    for (; i < size; ++i) {
        output[i] = eedge_lookup(table, input[i]);
    }
}

void eedge_prelu_s8(const eedge_prelu_params *p, const int8_t *alpha, const int8_t positive[256],
                    const int8_t *input, int8_t *output) {
    /* locals: output is int8_t, which may alias *p, so fields would be reloaded per store */
    const int32_t size = p->size, period = p->alpha_period, in_offset = p->in_offset;
    const int32_t alpha_offset = p->alpha_offset, out_offset = p->out_offset;
    const int32_t multiplier = p->m_neg;
    const int left = p->s_neg > 0 ? (int)p->s_neg : 0, right = p->s_neg > 0 ? 0 : (int)-p->s_neg;
    int32_t i = 0;
    while (i < size) {
        const int32_t end = size - i < period ? size : i + period;
        int32_t j;
        /* one period of alpha per pass: no modulo per element */
        for (j = 0; i < end; ++i, ++j) {
            const int32_t x = (int32_t)input[i] + in_offset;
            if (x >= 0) {
                output[i] = eedge_lookup(positive, input[i]);
            } else {
                /* eedge_requantize without its saturation test: a Q31 multiplier is never
                 * INT32_MIN, so the doubling high multiply cannot saturate */
                const int32_t product = x * ((int32_t)alpha[j] + alpha_offset);
                const int64_t wide = (int64_t)(int32_t)((uint32_t)product << left) * multiplier;
                const int32_t v = eedge_rdbpot((int32_t)((wide + ((int64_t)1 << 30)) >> 31),
                                               right) + out_offset;
#if defined(EEDGE_USE_DSP)
                output[i] = (int8_t)__ssat(v, 8);
#else
                output[i] = (int8_t)eedge_clamp(v, -128, 127);
#endif
            }
        }
    }
}
