/* ADD, MUL, standalone requantizing activations, and plain copies (int8). */
#include <string.h>

#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"

void eedge_add_s8(const eedge_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        /* both inputs are brought to a common scale with 20 bits of headroom */
        const int32_t x = (int32_t)((uint32_t)((int32_t)a[i] + p->in1_offset) << 20);
        const int32_t y = (int32_t)((uint32_t)((int32_t)b[i] + p->in2_offset) << 20);
        const int32_t xs = eedge_rdbpot(eedge_srdhm(x, p->m1), (int)-p->s1);
        const int32_t ys = eedge_rdbpot(eedge_srdhm(y, p->m2), (int)-p->s2);
        const int32_t sum = eedge_rdbpot(eedge_srdhm(xs + ys, p->m_out), (int)-p->s_out);
        out[i] = (int8_t)eedge_clamp(sum + p->out_offset, p->act_min, p->act_max);
    }
}

void eedge_mul_s8(const eedge_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t product = ((int32_t)a[i] + p->in1_offset) * ((int32_t)b[i] + p->in2_offset);
        const int32_t scaled = eedge_requantize(product, p->m_out, p->s_out) + p->out_offset;
        out[i] = (int8_t)eedge_clamp(scaled, p->act_min, p->act_max);
    }
}

void eedge_requantize_s8(const eedge_requant_params *p, const int8_t *input, int8_t *output) {
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t v = eedge_requantize((int32_t)input[i] + p->in_offset, p->multiplier,
                                           p->shift) + p->out_offset;
        output[i] = (int8_t)eedge_clamp(v, p->act_min, p->act_max);
    }
}

void eedge_copy_s8(const int8_t *input, int8_t *output, int32_t size) {
    if (input != output) {
        memmove(output, input, (size_t)size);
    }
}
