/* int8 kernels of the movement family (declared by the eedge.ops.* modules that emit calls). */
#ifndef EEDGE_KERNELS_MOVEMENT_H
#define EEDGE_KERNELS_MOVEMENT_H

#include <stdint.h>

/* A 5-D strided copy (eedge.ops.movement_copy): element (i0..i4) moves from
 * input[sum(i * in_strides)] to output[sum(i * out_strides)]. TRANSPOSE, SLICE,
 * STRIDED_SLICE, SPLIT, SPLIT_V, PACK and UNPACK are one or more of these. */
typedef struct {
    int32_t dims[5];
    int32_t in_strides[5];
    int32_t out_strides[5];
} eedge_strided_copy_params;

void eedge_strided_copy_s8(const eedge_strided_copy_params *p, const int8_t *input,
                           int8_t *output);

/* Interleave row pairs (ShuffleNet's two-group channel shuffle): for each of the
 * outer loops 0..2, rows a = src[0..n) and b = src[gap..gap + n), n = dims[3],
 * gap = in_strides[4], become a0 b0 a1 b1 ... at dst. */
void eedge_interleave2_s8(const eedge_strided_copy_params *p, const int8_t *input,
                          int8_t *output);

#endif /* EEDGE_KERNELS_MOVEMENT_H */
