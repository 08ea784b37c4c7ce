/* Standalone requantizing activations and plain copies (int8); ADD/MUL/SUB are in binary.c. */
#include <string.h>

#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"

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
