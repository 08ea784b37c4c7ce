/* Average and max pooling (same quantization in and out); means are in reduce.c. */
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

void eedge_avg_pool_s8(const eedge_pool_params *p, const int8_t *input, int8_t *output) {
    int32_t oy, ox, c, y, x, y0, y1, x0, x1;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            window(p, oy, ox, &y0, &y1, &x0, &x1);
            for (c = 0; c < p->c; ++c) {
                int32_t sum = 0;
                const int32_t count = (y1 - y0) * (x1 - x0);
                int32_t average;
                for (y = y0; y < y1; ++y) {
                    for (x = x0; x < x1; ++x) {
                        sum += input[(y * p->in_w + x) * p->c + c];
                    }
                }
                /* C division truncates; adding half the count first rounds halves away */
                average = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
                output[(oy * p->out_w + ox) * p->c + c] =
                    (int8_t)eedge_clamp(average, p->act_min, p->act_max);
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
