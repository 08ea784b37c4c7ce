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

/* Rows of whole aligned words (a channel split's rows are 16-byte multiples in
 * the arena): one word per load and store. */
static void eedge_copy_words_s8(const int8_t *src, int8_t *dst, int32_t count) {
    const int8_t *end = src + count;
    for (; src < end; src += 4, dst += 4) {
        uint32_t word;
        memcpy(&word, src, 4);
        memcpy(dst, &word, 4);
    }
}

static void eedge_copy_run_s8(const int8_t *src, int8_t *dst, int32_t count, int32_t in_step,
                              int32_t out_step) {
    int32_t k;
    if (in_step == 1 && out_step == 1) {
        if (count >= 64) {
            memcpy(dst, src, (size_t)count);
            return;
        }
        for (k = 0; k < count; ++k) {
            dst[k] = src[k];
        }
        return;
    }
    for (k = 0; k < count; ++k) {
        *dst = *src;
        src += in_step;
        dst += out_step;
    }
}

/* Whether every row of the copy starts on a word boundary and is whole words. */
static int eedge_rows_are_words(const eedge_strided_copy_params *p, const int8_t *input,
                                const int8_t *output) {
    uint32_t bits = (uint32_t)((uintptr_t)input | (uintptr_t)output) | (uint32_t)p->dims[4];
    int i;
    for (i = 0; i < 4; ++i) {
        bits |= (uint32_t)(p->in_strides[i] | p->out_strides[i]);
    }
    return p->in_strides[4] == 1 && p->out_strides[4] == 1 && p->dims[4] < 64 &&
           (bits & 3u) == 0u;
}

void eedge_strided_copy_s8(const eedge_strided_copy_params *p, const int8_t *input,
                           int8_t *output) {
    const int words = eedge_rows_are_words(p, input, output);
    int32_t i0, i1, i2, i3;
    for (i0 = 0; i0 < p->dims[0]; ++i0) {
        for (i1 = 0; i1 < p->dims[1]; ++i1) {
            for (i2 = 0; i2 < p->dims[2]; ++i2) {
                const int8_t *src = input + i0 * p->in_strides[0] + i1 * p->in_strides[1] +
                                    i2 * p->in_strides[2];
                int8_t *dst = output + i0 * p->out_strides[0] + i1 * p->out_strides[1] +
                              i2 * p->out_strides[2];
                for (i3 = 0; i3 < p->dims[3]; ++i3) {
                    if (words) {
                        eedge_copy_words_s8(src, dst, p->dims[4]);
                    } else {
                        eedge_copy_run_s8(src, dst, p->dims[4], p->in_strides[4],
                                          p->out_strides[4]);
                    }
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
static void eedge_interleave_words_s8(const int8_t *src, int32_t gap, int8_t *dst, int32_t n) {
    const int8_t *end = src + n;
    for (; src < end; src += 4, dst += 8) {
        uint32_t a, b, even, odd, lo, hi;
        memcpy(&a, src, 4);
        memcpy(&b, src + gap, 4);
        even = (a & 0x00FF00FFu) | ((b << 8) & 0xFF00FF00u);  /* b2 a2 b0 a0 */
        odd = ((a >> 8) & 0x00FF00FFu) | (b & 0xFF00FF00u);   /* b3 a3 b1 a1 */
        lo = (even & 0xFFFFu) | (odd << 16);                  /* b1 a1 b0 a0 */
        hi = (even >> 16) | (odd & 0xFFFF0000u);              /* b3 a3 b2 a2 */
        memcpy(dst, &lo, 4);
        memcpy(dst + 4, &hi, 4);
    }
}

static void eedge_interleave_bytes_s8(const int8_t *src, int32_t gap, int8_t *dst, int32_t n) {
    int32_t k;
    for (k = 0; k < n; ++k) {
        dst[2 * k] = src[k];
        dst[2 * k + 1] = src[gap + k];
    }
}

void eedge_interleave2_s8(const eedge_strided_copy_params *p, const int8_t *input,
                          int8_t *output) {
    const int32_t n = p->dims[3], gap = p->in_strides[4];
    /* one alignment test for every row: base pointers, row length, gap and strides */
    const uint32_t bits = (uint32_t)((uintptr_t)input | (uintptr_t)output) |
                          (uint32_t)(n | gap | p->in_strides[0] | p->in_strides[1] |
                                     p->in_strides[2] | p->out_strides[0] |
                                     p->out_strides[1] | p->out_strides[2]);
    const int words = (bits & 3u) == 0u;
    int32_t i0, i1, i2;
    for (i0 = 0; i0 < p->dims[0]; ++i0) {
        for (i1 = 0; i1 < p->dims[1]; ++i1) {
            const int8_t *src = input + i0 * p->in_strides[0] + i1 * p->in_strides[1];
            int8_t *dst = output + i0 * p->out_strides[0] + i1 * p->out_strides[1];
            for (i2 = 0; i2 < p->dims[2]; ++i2) {
                if (words) {
                    eedge_interleave_words_s8(src, gap, dst, n);
                } else {
                    eedge_interleave_bytes_s8(src, gap, dst, n);
                }
                src += p->in_strides[2];
                dst += p->out_strides[2];
            }
        }
    }
}
