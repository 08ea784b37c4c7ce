/* int8 kernels of the resize family: nearest and bilinear resize, transposed convolution.
 *
 * TFLite computes the source pixels of a resize in float; the code generator evaluates
 * those formulas once on the host and stores one table entry per output row and column,
 * so the device only indexes (nearest) or blends with TFLite's 10-bit integer weights
 * (bilinear). Neither requantizes: TFLite's int8 resize moves or blends the input's
 * bytes, and the output shares the input's scale and zero point.
 */
#ifndef EEDGE_KERNELS_RESIZE_H
#define EEDGE_KERNELS_RESIZE_H

#include <stdint.h>

typedef struct {
    int32_t in_w, c, out_h, out_w;
    const int16_t *rows;        /* source row of each output row */
    const int16_t *cols;        /* source column of each output column */
} eedge_resize_nearest_params;

typedef struct {
    int32_t in_w, c, out_h, out_w;
    /* per output row (y) and column (x): the two source indices and the weight of the
     * second one in 1/1024 (TFLite's ResizeBilinearInteger; the first has 1024 - d) */
    const int16_t *y0, *y1, *dy, *x0, *x1, *dx;
} eedge_resize_bilinear_params;

typedef struct {
    int32_t in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w;
    int32_t stride_h, stride_w, pad_top, pad_left;
    int32_t in_offset;          /* -input zero point */
    int32_t out_offset;         /* +output zero point */
    int32_t act_min, act_max;
    const int32_t *multiplier;  /* one per output channel */
    const int32_t *shift;
    const uint8_t *live;        /* per kernel tap (k_h * k_w): 0 if its weights are all zero */
    int32_t *scratch;           /* EEDGE_TRANSPOSE_CONV_SCRATCH_WORDS words, owned by the model */
} eedge_transpose_conv_params;

/* Scratch of a transposed convolution, in 32-bit words: the taps of one output pixel. */
#define EEDGE_TRANSPOSE_CONV_SCRATCH_WORDS(k_h, k_w) (2 * (k_h) * (k_w))

void eedge_resize_nearest_s8(const eedge_resize_nearest_params *p, const int8_t *input,
                             int8_t *output);
void eedge_resize_bilinear_s8(const eedge_resize_bilinear_params *p, const int8_t *input,
                              int8_t *output);
/* weights OHWI; bias int32 (may be null) */
void eedge_transpose_conv_s8(const eedge_transpose_conv_params *p, const int8_t *input,
                             const int8_t *weights, const int32_t *bias, int8_t *output);

#endif /* EEDGE_KERNELS_RESIZE_H */
