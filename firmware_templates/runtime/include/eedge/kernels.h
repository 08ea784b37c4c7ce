/* int8 NHWC kernels, bit-exact with TensorFlow Lite Micro's reference kernels.
 *
 * Every quantization constant (multipliers, shifts, offsets, clamping range) is
 * computed on the host by the code generator and stored in a const params
 * struct, so the device never touches a float. Batch is always 1.
 */
#ifndef EEDGE_KERNELS_H
#define EEDGE_KERNELS_H

#include <stdint.h>

typedef struct {
    int32_t in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w;
    int32_t stride_h, stride_w, dil_h, dil_w, pad_top, pad_left;
    int32_t depth_multiplier;   /* depthwise only */
    int32_t in_offset;          /* -input zero point */
    int32_t out_offset;         /* +output zero point */
    int32_t act_min, act_max;
    const int32_t *multiplier;  /* one per output channel */
    const int32_t *shift;
    int32_t *scratch;           /* EEDGE_*_SCRATCH_WORDS words, owned by the model */
    /* depthwise: per channel {multiplier, 2^(r-1) + out_offset << r, right shift r, bias}
     * when every sum stays within +-2^30 and every r is 1..22, else 0 */
    const int32_t *dw_requant;
    /* depthwise 3x3, dilation 1, multiplier 1 with dw_requant, DSP path: the weights of
     * channels [0, out_c & ~3) as 16-bit lanes, per block of 4 channels and tap (ky, kx)
     * two words {c0 | c2 << 16, c1 | c3 << 16}; else 0 */
    const int32_t *dw_weights;
    /* convolution: per output channel {multiplier, 2^(r-1) + out_offset << r, right
     * shift r} when every sum stays within +-2^30 and every r is 1..22, else 0 */
    const int32_t *conv_requant;
    /* convolution and depthwise (multiplier 1), portable path: per output channel bias +
     * in_offset * sum of its weights (the input offset folded out of the MACs; depthwise:
     * windows with every tap inside the image) when no partial sum of raw int8 products
     * can overflow, else 0 */
    const int32_t *conv_bias;
} eedge_conv_params;

typedef struct {
    int32_t in_depth, out_depth;
    int32_t in_offset, weight_offset, out_offset, act_min, act_max;
    int32_t per_channel;        /* 1: one multiplier and shift per output; 0: one in all */
    const int32_t *multiplier;
    const int32_t *shift;
    /* one input row and symmetric weights: the weights packed on the host, four rows
     * interleaved word by word (layout in fully_connected.c), and per output
     * bias + in_offset * sum(weights) (wrapped to int32); else both 0 */
    const int32_t *packed;
    const int32_t *folded_bias;
    /* with packed weights: {multiplier, 2^(r-1) + out_offset << r, right shift r} per
     * output (per_channel) or one for all, when every sum stays within +-2^30 and every r
     * is 1..22; else 0 */
    const int32_t *requant;
    /* with packed weights, DSP path: 2 words per 4 inputs where the input is widened to
     * 16-bit lanes once for all blocks, or 0 (widened in each block) */
    int32_t *scratch;
} eedge_fc_params;

typedef struct {
    int32_t in_h, in_w, c, out_h, out_w, f_h, f_w, stride_h, stride_w, pad_top, pad_left;
    int32_t act_min, act_max;
} eedge_pool_params;

typedef struct {
    int32_t rows, cols, input_multiplier, input_shift, diff_min;
} eedge_softmax_params;

typedef struct {
    int32_t in_dims[4], pad_before[4], pad_after[4];
    int32_t pad_value;
} eedge_pad_params;

typedef struct {
    int32_t size, in_offset, out_offset, multiplier, shift, act_min, act_max;
} eedge_requant_params;

/* Scratch the kernels need, in 32-bit words: two im2col columns of 16-bit taps for
 * convolution (four words per group of 4 taps, see conv.c) and, when in_c is not a
 * multiple of 4, a byte copy of one receptive field; one int32 accumulator per channel
 * for depthwise. */
#define EEDGE_CONV_SCRATCH_WORDS(k_h, k_w, in_c) \
    ((4 + ((in_c) % 4 != 0)) * (((k_h) * (k_w) * (in_c) + 3) / 4))
#define EEDGE_DEPTHWISE_SCRATCH_WORDS(out_c) ((out_c) + 4)

void eedge_conv2d_s8(const eedge_conv_params *p, const int8_t *input, const int8_t *weights,
                     const int32_t *bias, int8_t *output);
void eedge_depthwise_conv2d_s8(const eedge_conv_params *p, const int8_t *input,
                               const int8_t *weights, const int32_t *bias, int8_t *output);
void eedge_fully_connected_s8(const eedge_fc_params *p, const int8_t *input,
                              const int8_t *weights, const int32_t *bias, int8_t *output);
/* one input row on the host-packed weights and folded bias of p (p->packed != 0) */
void eedge_fully_connected_packed_s8(const eedge_fc_params *p, const int8_t *input,
                                     int8_t *output);
/* `rows` input vectors of in_depth bytes, each giving out_depth outputs (keep_num_dims);
 * scratch: 2 x out_depth words */
void eedge_fully_connected_rows_s8(const eedge_fc_params *p, int32_t rows, const int8_t *input,
                                   const int8_t *weights, const int32_t *bias, int8_t *output,
                                   int32_t *scratch);
void eedge_avg_pool_s8(const eedge_pool_params *p, const int8_t *input, int8_t *output);
void eedge_max_pool_s8(const eedge_pool_params *p, const int8_t *input, int8_t *output);
void eedge_softmax_s8(const eedge_softmax_params *p, const int8_t *input, int8_t *output);
/* The same bytes from a table of exponentials per distance to the row's maximum (softmax.c) */
void eedge_softmax_lut_s8(const eedge_softmax_params *p, const int32_t *exp_table,
                          int32_t exp_count, const int8_t *input, int8_t *output);
void eedge_pad_s8(const eedge_pad_params *p, const int8_t *input, int8_t *output);
void eedge_requantize_s8(const eedge_requant_params *p, const int8_t *input, int8_t *output);
void eedge_copy_s8(const int8_t *input, int8_t *output, int32_t size);
/* One input of a concatenation: `outer` blocks of `in_inner` bytes, placed at
 * `offset` inside output blocks of `out_inner` bytes. */
void eedge_concat_part_s8(const int8_t *input, int32_t outer, int32_t in_inner,
                          int32_t out_inner, int32_t offset, int8_t *output);

/* operator families added through eedge.ops (one header and one source each) */
#include "eedge/kernels_activation.h"
#include "eedge/kernels_binary.h"
#include "eedge/kernels_resize.h"
#include "eedge/kernels_movement.h"
#include "eedge/kernels_reduce.h"
#include "eedge/kernels_matmul.h"

#endif /* EEDGE_KERNELS_H */
