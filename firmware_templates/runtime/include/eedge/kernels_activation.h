/* int8 kernels of the activation family (declared by the eedge.ops.activations module). */
#ifndef EEDGE_KERNELS_ACTIVATION_H
#define EEDGE_KERNELS_ACTIVATION_H

#include <stdint.h>

/* PRELU with per-channel alpha: alpha of element i is alpha[i % alpha_period]. */
typedef struct {
    int32_t size, alpha_period;
    int32_t in_offset, alpha_offset, out_offset;   /* -zero points of input and alpha; +output's */
    int32_t m_neg, s_neg;                          /* x * alpha -> output scale */
} eedge_prelu_params;

/* out[i] = table[(uint8_t)in[i]]: any activation whose output byte depends only on the
 * input byte (LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, ELU, PRELU with one alpha), with a
 * table the code generator computed from the bit-exact reference. out may equal in. */
void eedge_lut_s8(const int8_t table[256], const int8_t *input, int8_t *output, int32_t size);
/* `positive` is the output byte of each input byte at or above the zero point (a table,
 * as for eedge_lut_s8); below it the channel's alpha requantizes. out may equal in. */
void eedge_prelu_s8(const eedge_prelu_params *p, const int8_t *alpha, const int8_t positive[256],
                    const int8_t *input, int8_t *output);

#endif /* EEDGE_KERNELS_ACTIVATION_H */
