/* MEAN, SUM and REDUCE_MAX over any axes of an int8 tensor of up to four dimensions.
 *
 * The code generator hands the input over in canonical form (adjacent axes with the
 * same role merged, unit axes dropped), so one reduced axis group covers the common
 * cases as (outer, len, inner): the squeeze-excite global pool of NHWC (len = H*W,
 * inner = C), a mean over channels (inner = 1, contiguous rows), a mean over W only.
 * Two reduced groups (H and C, say) take the general loop.
 *
 * MEAN and SUM follow TFLite Micro's QuantizedMeanOrSum: an int32 sum, minus the
 * input zero point times the count, one requantization (MEAN's 1/count is folded
 * into the multiplier by the generator), plus the output zero point, clamped.
 * Integer sums do not depend on their order, so every path gives the same bytes.
 * MAX compares bytes: input and output share their quantization.
 *
 * With the DSP extension (EEDGE_USE_DSP) one 32-bit load brings four bytes: SXTAB16
 * adds bytes 0/2 and 1/3 into 16-bit lanes (exact for up to 256 additions per lane,
 * then flushed into int32), and SSUB8 + SEL keep four running maxima at once.
 */
#include <string.h>

#include "eedge/dsp.h"
#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"

#define LANE_FLUSH 256  /* 16-bit lanes hold 256 int8 values exactly: 256 * -128 = -32768 */

/* The inner loops live out of line: inlined into the dispatcher they ran out of registers
 * (spills inside the loop cost a third more instructions on Cortex-M4). */
#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

#if defined(EEDGE_USE_DSP)
/* Byte-wise signed maximum of four lanes (SSUB8 sets the GE flags SEL reads; GCC
 * tracks that dependency, so the pair may be scheduled like any other code). */
static inline int32_t max_s8x4(int32_t a, int32_t b) {
    (void)__ssub8((int8x4_t)a, (int8x4_t)b);
    return (int32_t)__sel((uint8x4_t)a, (uint8x4_t)b);
}

static inline int32_t lanes_sum(int32_t v) {
    return (int32_t)(int16_t)(v & 0xffff) + (v >> 16);
}
#endif

static int8_t finish_sum(const eedge_reduce_params *p, int32_t sum) {
    const int32_t shifted = (int32_t)((uint32_t)sum - (uint32_t)(p->in_zero_point * p->count));
    const int32_t value = eedge_requantize(shifted, p->multiplier, p->shift) + p->out_zero_point;
    return (int8_t)eedge_clamp(value, -128, 127);
}

/* Sum and maximum of n bytes `stride` apart, four per iteration (two accumulators). */
static NOINLINE int32_t sum_strided(const int8_t *x, int32_t n, int32_t stride) {
    int32_t s0 = 0, s1 = 0, i = 0;
    const int32_t stride2 = 2 * stride, stride3 = 3 * stride, stride4 = 4 * stride;
    for (; i + 4 <= n; i += 4, x += stride4) {
        s0 += x[0];
        s1 += x[stride];
        s0 += x[stride2];
        s1 += x[stride3];
    }
    for (; i < n; ++i, x += stride) {
        s0 += *x;
    }
    return s0 + s1;
}

static NOINLINE int32_t max_strided(const int8_t *x, int32_t n, int32_t stride) {
    int32_t m0 = -128, m1 = -128, i = 0;
    const int32_t stride2 = 2 * stride, stride3 = 3 * stride, stride4 = 4 * stride;
    for (; i + 4 <= n; i += 4, x += stride4) {
        m0 = x[0] > m0 ? x[0] : m0;
        m1 = x[stride] > m1 ? x[stride] : m1;
        m0 = x[stride2] > m0 ? x[stride2] : m0;
        m1 = x[stride3] > m1 ? x[stride3] : m1;
    }
    for (; i < n; ++i, x += stride) {
        m0 = *x > m0 ? *x : m0;
    }
    return m0 > m1 ? m0 : m1;
}

/* Sum and maximum of n contiguous bytes. */
static int32_t sum_row(const int8_t *x, int32_t n) {
    int32_t sum = 0, i = 0;
#if defined(EEDGE_USE_DSP)
    while (n - i >= 4) {
        int32_t words = (n - i) / 4, k, even = 0, odd = 0;
        words = words > LANE_FLUSH ? LANE_FLUSH : words;
        for (k = 0; k < words; ++k, i += 4) {
            const int32_t w = load_i32(x + i);
            even = __sxtab16(even, w);
            odd = sxtab16_ror8(odd, w);
        }
        sum += lanes_sum(even) + lanes_sum(odd);
    }
#endif
    return sum + sum_strided(x + i, n - i, 1);
}

static int32_t max_row(const int8_t *x, int32_t n) {
    int32_t best = -128, i = 0;
#if defined(EEDGE_USE_DSP)
    if (n >= 4) {
        int32_t m = (int32_t)0x80808080u, k;
        for (; i + 4 <= n; i += 4) {
            m = max_s8x4(load_i32(x + i), m);
        }
        for (k = 0; k < 4; ++k) {
            const int32_t v = (int8_t)((uint32_t)m >> (8 * k));
            best = v > best ? v : best;
        }
    }
#endif
    if (i < n) {
        const int32_t rest = max_strided(x + i, n - i, 1);
        best = rest > best ? rest : best;
    }
    return best;
}

#if defined(EEDGE_USE_DSP)
/* Sums of four adjacent channels over len positions `stride` bytes apart, two positions
 * per iteration. */
static NOINLINE void sum4_strided(const int8_t *x, int32_t len, int32_t stride,
                                  int32_t sums[4]) {
    sums[0] = sums[1] = sums[2] = sums[3] = 0;
    while (len > 0) {
        int32_t n = len > LANE_FLUSH ? LANE_FLUSH : len, even = 0, odd = 0;
        len -= n;
        for (; n >= 2; n -= 2, x += 2 * stride) {
            const int32_t w0 = load_i32(x), w1 = load_i32(x + stride);
            even = __sxtab16(even, w0);
            odd = sxtab16_ror8(odd, w0);
            even = __sxtab16(even, w1);
            odd = sxtab16_ror8(odd, w1);
        }
        if (n > 0) {
            const int32_t w = load_i32(x);
            even = __sxtab16(even, w);
            odd = sxtab16_ror8(odd, w);
            x += stride;
        }
        sums[0] += (int16_t)(even & 0xffff);
        sums[1] += (int16_t)(odd & 0xffff);
        sums[2] += even >> 16;
        sums[3] += odd >> 16;
    }
}

/* Maxima of four adjacent channels over len positions `stride` bytes apart. */
static NOINLINE int32_t max4_strided(const int8_t *x, int32_t len, int32_t stride) {
    int32_t m0 = (int32_t)0x80808080u, m1 = m0;
    for (; len >= 2; len -= 2, x += 2 * stride) {
        m0 = max_s8x4(load_i32(x), m0);
        m1 = max_s8x4(load_i32(x + stride), m1);
    }
    if (len > 0) {
        m0 = max_s8x4(load_i32(x), m0);
    }
    return max_s8x4(m0, m1);
}
#endif

/* One output per channel c < inner: the reduction over len positions `inner` bytes apart. */
static void reduce_strided(const eedge_reduce_params *p, const int8_t *x, int32_t len,
                           int32_t inner, int8_t *out) {
    int32_t c = 0;
#if defined(EEDGE_USE_DSP)
    for (; c + 4 <= inner; c += 4) {
        if (p->op == EEDGE_REDUCE_MAX) {
            const int32_t m = max4_strided(x + c, len, inner);
            memcpy(out + c, &m, 4);
        } else {
            int32_t sums[4], k;
            sum4_strided(x + c, len, inner, sums);
            for (k = 0; k < 4; ++k) {
                out[c + k] = finish_sum(p, sums[k]);
            }
        }
    }
#endif
    for (; c < inner; ++c) {
        out[c] = p->op == EEDGE_REDUCE_MAX ? (int8_t)max_strided(x + c, len, inner)
                                           : finish_sum(p, sum_strided(x + c, len, inner));
    }
}

/* Any pattern of reduced axes: one pass over the reduced positions per output element. */
static void reduce_general(const eedge_reduce_params *p, const int8_t *input, int8_t *output) {
    const int32_t *d = p->dims;
    const int32_t stride[4] = {d[1] * d[2] * d[3], d[2] * d[3], d[3], 1};
    int32_t keep_n[4], red_n[4], k, a0, a1, a2, a3, b0, b1, b2, b3, n = 0;
    for (k = 0; k < 4; ++k) {
        keep_n[k] = p->reduce[k] ? 1 : d[k];
        red_n[k] = p->reduce[k] ? d[k] : 1;
    }
    for (a0 = 0; a0 < keep_n[0]; ++a0)
    for (a1 = 0; a1 < keep_n[1]; ++a1)
    for (a2 = 0; a2 < keep_n[2]; ++a2)
    for (a3 = 0; a3 < keep_n[3]; ++a3) {
        const int8_t *base = input + a0 * stride[0] + a1 * stride[1] + a2 * stride[2] + a3;
        int32_t acc = p->op == EEDGE_REDUCE_MAX ? -128 : 0;
        for (b0 = 0; b0 < red_n[0]; ++b0)
        for (b1 = 0; b1 < red_n[1]; ++b1)
        for (b2 = 0; b2 < red_n[2]; ++b2)
        for (b3 = 0; b3 < red_n[3]; ++b3) {
            const int32_t v = base[b0 * stride[0] + b1 * stride[1] + b2 * stride[2] + b3];
            acc = p->op == EEDGE_REDUCE_MAX ? (v > acc ? v : acc) : acc + v;
        }
        output[n++] = p->op == EEDGE_REDUCE_MAX ? (int8_t)acc : finish_sum(p, acc);
    }
}

void eedge_reduce_s8(const eedge_reduce_params *p, const int8_t *input, int8_t *output) {
    int32_t k, r = -1, groups = 0, outer = 1, len = 1, inner = 1, o;
    for (k = 0; k < 4; ++k) {
        if (p->reduce[k]) {
            r = k;
            ++groups;
        }
    }
    if (groups > 1) {
        reduce_general(p, input, output);
        return;
    }
    for (k = 0; k < 4; ++k) {
        if (k < r) {
            outer *= p->dims[k];
        } else if (k == r) {
            len = p->dims[k];
        } else {
            inner *= p->dims[k];
        }
    }
    for (o = 0; o < outer; ++o) {
        const int8_t *x = input + o * len * inner;
        int8_t *out = output + o * inner;
        if (inner == 1) {
            out[0] = p->op == EEDGE_REDUCE_MAX ? (int8_t)max_row(x, len)
                                               : finish_sum(p, sum_row(x, len));
        } else {
            reduce_strided(p, x, len, inner, out);
        }
    }
}
