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

/* The movement family's one kernel: a 5-D strided copy. The code generator
 * (eedge.ops.movement_copy) has already dropped unit dimensions, merged the
 * ones contiguous in both tensors and picked the loop order with the longer
 * inner run, so a transpose, slice, split part or pack part reaches here as
 * at most 5 loops whose inner one is a contiguous run or a strided byte loop. */

static int eedge_words_aligned(const void *a, const void *b, int32_t count) {
    return (((uintptr_t)a | (uintptr_t)b | (uintptr_t)count) & 3u) == 0u;
}

/* A contiguous run: whole words when both ends are aligned (rows of a channel
 * split are 16-byte multiples in the arena), memcpy for long runs. */
static void eedge_copy_contiguous_s8(const int8_t *src, int8_t *dst, int32_t count) {
    int32_t k;
    if (count >= 64) {
        memcpy(dst, src, (size_t)count);
    } else if (eedge_words_aligned(src, dst, count)) {
        for (k = 0; k < count; k += 4) {
            uint32_t word;
            memcpy(&word, src + k, 4);
            memcpy(dst + k, &word, 4);
        }
    } else {
        for (k = 0; k < count; ++k) {
            dst[k] = src[k];
        }
    }
}

static void eedge_copy_run_s8(const int8_t *src, int8_t *dst, int32_t count, int32_t in_step,
                              int32_t out_step) {
    int32_t k;
    if (in_step == 1 && out_step == 1) {
        eedge_copy_contiguous_s8(src, dst, count);
        return;
    }
    for (k = 0; k < count; ++k) {
        *dst = *src;
        src += in_step;
        dst += out_step;
    }
}

void eedge_strided_copy_s8(const eedge_strided_copy_params *p, const int8_t *input,
                           int8_t *output) {
    int32_t i0, i1, i2, i3;
    for (i0 = 0; i0 < p->dims[0]; ++i0) {
        for (i1 = 0; i1 < p->dims[1]; ++i1) {
            for (i2 = 0; i2 < p->dims[2]; ++i2) {
                const int8_t *src = input + i0 * p->in_strides[0] + i1 * p->in_strides[1] +
                                    i2 * p->in_strides[2];
                int8_t *dst = output + i0 * p->out_strides[0] + i1 * p->out_strides[1] +
                              i2 * p->out_strides[2];
                for (i3 = 0; i3 < p->dims[3]; ++i3) {
                    eedge_copy_run_s8(src, dst, p->dims[4], p->in_strides[4],
                                      p->out_strides[4]);
                    src += p->in_strides[3];
                    dst += p->out_strides[3];
                }
            }
        }
    }
}

/* Interleave two rows of n bytes, a (at src) and b (at src + gap), into
 * a0 b0 a1 b1 ...: the inner step of ShuffleNet's two-group channel shuffle.
 * Aligned rows go four bytes of each at a time, bytes spread into halfwords
 * with masks (GCC turns the halfword merges into PKHBT/PKHTB on Cortex-M4). */
static void eedge_interleave_rows_s8(const int8_t *src, int32_t gap, int8_t *dst, int32_t n) {
    int32_t k = 0;
    if (eedge_words_aligned(src, dst, n | gap)) {
        for (; k < n; k += 4) {
            uint32_t a, b, even, odd, lo, hi;
            memcpy(&a, src + k, 4);
            memcpy(&b, src + gap + k, 4);
            even = (a & 0x00FF00FFu) | ((b << 8) & 0xFF00FF00u);  /* b2 a2 b0 a0 */
            odd = ((a >> 8) & 0x00FF00FFu) | (b & 0xFF00FF00u);   /* b3 a3 b1 a1 */
            lo = (even & 0xFFFFu) | (odd << 16);                  /* b1 a1 b0 a0 */
            hi = (even >> 16) | (odd & 0xFFFF0000u);              /* b3 a3 b2 a2 */
            memcpy(dst + 2 * k, &lo, 4);
            memcpy(dst + 2 * k + 4, &hi, 4);
        }
        return;
    }
    for (; k < n; ++k) {
        dst[2 * k] = src[k];
        dst[2 * k + 1] = src[gap + k];
    }
}

void eedge_interleave2_s8(const eedge_strided_copy_params *p, const int8_t *input,
                          int8_t *output) {
    int32_t i0, i1, i2;
    for (i0 = 0; i0 < p->dims[0]; ++i0) {
        for (i1 = 0; i1 < p->dims[1]; ++i1) {
            for (i2 = 0; i2 < p->dims[2]; ++i2) {
                eedge_interleave_rows_s8(input + i0 * p->in_strides[0] +
                                             i1 * p->in_strides[1] + i2 * p->in_strides[2],
                                         p->in_strides[4],
                                         output + i0 * p->out_strides[0] +
                                             i1 * p->out_strides[1] + i2 * p->out_strides[2],
                                         p->dims[3]);
            }
        }
    }
}
