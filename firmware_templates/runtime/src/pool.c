/* Average and max pooling (same quantization in and out); means are in reduce.c. */
#include "eedge/dsp.h"
#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"

static void window(const eedge_pool_params *p, int32_t oy, int32_t ox, int32_t *y0, int32_t *y1,
                   int32_t *x0, int32_t *x1) {
    const int32_t iy = oy * p->stride_h - p->pad_top;
    const int32_t ix = ox * p->stride_w - p->pad_left;
    *y0 = iy < 0 ? 0 : iy;
    *y1 = iy + p->f_h > p->in_h ? p->in_h : iy + p->f_h;
    *x0 = ix < 0 ? 0 : ix;
    *x1 = ix + p->f_w > p->in_w ? p->in_w : ix + p->f_w;
}

/* TFLite's average: each window sum divided by the count of valid pixels, halves rounded
 * away from zero (C division truncates, so half the count is added first) */
static void pool_store(const int32_t *sums, int32_t n, int32_t count, int32_t low,
                       int32_t high, int8_t *out) {
    int32_t k;
    for (k = 0; k < n; ++k) {
        const int32_t sum = sums[k];
        const int32_t average = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
        out[k] = (int8_t)eedge_clamp(average, low, high);
    }
}

/* Channels eight (DSP) or four at a time, the window's pixels one or two words each: with
 * the DSP, SXTAB16 adds the bytes into 16-bit lanes (a window of at most 255 pixels cannot
 * overflow them: 255 * 128 < 2^15), else four int32 sums. The last c % 4 channels one by
 * one. The emitter never passes a window without valid pixels (TFLite's padding). */
void eedge_avg_pool_s8(const eedge_pool_params *p, const int8_t *input, int8_t *output) {
    const int32_t c = p->c, in_w = p->in_w, out_h = p->out_h, out_w = p->out_w;
    const int32_t low = p->act_min, high = p->act_max;
    int32_t oy, ox, ch, y, y0, y1, x0, x1, sums[8];
    for (oy = 0; oy < out_h; ++oy) {
        for (ox = 0; ox < out_w; ++ox) {
            const int8_t *base, *q;
            int32_t count, rows, cols, skip;
            int8_t *out = output + (oy * out_w + ox) * c;
            window(p, oy, ox, &y0, &y1, &x0, &x1);
            rows = y1 - y0;
            cols = x1 - x0;
            count = rows * cols;
            if (count <= 0) {
                count = 1; /* no valid pixel: sums of 0 */
            }
            base = input + (y0 * in_w + x0) * c;
            skip = (in_w - cols) * c; /* from a window row's end to the next row's start */
            ch = 0;
#if defined(EEDGE_USE_DSP)
            for (; count <= 255 && ch + 8 <= c; ch += 8) {
                int32_t e0 = 0, o0 = 0, e1 = 0, o1 = 0;
                for (q = base + ch, y = 0; y < rows; ++y, q += skip) {
                    const int8_t *const row_end = q + cols * c;
                    for (; q != row_end; q += c) {
                        const int32_t v0 = load_i32(q), v1 = load_i32(q + 4);
                        e0 = __sxtab16(e0, v0);
                        o0 = sxtab16_ror8(o0, v0);
                        e1 = __sxtab16(e1, v1);
                        o1 = sxtab16_ror8(o1, v1);
                    }
                }
                sums[0] = (int16_t)(uint16_t)e0;
                sums[1] = (int16_t)(uint16_t)o0;
                sums[2] = e0 >> 16;
                sums[3] = o0 >> 16;
                sums[4] = (int16_t)(uint16_t)e1;
                sums[5] = (int16_t)(uint16_t)o1;
                sums[6] = e1 >> 16;
                sums[7] = o1 >> 16;
                pool_store(sums, 8, count, low, high, out + ch);
            }
#endif
            for (; ch < c; ch += 4) {
                const int32_t n = c - ch < 4 ? c - ch : 4;
                int32_t k;
                sums[0] = sums[1] = sums[2] = sums[3] = 0;
                for (q = base + ch, y = 0; y < rows; ++y, q += skip) {
                    const int8_t *const row_end = q + cols * c;
                    for (; q != row_end; q += c) {
                        for (k = 0; k < n; ++k) {
                            sums[k] += q[k];
                        }
                    }
                }
                pool_store(sums, n, count, low, high, out + ch);
            }
        }
    }
}

void eedge_max_pool_s8(const eedge_pool_params *p, const int8_t *input, int8_t *output) {
    int32_t oy, ox, c, y, x, y0, y1, x0, x1;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            window(p, oy, ox, &y0, &y1, &x0, &x1);
            for (c = 0; c < p->c; ++c) {
                int32_t best = -128;
                for (y = y0; y < y1; ++y) {
                    for (x = x0; x < x1; ++x) {
                        const int32_t v = input[(y * p->in_w + x) * p->c + c];
                        best = v > best ? v : best;
                    }
                }
                output[(oy * p->out_w + ox) * p->c + c] =
                    (int8_t)eedge_clamp(best, p->act_min, p->act_max);
            }
        }
    }
}
