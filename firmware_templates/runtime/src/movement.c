/* Data movement: constant padding of a 4-D NHWC tensor with the output zero
 * point, and concatenation (one input at a time). */
#include <string.h>

#include "eedge/kernels.h"

void eedge_pad_s8(const eedge_pad_params *p, const int8_t *input, int8_t *output) {
    int32_t out_dims[4], n, y, x;
    int i;
    for (i = 0; i < 4; ++i) {
        out_dims[i] = p->pad_before[i] + p->in_dims[i] + p->pad_after[i];
    }
    memset(output, (int8_t)p->pad_value,
           (size_t)(out_dims[0] * out_dims[1] * out_dims[2] * out_dims[3]));
    for (n = 0; n < p->in_dims[0]; ++n) {
        for (y = 0; y < p->in_dims[1]; ++y) {
            for (x = 0; x < p->in_dims[2]; ++x) {
                const int32_t src = ((n * p->in_dims[1] + y) * p->in_dims[2] + x) * p->in_dims[3];
                const int32_t dst = (((n + p->pad_before[0]) * out_dims[1] + y + p->pad_before[1]) *
                                         out_dims[2] + x + p->pad_before[2]) * out_dims[3] +
                                    p->pad_before[3];
                memcpy(output + dst, input + src, (size_t)p->in_dims[3]);
            }
        }
    }
}

void eedge_concat_part_s8(const int8_t *input, int32_t outer, int32_t in_inner,
                          int32_t out_inner, int32_t offset, int8_t *output) {
    int32_t o;
    for (o = 0; o < outer; ++o) {
        memcpy(output + o * out_inner + offset, input + o * in_inner, (size_t)in_inner);
    }
}
