/* Depthwise convolution, int8 NHWC, with Helium (MVE): built only with EEDGE_USE_MVE.
 *
 * Channels run along the vectors, eight per group: VLDRB.S16 widens eight input and eight
 * weight bytes, VADD adds the input offset (|x + o| <= 255 fits 16 bits), and VMULLB /
 * VMULLT multiply the even and the odd lanes into two int32x4 products that two VADDs
 * accumulate (MVE has no lane-wise integer multiply-accumulate). The output stage works
 * on the even and odd sums separately: gathers fetch their channels' bias, multipliers
 * and shifts, scatters store their bytes. Taps outside the image are skipped (their
 * offset input is zero). Depth multiplier 1 only; other shapes decline to the portable
 * kernel. Sums do not depend on their order and the requantization is the shared one
 * (kernels_mve.h), so the bytes are the portable kernel's.
 */
#include "eedge/kernels_mve.h"

#if defined(EEDGE_USE_MVE)

typedef struct {
    const int8_t *input, *weights;
    int32_t ch, in_w, y0, x0, ky0, ky1, kx0, kx1, k_w, dil_h, dil_w, in_offset;
} dw_window;

/* Channels c..c+7 of one output pixel (the first `rem` of them when rem < 8: only those
 * are read and written). FULL is a constant at each call, so the loads of a full group
 * are not predicated. */
__attribute__((always_inline)) static inline void dw_group8(
    const dw_window *win, const eedge_conv_params *p, const int32_t *bias, int32_t c,
    int32_t rem, int full, int8_t *out) {
    const uint32x4_t even = vidupq_n_u32(0, 2);          /* lanes 0, 2, 4, 6 */
    const mve_pred16_t pr = vctp16q((uint32_t)rem);
    const mve_pred16_t pe = vctp32q((uint32_t)(rem + 1) / 2u), po = vctp32q((uint32_t)rem / 2u);
    const int32_t ch = win->ch;
    int32x4_t ae, ao;
    int32_t ky, kx;
    if (bias != 0) {
        ae = vldrwq_gather_shifted_offset_z_s32(bias + c, even, pe);
        ao = vldrwq_gather_shifted_offset_z_s32(bias + c + 1, even, po);
    } else {
        ae = ao = vdupq_n_s32(0);
    }
    for (ky = win->ky0; ky < win->ky1; ++ky) {
        const int8_t *xrow = win->input + (win->y0 + ky * win->dil_h) * win->in_w * ch + c;
        const int8_t *wrow = win->weights + ky * win->k_w * ch + c;
        for (kx = win->kx0; kx < win->kx1; ++kx) {
            const int8_t *x = xrow + (win->x0 + kx * win->dil_w) * ch;
            const int8_t *w = wrow + kx * ch;
            const int16x8_t xv = vaddq_n_s16(full ? vldrbq_s16(x) : vldrbq_z_s16(x, pr),
                                             (int16_t)win->in_offset);
            const int16x8_t wv = full ? vldrbq_s16(w) : vldrbq_z_s16(w, pr);
            ae = vaddq_s32(ae, vmullbq_int_s16(xv, wv));
            ao = vaddq_s32(ao, vmulltq_int_s16(xv, wv));
        }
    }
    {
        const int32x4_t lo = vdupq_n_s32(p->act_min), hi = vdupq_n_s32(p->act_max);
        const int32_t *m = p->multiplier + c, *s = p->shift + c;
        ae = eedge_mve_requantize(ae, vldrwq_gather_shifted_offset_z_s32(m, even, pe),
                                  vldrwq_gather_shifted_offset_z_s32(s, even, pe));
        ao = eedge_mve_requantize(ao, vldrwq_gather_shifted_offset_z_s32(m + 1, even, po),
                                  vldrwq_gather_shifted_offset_z_s32(s + 1, even, po));
        ae = vminq_s32(vmaxq_s32(vaddq_n_s32(ae, p->out_offset), lo), hi);
        ao = vminq_s32(vmaxq_s32(vaddq_n_s32(ao, p->out_offset), lo), hi);
        vstrbq_scatter_offset_p_s32(out + c, even, ae, pe);
        vstrbq_scatter_offset_p_s32(out + c + 1, even, ao, po);
    }
}

int eedge_depthwise_conv2d_s8_mve(const eedge_conv_params *p, const int8_t *input,
                                  const int8_t *weights, const int32_t *bias, int8_t *output) {
    const int32_t ch = p->out_c, k_h = p->k_h, k_w = p->k_w;
    dw_window win;
    int32_t oy, ox;
    if (p->depth_multiplier != 1 || p->in_c != ch || ch <= 0) {
        return 0;
    }
    win.input = input;
    win.weights = weights;
    win.ch = ch;
    win.in_w = p->in_w;
    win.k_w = k_w;
    win.dil_h = p->dil_h;
    win.dil_w = p->dil_w;
    win.in_offset = p->in_offset;
    for (oy = 0; oy < p->out_h; ++oy) {
        win.y0 = oy * p->stride_h - p->pad_top;
        /* the kernel rows inside the image: ky0 <= ky < ky1 */
        win.ky0 = 0;
        win.ky1 = k_h;
        while (win.ky0 < k_h && win.y0 + win.ky0 * p->dil_h < 0) {
            ++win.ky0;
        }
        while (win.ky1 > win.ky0 && win.y0 + (win.ky1 - 1) * p->dil_h >= p->in_h) {
            --win.ky1;
        }
        for (ox = 0; ox < p->out_w; ++ox) {
            int8_t *out = output + (oy * p->out_w + ox) * ch;
            int32_t c;
            win.x0 = ox * p->stride_w - p->pad_left;
            win.kx0 = 0;
            win.kx1 = k_w;
            while (win.kx0 < k_w && win.x0 + win.kx0 * p->dil_w < 0) {
                ++win.kx0;
            }
            while (win.kx1 > win.kx0 && win.x0 + (win.kx1 - 1) * p->dil_w >= p->in_w) {
                --win.kx1;
            }
            for (c = 0; c + 8 <= ch; c += 8) {
                dw_group8(&win, p, bias, c, 8, 1, out);
            }
            if (c < ch) {
                dw_group8(&win, p, bias, c, ch - c, 0, out);
            }
        }
    }
    return 1;
}
#else
typedef int eedge_depthwise_mve_unused; /* ISO C: a translation unit declares something */
#endif
