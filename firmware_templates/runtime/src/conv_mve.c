/* Convolution, int8 NHWC, with Helium (MVE): built only with EEDGE_USE_MVE.
 *
 * Two output pixels by two output channels per inner loop, 16 taps per step: VMLADAVA
 * multiplies 16 int8 pairs and adds them to a scalar sum in one instruction. The input
 * offset is folded out of the loop: sum((x + o) w) = sum(x w) + o sum(w), with sum(w)
 * computed once per output channel per call (VADDVA) and kept with the bias in a
 * per-channel base. The output stage requantizes four channels per vector
 * (eedge_mve_output_stage). Integer sums do not depend on their order, so the bytes are
 * the portable kernel's.
 */
#include "eedge/kernels_mve.h"

#if defined(EEDGE_USE_MVE)

/* channels whose sums and bases live on the stack at a time (3 x 256 bytes) */
#define MVE_CONV_CHANNELS 64

/* n bytes from src to dst, 16 per vector step (the last one predicated) */
static inline void copy_bytes(int8_t *dst, const int8_t *src, int32_t n) {
    int32_t i;
    if (n <= 16) { /* no loop for the short rows of thin inputs (e.g. 3 channels) */
        const mve_pred16_t pr = vctp8q((uint32_t)n);
        vstrbq_p_s8(dst, vldrbq_z_s8(src, pr), pr);
        return;
    }
    for (i = 0; i < n; i += 16) {
        const mve_pred16_t pr = vctp8q((uint32_t)(n - i));
        vstrbq_p_s8(dst + i, vldrbq_z_s8(src + i, pr), pr);
    }
}

static inline void fill_bytes(int8_t *dst, int8_t value, int32_t n) {
    const int8x16_t v = vdupq_n_s8(value);
    int32_t i;
    for (i = 0; i < n; i += 16) {
        vstrbq_p_s8(dst + i, v, vctp8q((uint32_t)(n - i)));
    }
}

/* The receptive field of output pixel (oy, ox) as one int8 column of k_h * k_w * in_c
 * bytes; padding taps hold the input zero point (their offset input is zero). A 1x1
 * kernel inside the image is read in place; a kernel row inside the image is one copy. */
static const int8_t *column_of(const eedge_conv_params *p, const int8_t *input, int32_t pixel,
                               int8_t *column) {
    const int32_t oy = pixel / p->out_w, ox = pixel % p->out_w;
    const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
    const int8_t zero_point = (int8_t)-p->in_offset;
    const int32_t in_c = p->in_c, row = p->k_w * in_c;
    const int32_t inside = p->dil_w == 1 && x0 >= 0 && x0 + p->k_w <= p->in_w;
    int32_t ky, kx;
    if (p->k_h == 1 && p->k_w == 1 && y0 >= 0 && x0 >= 0 && y0 < p->in_h && x0 < p->in_w) {
        return input + (y0 * p->in_w + x0) * in_c;
    }
    if (inside && y0 >= 0 && y0 + (p->k_h - 1) * p->dil_h < p->in_h) {
        /* the whole window inside the image: one copy per kernel row, no checks */
        const int8_t *src = input + (y0 * p->in_w + x0) * in_c;
        const int32_t step = p->dil_h * p->in_w * in_c;
        int8_t *dst = column;
        for (ky = p->k_h; ky > 0; --ky, src += step, dst += row) {
            copy_bytes(dst, src, row);
        }
        return column;
    }
    for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = y0 + ky * p->dil_h;
        int8_t *dst = column + ky * row;
        if (iy < 0 || iy >= p->in_h) {
            fill_bytes(dst, zero_point, row);
        } else if (inside) {
            copy_bytes(dst, input + (iy * p->in_w + x0) * in_c, row);
        } else {
            for (kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = x0 + kx * p->dil_w;
                if (ix < 0 || ix >= p->in_w) {
                    fill_bytes(dst + kx * in_c, zero_point, in_c);
                } else {
                    copy_bytes(dst + kx * in_c, input + (iy * p->in_w + ix) * in_c, in_c);
                }
            }
        }
    }
    return column;
}

/* sum(w[0..k)) */
static int32_t weight_sum(const int8_t *w, int32_t k) {
    int32_t sum = 0, i;
    for (i = 0; i + 16 <= k; i += 16) {
        sum = vaddvaq_s8(sum, vldrbq_s8(w + i));
    }
    if (i < k) { /* inactive lanes are loaded as zeros */
        sum = vaddvaq_s8(sum, vldrbq_z_s8(w + i, vctp8q((uint32_t)(k - i))));
    }
    return sum;
}

/* The four dot products of weight rows w0, w1 with columns x0, x1 (k bytes each), added
 * to the channels' bases b0, b1: {b0 + w0.x0, b0 + w0.x1, b1 + w1.x0, b1 + w1.x1}.
 * The pointers advance (post-increment addressing); predicated loads read nothing past
 * the end. */
static inline void dot_2x2_mve(const int8_t *w0, const int8_t *w1, const int8_t *x0,
                               const int8_t *x1, int32_t k, int32_t b0, int32_t b1,
                               int32_t *out0, int32_t *out1) {
    int32_t a00 = b0, a01 = b0, a10 = b1, a11 = b1;
    int32_t n;
    for (n = k >> 4; n > 0; --n) {
        const int8x16_t c0 = vldrbq_s8(x0), c1 = vldrbq_s8(x1);
        const int8x16_t v0 = vldrbq_s8(w0), v1 = vldrbq_s8(w1);
        x0 += 16;
        x1 += 16;
        w0 += 16;
        w1 += 16;
        a00 = vmladavaq_s8(a00, v0, c0);
        a01 = vmladavaq_s8(a01, v0, c1);
        a10 = vmladavaq_s8(a10, v1, c0);
        a11 = vmladavaq_s8(a11, v1, c1);
    }
    if (k & 15) {
        const mve_pred16_t pr = vctp8q((uint32_t)(k & 15));
        const int8x16_t c0 = vldrbq_z_s8(x0, pr), c1 = vldrbq_z_s8(x1, pr);
        const int8x16_t v0 = vldrbq_z_s8(w0, pr), v1 = vldrbq_z_s8(w1, pr);
        a00 = vmladavaq_s8(a00, v0, c0); /* inactive lanes were loaded as zeros */
        a01 = vmladavaq_s8(a01, v0, c1);
        a10 = vmladavaq_s8(a10, v1, c0);
        a11 = vmladavaq_s8(a11, v1, c1);
    }
    out0[0] = a00;
    out1[0] = a01;
    out0[1] = a10;
    out1[1] = a11;
}

int eedge_conv2d_s8_mve(const eedge_conv_params *p, const int8_t *input, const int8_t *weights,
                        const int32_t *bias, int8_t *output) {
    const int32_t k = p->k_h * p->k_w * p->in_c;
    const int32_t pixels = p->out_h * p->out_w, out_c = p->out_c, in_offset = p->in_offset;
    int8_t *buffer0 = (int8_t *)p->scratch;
    int8_t *buffer1 = buffer0 + ((k + 3) & ~3);
    int32_t base[MVE_CONV_CHANNELS], sums0[MVE_CONV_CHANNELS], sums1[MVE_CONV_CHANNELS];
    const int32_t in_place = p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 &&
                             p->stride_w == 1 && p->pad_top == 0 && p->pad_left == 0 &&
                             p->out_h == p->in_h && p->out_w == p->in_w;
    int32_t c0, c, pixel;
    if (k <= 0 || pixels <= 0) {
        return 0;
    }
    /* channel blocks outermost: the sums of w stay on the stack; with more than 64
     * channels the columns are gathered once per block */
    for (c0 = 0; c0 < out_c; c0 += MVE_CONV_CHANNELS) {
        const int32_t n = out_c - c0 < MVE_CONV_CHANNELS ? out_c - c0 : MVE_CONV_CHANNELS;
        const int8_t *wblock = weights + c0 * k;
        for (c = 0; c < n; ++c) {
            base[c] = (bias != 0 ? bias[c0 + c] : 0) + in_offset * weight_sum(wblock + c * k, k);
        }
        for (pixel = 0; pixel < pixels; pixel += 2) {
            const int32_t two = pixel + 1 < pixels;
            const int8_t *col0, *col1;
            int8_t *out0 = output + pixel * out_c + c0;
            if (in_place) { /* 1x1, stride 1, no padding: the input rows are the columns */
                col0 = input + pixel * k;
                col1 = two ? col0 + k : col0;
            } else {
                col0 = column_of(p, input, pixel, buffer0);
                col1 = two ? column_of(p, input, pixel + 1, buffer1) : col0;
            }
            if (k <= 16) { /* one vector per column: loaded once for all channels */
                const mve_pred16_t pr = vctp8q((uint32_t)k);
                const int8x16_t x0 = vldrbq_z_s8(col0, pr), x1 = vldrbq_z_s8(col1, pr);
                const int8_t *w = wblock;
                for (c = 0; c < n; ++c, w += k) {
                    const int8x16_t v = vldrbq_z_s8(w, pr);
                    sums0[c] = vmladavaq_s8(base[c], v, x0);
                    sums1[c] = vmladavaq_s8(base[c], v, x1);
                }
            } else {
                for (c = 0; c + 2 <= n; c += 2) {
                    const int8_t *w0 = wblock + c * k;
                    dot_2x2_mve(w0, w0 + k, col0, col1, k, base[c], base[c + 1], sums0 + c,
                                sums1 + c);
                }
                if (c < n) { /* an odd channel count: the last channel twice */
                    int32_t last0[2], last1[2];
                    const int8_t *w0 = wblock + c * k;
                    dot_2x2_mve(w0, w0, col0, col1, k, base[c], base[c], last0, last1);
                    sums0[c] = last0[0];
                    sums1[c] = last1[0];
                }
            }
            eedge_mve_output_stage(sums0, n, p->multiplier + c0, p->shift + c0, 1,
                                   p->out_offset, p->act_min, p->act_max, out0);
            if (two) {
                eedge_mve_output_stage(sums1, n, p->multiplier + c0, p->shift + c0, 1,
                                       p->out_offset, p->act_min, p->act_max, out0 + out_c);
            }
        }
    }
    return 1;
}
#else
typedef int eedge_conv_mve_unused; /* ISO C: a translation unit declares something */
#endif
