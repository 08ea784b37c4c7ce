/* Fully connected, int8, with Helium (MVE): built only with EEDGE_USE_MVE.
 *
 * Four weight rows against the input vector per loop, 16 inputs per step: VMLADAVA
 * multiplies 16 int8 pairs into a scalar sum, VADDVA sums the row's weights, and the
 * input offset is applied once per row, sum((x + o) w) = sum(x w) + o sum(w). Sums of up
 * to 16 outputs then go through the vector output stage (kernels_mve.h). Asymmetric
 * weights (a weight offset) decline to the portable kernel.
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

int eedge_fully_connected_s8_mve(const eedge_fc_params *p, const int8_t *input,
                                 const int8_t *weights, const int32_t *bias, int8_t *output) {
    const int32_t in_depth = p->in_depth, out_depth = p->out_depth, in_offset = p->in_offset;
    const int32_t per_channel = p->per_channel;
    int32_t oc, k;
    if (p->weight_offset != 0 || in_depth <= 0) {
        return 0;
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
