/* Fully connected, int8, with Helium (MVE): built only with EEDGE_USE_MVE.
 *
 * Four weight rows against the input vector per loop, 16 inputs per step: VMLADAVA
 * multiplies 16 int8 pairs into a scalar sum. Two weight layouts:
 * - packed (eedge_fc_params.packed, one input row, symmetric weights; layout in
 *   fully_connected.c and emit.py's _fc_pack): blocks of four rows interleaved word by
 *   word, each row's bytes zero-padded to a whole word, then the out_depth % 4 last rows
 *   one by one. A byte gather (VLDRB with a vector of offsets) reads 16 consecutive
 *   inputs of one row of a block out of four groups; the bias already holds
 *   in_offset * sum(w) (folded_bias), so the input needs no offset.
 * - plain [out, in] rows: VADDVA sums each row's weights alongside and the input offset
 *   is applied once per row, sum((x + o) w) = sum(x w) + o sum(w).
 * Sums of up to 16 outputs then go through the vector output stage (kernels_mve.h).
 * Asymmetric weights (a weight offset) decline to the portable kernel.
 */
#include "eedge/kernels_mve.h"

#if defined(EEDGE_USE_MVE)

#define MVE_FC_CHUNK 16

/* acc[j] = sum(x w_j) + offset sum(w_j) for the `rows` (1..4) rows starting at w */
static void rows_dot(const int8_t *w, int32_t n, int32_t rows, const int8_t *x, int32_t offset,
                     int32_t *acc) {
    const int8_t *w0 = w, *w1 = rows > 1 ? w + n : w, *w2 = rows > 2 ? w + 2 * n : w;
    const int8_t *w3 = rows > 3 ? w + 3 * n : w;
    int32_t d0 = 0, d1 = 0, d2 = 0, d3 = 0, s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int32_t i;
    for (i = 0; i + 16 <= n; i += 16) {
        const int8x16_t xv = vldrbq_s8(x + i);
        const int8x16_t v0 = vldrbq_s8(w0 + i), v1 = vldrbq_s8(w1 + i);
        const int8x16_t v2 = vldrbq_s8(w2 + i), v3 = vldrbq_s8(w3 + i);
        d0 = vmladavaq_s8(d0, v0, xv);
        s0 = vaddvaq_s8(s0, v0);
        d1 = vmladavaq_s8(d1, v1, xv);
        s1 = vaddvaq_s8(s1, v1);
        d2 = vmladavaq_s8(d2, v2, xv);
        s2 = vaddvaq_s8(s2, v2);
        d3 = vmladavaq_s8(d3, v3, xv);
        s3 = vaddvaq_s8(s3, v3);
    }
    if (i < n) { /* predicated loads read nothing past the end; inactive lanes are zero */
        const mve_pred16_t pr = vctp8q((uint32_t)(n - i));
        const int8x16_t xv = vldrbq_z_s8(x + i, pr);
        const int8x16_t v0 = vldrbq_z_s8(w0 + i, pr), v1 = vldrbq_z_s8(w1 + i, pr);
        const int8x16_t v2 = vldrbq_z_s8(w2 + i, pr), v3 = vldrbq_z_s8(w3 + i, pr);
        d0 = vmladavaq_s8(d0, v0, xv);
        s0 = vaddvaq_s8(s0, v0);
        d1 = vmladavaq_s8(d1, v1, xv);
        s1 = vaddvaq_s8(s1, v1);
        d2 = vmladavaq_s8(d2, v2, xv);
        s2 = vaddvaq_s8(s2, v2);
        d3 = vmladavaq_s8(d3, v3, xv);
        s3 = vaddvaq_s8(s3, v3);
    }
    acc[0] = d0 + offset * s0;
    if (rows > 1) {
        acc[1] = d1 + offset * s1;
    }
    if (rows > 2) {
        acc[2] = d2 + offset * s2;
    }
    if (rows > 3) {
        acc[3] = d3 + offset * s3;
    }
}

/* byte offsets, inside 64 bytes of a packed block (four groups of four rows x four
 * bytes), of 16 consecutive inputs of row r: group i / 4, word r, byte i % 4 */
static const uint8_t packed_offsets[4][16] = {
    {0, 1, 2, 3, 16, 17, 18, 19, 32, 33, 34, 35, 48, 49, 50, 51},
    {4, 5, 6, 7, 20, 21, 22, 23, 36, 37, 38, 39, 52, 53, 54, 55},
    {8, 9, 10, 11, 24, 25, 26, 27, 40, 41, 42, 43, 56, 57, 58, 59},
    {12, 13, 14, 15, 28, 29, 30, 31, 44, 45, 46, 47, 60, 61, 62, 63}};

/* acc[0..3] = bias[0..3] + the four rows of one packed block (groups of 16 bytes) . x */
static void packed_block4(const int8_t *block, const int8_t *x, int32_t n,
                          const int32_t *bias, int32_t *acc) {
    const uint8x16_t o0 = vldrbq_u8(packed_offsets[0]), o1 = vldrbq_u8(packed_offsets[1]);
    const uint8x16_t o2 = vldrbq_u8(packed_offsets[2]), o3 = vldrbq_u8(packed_offsets[3]);
    int32_t d0 = bias[0], d1 = bias[1], d2 = bias[2], d3 = bias[3];
    int32_t i;
    for (i = 0; i + 16 <= n; i += 16, block += 64) {
        const int8x16_t xv = vldrbq_s8(x + i);
        d0 = vmladavaq_s8(d0, vldrbq_gather_offset_s8(block, o0), xv);
        d1 = vmladavaq_s8(d1, vldrbq_gather_offset_s8(block, o1), xv);
        d2 = vmladavaq_s8(d2, vldrbq_gather_offset_s8(block, o2), xv);
        d3 = vmladavaq_s8(d3, vldrbq_gather_offset_s8(block, o3), xv);
    }
    if (i < n) { /* lanes past n: not read (the block ends with the word holding n - 1) */
        const mve_pred16_t pr = vctp8q((uint32_t)(n - i));
        const int8x16_t xv = vldrbq_z_s8(x + i, pr);
        d0 = vmladavaq_s8(d0, vldrbq_gather_offset_z_s8(block, o0, pr), xv);
        d1 = vmladavaq_s8(d1, vldrbq_gather_offset_z_s8(block, o1, pr), xv);
        d2 = vmladavaq_s8(d2, vldrbq_gather_offset_z_s8(block, o2, pr), xv);
        d3 = vmladavaq_s8(d3, vldrbq_gather_offset_z_s8(block, o3, pr), xv);
    }
    acc[0] = d0;
    acc[1] = d1;
    acc[2] = d2;
    acc[3] = d3;
}

/* bias + one packed row (its bytes in order, zero-padded to a word) . x */
static int32_t packed_row(const int8_t *row, const int8_t *x, int32_t n, int32_t bias) {
    int32_t d = bias, i;
    for (i = 0; i + 16 <= n; i += 16) {
        d = vmladavaq_s8(d, vldrbq_s8(row + i), vldrbq_s8(x + i));
    }
    if (i < n) {
        const mve_pred16_t pr = vctp8q((uint32_t)(n - i));
        d = vmladavaq_s8(d, vldrbq_z_s8(row + i, pr), vldrbq_z_s8(x + i, pr));
    }
    return d;
}

static void fc_packed_mve(const eedge_fc_params *p, const int8_t *input, int8_t *output) {
    const int32_t n = p->in_depth, out_depth = p->out_depth, per_channel = p->per_channel;
    const int32_t row_bytes = 4 * ((n + 3) / 4);
    const int8_t *stream = (const int8_t *)p->packed;
    int32_t oc, k;
    for (oc = 0; oc < out_depth; oc += MVE_FC_CHUNK) {
        int32_t acc[MVE_FC_CHUNK];
        const int32_t count = out_depth - oc < MVE_FC_CHUNK ? out_depth - oc : MVE_FC_CHUNK;
        for (k = 0; k < count; ++k) {
            const int32_t row = oc + k;
            if ((row & 3) == 0 && row + 4 <= out_depth && k + 4 <= count) {
                packed_block4(stream + row * row_bytes, input, n, p->folded_bias + row,
                              acc + k);
                k += 3;
            } else {
                acc[k] = packed_row(stream + row * row_bytes, input, n, p->folded_bias[row]);
            }
        }
        eedge_mve_output_stage(acc, count, per_channel ? p->multiplier + oc : p->multiplier,
                               per_channel ? p->shift + oc : p->shift, per_channel,
                               p->out_offset, p->act_min, p->act_max, output + oc);
    }
}

int eedge_fully_connected_s8_mve(const eedge_fc_params *p, const int8_t *input,
                                 const int8_t *weights, const int32_t *bias, int8_t *output) {
    const int32_t in_depth = p->in_depth, out_depth = p->out_depth, in_offset = p->in_offset;
    const int32_t per_channel = p->per_channel;
    int32_t oc, k;
    if (p->weight_offset != 0 || in_depth <= 0) {
        return 0;
    }
    if (p->packed != 0) {
        fc_packed_mve(p, input, output);
        return 1;
    }
    for (oc = 0; oc < out_depth; oc += MVE_FC_CHUNK) {
        int32_t acc[MVE_FC_CHUNK];
        const int32_t count = out_depth - oc < MVE_FC_CHUNK ? out_depth - oc : MVE_FC_CHUNK;
        for (k = 0; k < count; k += 4) {
            rows_dot(weights + (oc + k) * in_depth, in_depth, count - k < 4 ? count - k : 4,
                     input, in_offset, acc + k);
        }
        if (bias != 0) {
            for (k = 0; k < count; ++k) {
                acc[k] += bias[oc + k];
            }
        }
        eedge_mve_output_stage(acc, count, per_channel ? p->multiplier + oc : p->multiplier,
                               per_channel ? p->shift + oc : p->shift, per_channel,
                               p->out_offset, p->act_min, p->act_max, output + oc);
    }
    return 1;
}
#else
typedef int eedge_fully_connected_mve_unused; /* ISO C: a translation unit declares something */
#endif
