/* Depthwise convolution, int8 NHWC, with Helium (MVE): built only with EEDGE_USE_MVE.
 *
 * Channels run along the vectors, eight per group, and the groups are the outer loop, so
 * a group's bias, multipliers and shifts are fetched once for the whole image. Per tap,
 * VLDRB.S16 widens eight input and eight weight bytes, VADD adds the input offset
 * (|x + o| <= 255 fits 16 bits), and VMULLB / VMULLT multiply the even and the odd lanes
 * into two int32x4 products that two VADDs accumulate (MVE has no lane-wise integer
 * multiply-accumulate). The even and odd sums are requantized apart (their parameters
 * gathered with stride 2) and VMOVNB / VMOVNT interleave them back into channel order
 * for one 8-byte store. Taps outside the image are skipped (their offset input is zero).
 * Depth multiplier 1 only; other shapes decline to the portable kernel. Sums do not
 * depend on their order and the requantization is the shared one (kernels_mve.h), so the
 * bytes are the portable kernel's.
 */
#include "eedge/kernels_mve.h"

#if defined(EEDGE_USE_MVE)

/* One tap of eight channels: x + offset times w, even lanes into ae, odd into ao */
#define DW_TAP(xp, wp)                                                                   \
    do {                                                                                 \
        const int16x8_t xv_ =                                                            \
            vaddq_n_s16(full ? vldrbq_s16(xp) : vldrbq_z_s16(xp, pr), in_offset);        \
        const int16x8_t wv_ = full ? vldrbq_s16(wp) : vldrbq_z_s16(wp, pr);              \
        ae = vaddq_s32(ae, vmullbq_int_s16(xv_, wv_));                                   \
        ao = vaddq_s32(ao, vmulltq_int_s16(xv_, wv_));                                   \
        __asm__ volatile("" ::: "memory"); /* keeps gcc from hoisting the next loads */  \
    } while (0)

/* Channels c..c+rem-1 (rem <= 8) of the whole output. FULL (rem == 8) is a constant at
 * each call, so a full group's loads and stores are not predicated. */
__attribute__((always_inline)) static inline void dw_channels8(
    const eedge_conv_params *p, const int8_t *input, const int8_t *weights,
    const int32_t *bias, int8_t *output, int32_t c, int32_t rem, int full, int left) {
    const int32_t ch = p->out_c, in_w = p->in_w, in_h = p->in_h, k_h = p->k_h, k_w = p->k_w;
    const int32_t dil_h = p->dil_h, dil_w = p->dil_w, out_w = p->out_w;
    const int16_t in_offset = (int16_t)p->in_offset;
    const int16_t out_offset = (int16_t)p->out_offset;
    const int16x8_t low = vdupq_n_s16((int16_t)p->act_min);
    const int16x8_t high = vdupq_n_s16((int16_t)p->act_max);
    const uint32x4_t even = vidupq_n_u32(0, 2); /* lanes 0, 2, 4, 6 */
    const mve_pred16_t pr = vctp16q((uint32_t)rem);
    const mve_pred16_t pe = vctp32q((uint32_t)(rem + 1) / 2u), po = vctp32q((uint32_t)rem / 2u);
    const int32x4_t zero = vdupq_n_s32(0);
    const int32x4_t be =
        bias != 0 ? vldrwq_gather_shifted_offset_z_s32(bias + c, even, pe) : zero;
    const int32x4_t bo =
        bias != 0 ? vldrwq_gather_shifted_offset_z_s32(bias + c + 1, even, po) : zero;
    const int32x4_t me = vldrwq_gather_shifted_offset_z_s32(p->multiplier + c, even, pe);
    const int32x4_t mo = vldrwq_gather_shifted_offset_z_s32(p->multiplier + c + 1, even, po);
    const int32x4_t se = vldrwq_gather_shifted_offset_z_s32(p->shift + c, even, pe);
    const int32x4_t so = vldrwq_gather_shifted_offset_z_s32(p->shift + c + 1, even, po);
    const int8_t *wbase = weights + c;
    int32_t oy, ox;
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        int32_t ky0 = 0, ky1 = k_h; /* the kernel rows inside the image */
        while (ky0 < k_h && y0 + ky0 * dil_h < 0) {
            ++ky0;
        }
        while (ky1 > ky0 && y0 + (ky1 - 1) * dil_h >= in_h) {
            --ky1;
        }
        for (ox = 0; ox < out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            int32_t kx0 = 0, kx1 = k_w, ky, kx;
            int32x4_t ae = be, ao = bo;
            int16x8_t packed;
            while (kx0 < k_w && x0 + kx0 * dil_w < 0) {
                ++kx0;
            }
            while (kx1 > kx0 && x0 + (kx1 - 1) * dil_w >= in_w) {
                --kx1;
            }
            if (kx1 - kx0 == 3 && dil_w == 1) {
                /* three taps across (3x3 windows inside the image columns): straight-line
                 * code, no loop per kernel row */
                for (ky = ky0; ky < ky1; ++ky) {
                    const int8_t *x = input + ((y0 + ky * dil_h) * in_w + x0 + kx0) * ch + c;
                    const int8_t *w = wbase + (ky * k_w + kx0) * ch;
                    DW_TAP(x, w);
                    DW_TAP(x + ch, w + ch);
                    DW_TAP(x + 2 * ch, w + 2 * ch);
                }
            } else {
                for (ky = ky0; ky < ky1; ++ky) {
                    const int8_t *x =
                        input + ((y0 + ky * dil_h) * in_w + x0 + kx0 * dil_w) * ch + c;
                    const int8_t *w = wbase + (ky * k_w + kx0) * ch;
                    for (kx = kx1 - kx0; kx > 0; --kx) {
                        DW_TAP(x, w);
                        x += dil_w * ch;
                        w += ch;
                    }
                }
            }
            if (left) {
                ae = eedge_mve_requantize(ae, me, se);
                ao = eedge_mve_requantize(ao, mo, so);
            } else { /* every shift a right shift: no VSHL */
                ae = eedge_mve_requantize_right(ae, me, se);
                ao = eedge_mve_requantize_right(ao, mo, so);
            }
            /* back into channel order, saturated to 16 bits: even sums to the even lanes,
             * odd to the odd; then the zero point (saturating) and the clamp on eight
             * lanes at once. Same bytes as clamp(v + o) in 32 bits: |o| <= 128 and the
             * range is inside int8, so a saturated lane lands beyond the same bound. */
            packed = vqmovntq_s32(vqmovnbq_s32(vdupq_n_s16(0), ae), ao);
            packed = vminq_s16(vmaxq_s16(vqaddq_n_s16(packed, out_offset), low), high);
            if (full) {
                vstrbq_s16(output + (oy * out_w + ox) * ch + c, packed);
            } else {
                vstrbq_p_s16(output + (oy * out_w + ox) * ch + c, packed, pr);
            }
        }
    }
}

int eedge_depthwise_conv2d_s8_mve(const eedge_conv_params *p, const int8_t *input,
                                  const int8_t *weights, const int32_t *bias, int8_t *output) {
    const int32_t ch = p->out_c;
    int32_t c;
    if (p->depth_multiplier != 1 || p->in_c != ch || ch <= 0) {
        return 0;
    }
    for (c = 0; c + 8 <= ch; c += 8) {
        /* the common case, right shifts only, skips the left shift (a separate copy) */
        const int32x4_t s0 = vldrwq_s32(p->shift + c), s1 = vldrwq_s32(p->shift + c + 4);
        if (vmaxvq_s32(0, vmaxq_s32(s0, s1)) > 0) {
            dw_channels8(p, input, weights, bias, output, c, 8, 1, 1);
        } else {
            dw_channels8(p, input, weights, bias, output, c, 8, 1, 0);
        }
    }
    if (c < ch) {
        dw_channels8(p, input, weights, bias, output, c, ch - c, 0, 1);
    }
    return 1;
}
#else
typedef int eedge_depthwise_mve_unused; /* ISO C: a translation unit declares something */
#endif
