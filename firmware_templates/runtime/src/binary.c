/* int8 ADD, SUB, MUL, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE with broadcasting, bit-exact with
 * TFLite Micro.
 *
 * Arithmetic (TFLM's reference kernels): ADD/SUB shift both offset inputs left by 20,
 * scale each to a common scale (Q31 multiplier, rounding right shift), add or
 * subtract, and requantize the result; MUL requantizes the product of the offset
 * inputs; MAXIMUM/MINIMUM compare raw bytes (shared quantization); SQUARED_DIFFERENCE
 * shifts the offset inputs left by 7, scales each, and requantizes the squared difference
 * (|difference| <= 2 x 255 x 2^7 / 2, so its square stays below 2^30).
 *
 * Why it is fast and still exact:
 * - The loop nest makes one row call per innermost run: same-shape operands are one
 *   call, squeeze-excite (pixels x channels) one call per pixel.
 * - TFLite's saturating rounding doubling high multiply is floor((x m + 2^30) / 2^31);
 *   every multiplier is positive (never saturates) and every operand here has
 *   |x| < 2^30, so it equals the rounded high word of (2x) m: one SMMULR on Cortex-M
 *   (EEDGE_USE_DSP), and one multiply-accumulate in portable C. Callers pass 2x.
 * - The rounding right shift (ties away from zero) is (x + half - (x < 0)) >> r.
 * - ADD/SUB of 512 elements or more first tabulate 2 x the scaled value of each of
 *   the 256 int8 inputs of each operand (negated for SUB's second), in the model's
 *   scratch: two of the three requantizations per element become table reads.
 * - SQUARED_DIFFERENCE over a row whose second operand is one value (LayerNorm's
 *   x - mean, broadcast over the last axis) scales that value once per row, and with
 *   512 elements or more reads the first operand's scaled value from a table (four
 *   elements per iteration); the DSP path squares with SSUB16 + SMUAD on halfword pairs.
 * - DSP path: SSAT saturates when the activation range is the whole int8 range; MUL
 *   widens four bytes at a time with SXTAB16 (adding the offsets) and multiplies
 *   halfwords with SMULBB/SMULTT; MAXIMUM/MINIMUM compare four lanes with SSUB8 and
 *   pick with SEL. Both paths compute the same integers, so they give the same bytes.
 */
#include <string.h>

#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"

#if defined(EEDGE_USE_DSP)
#include <arm_acle.h>
#endif

/* Row loops stay separate functions: inlined into the loop nest they run out of registers. */
#if defined(__GNUC__)
#define BIN_ROW static __attribute__((noinline))
#else
#define BIN_ROW static
#endif

typedef struct {
    int32_t m, l2, r, half, neg, offset, low, high;   /* l2: MUL's left shift plus one */
} bin_out;

typedef struct {
    int32_t off1, m1, r1, half1, neg1;
    int32_t off2, m2, r2, half2, neg2;
    bin_out out;
    const int32_t *lut1, *lut2;   /* 2 x scaled input per int8 value (index value + 128) */
} bin_ctx;

/* Rounding right shift, ties away from zero: half = 2^(r-1) and neg = -1 when r > 0. */
static inline int32_t bin_round(int32_t x, int32_t r, int32_t half, int32_t neg) {
    return (int32_t)((uint32_t)x + (uint32_t)half + (uint32_t)((x >> 31) & neg)) >> r;
}

/* ADD/SUB: an offset input v (|v| <= 255) shifted left by 20 and scaled. */
static inline int32_t bin_scale_in(int32_t v, int32_t m, int32_t r, int32_t half, int32_t neg) {
    return bin_round(eedge_high_mul_small((int32_t)((uint32_t)v << 21), m), r, half, neg);
}

/* SQUARED_DIFFERENCE: an offset input v (|v| <= 255) shifted left by 7 and scaled. */
static inline int32_t bin_scale_sqd(int32_t v, int32_t m, int32_t r, int32_t half, int32_t neg) {
    return bin_round(eedge_high_mul_small((int32_t)((uint32_t)v << 8), m), r, half, neg);
}

/* Each row loop copies the output stage's constants (bin_out) into locals: `out` is an
 * int8_t pointer, which may alias anything, so fields read through a pointer would be
 * reloaded after every store. */
static inline int32_t bin_requant(bin_out o, int32_t x2) {
    return bin_round(eedge_high_mul_small(x2, o.m), o.r, o.half, o.neg) + o.offset;
}

static inline int32_t bin_finish(bin_out o, int32_t x2) {
    const int32_t v = bin_requant(o, x2);
    return v < o.low ? o.low : (v > o.high ? o.high : v);
}

static void bin_shift_constants(int32_t r, int32_t *half, int32_t *neg) {
    *half = r > 0 ? (int32_t)(1u << (r - 1)) : 0;
    *neg = r > 0 ? -1 : 0;
}

BIN_ROW void addsub_row(const bin_ctx *c, int32_t sub, const int8_t *a, int32_t sa,
                        const int8_t *b, int32_t sb, int8_t *out, int32_t n) {
    const bin_out o = c->out;
    int32_t i;
    if (c->lut1 != 0) {
        const int32_t *l1 = c->lut1 + 128;
        const int32_t *l2 = c->lut2 + 128;
        if (sa == 1 && sb == 1) {
#if defined(EEDGE_USE_DSP)
            if (o.low == -128 && o.high == 127) {
                for (i = 0; i < n; ++i) {
                    out[i] = (int8_t)__ssat(bin_requant(o, l1[a[i]] + l2[b[i]]), 8);
                }
                return;
            }
#endif
            for (i = 0; i < n; ++i) {
                out[i] = (int8_t)bin_finish(o, l1[a[i]] + l2[b[i]]);
            }
            return;
        }
        for (i = 0; i < n; ++i) {
            out[i] = (int8_t)bin_finish(o, l1[*a] + l2[*b]);
            a += sa;
            b += sb;
        }
        return;
    }
    {
        const int32_t off1 = c->off1, m1 = c->m1, r1 = c->r1, half1 = c->half1, neg1 = c->neg1;
        const int32_t off2 = c->off2, m2 = c->m2, r2 = c->r2, half2 = c->half2, neg2 = c->neg2;
        if (sa == 1 && sb == 0) {   /* one second value per row (x - row mean): scale it once */
            const int32_t y = bin_scale_in((int32_t)*b + off2, m2, r2, half2, neg2);
            const int32_t y2 = 2 * (sub ? -y : y);
            for (i = 0; i < n; ++i) {
                out[i] = (int8_t)bin_finish(o, 2 * bin_scale_in((int32_t)a[i] + off1, m1, r1,
                                                                half1, neg1) + y2);
            }
            return;
        }
        for (i = 0; i < n; ++i) {
            const int32_t x = bin_scale_in((int32_t)*a + off1, m1, r1, half1, neg1);
            const int32_t y = bin_scale_in((int32_t)*b + off2, m2, r2, half2, neg2);
            out[i] = (int8_t)bin_finish(o, 2 * (sub ? x - y : x + y));
            a += sa;
            b += sb;
        }
    }
}

#if defined(EEDGE_USE_DSP)
/* Lanes 0 and 2 (then 1 and 3) of four int8 as halfwords, each plus the packed offset. */
#define BIN_EVEN(w, off) ((int32_t)__sxtab16((off), (w)))
#define BIN_ODD(w, off) ((int32_t)__sxtab16((off), ((w) >> 8) | ((w) << 24)))
/* bottom x bottom and top x top halfwords (gcc emits SMULBB and SMULTT) */
#define BIN_LOW(x, y) ((int32_t)(int16_t)(x) * (int16_t)(y))
#define BIN_HIGH(x, y) (((x) >> 16) * ((y) >> 16))
#endif

BIN_ROW void mul_row(const bin_ctx *c, const int8_t *a, int32_t sa, const int8_t *b, int32_t sb,
                     int8_t *out, int32_t n) {
    const bin_out o = c->out;
    const int32_t off1 = c->off1, off2 = c->off2;
    int32_t i = 0;
    if (sa == 1 && sb == 1) {
#if defined(EEDGE_USE_DSP)
        const uint32_t pack1 = ((uint32_t)off1 & 0xFFFFu) * 0x10001u;
        const uint32_t pack2 = ((uint32_t)off2 & 0xFFFFu) * 0x10001u;
#define BIN_MUL_FOUR(store)                                                             \
        for (; i + 4 <= n; i += 4) {                                                    \
            uint32_t wa, wb;                                                            \
            int32_t a02, b02, a13, b13;                                                 \
            memcpy(&wa, a + i, 4);                                                      \
            memcpy(&wb, b + i, 4);                                                      \
            a02 = BIN_EVEN(wa, pack1);                                                  \
            b02 = BIN_EVEN(wb, pack2);                                                  \
            a13 = BIN_ODD(wa, pack1);                                                   \
            b13 = BIN_ODD(wb, pack2);                                                   \
            out[i] = store(BIN_LOW(a02, b02));                                          \
            out[i + 1] = store(BIN_LOW(a13, b13));                                      \
            out[i + 2] = store(BIN_HIGH(a02, b02));                                     \
            out[i + 3] = store(BIN_HIGH(a13, b13));                                     \
        }
#define BIN_SAT(prod) ((int8_t)__ssat(bin_requant(o, (int32_t)((uint32_t)(prod) << o.l2)), 8))
#define BIN_CLAMP(prod) ((int8_t)bin_finish(o, (int32_t)((uint32_t)(prod) << o.l2)))
        if (o.low == -128 && o.high == 127) {
            BIN_MUL_FOUR(BIN_SAT)
        } else {
            BIN_MUL_FOUR(BIN_CLAMP)
        }
#undef BIN_MUL_FOUR
#undef BIN_SAT
#undef BIN_CLAMP
#endif
        for (; i < n; ++i) {
            const int32_t product = ((int32_t)a[i] + off1) * ((int32_t)b[i] + off2);
            out[i] = (int8_t)bin_finish(o, (int32_t)((uint32_t)product << o.l2));
        }
        return;
    }
    if (sa == 1 && sb == 0) {   /* one second value per row (LayerNorm's x * 1/std) */
        const int32_t y = (int32_t)*b + off2;   /* |y| <= 255: a halfword */
#if defined(EEDGE_USE_DSP)
        const uint32_t pack1 = ((uint32_t)off1 & 0xFFFFu) * 0x10001u;
        const int32_t yy = (int32_t)(((uint32_t)y & 0xFFFFu) * 0x10001u);
#define BIN_MUL_ROW(store)                                                              \
        for (; i + 4 <= n; i += 4) {                                                    \
            uint32_t wa;                                                                \
            int32_t a02, a13;                                                           \
            memcpy(&wa, a + i, 4);                                                      \
            a02 = BIN_EVEN(wa, pack1);                                                  \
            a13 = BIN_ODD(wa, pack1);                                                   \
            out[i] = store(BIN_LOW(a02, yy));                                           \
            out[i + 1] = store(BIN_LOW(a13, yy));                                       \
            out[i + 2] = store(BIN_HIGH(a02, yy));                                      \
            out[i + 3] = store(BIN_HIGH(a13, yy));                                      \
        }
#define BIN_SAT(prod) ((int8_t)__ssat(bin_requant(o, (int32_t)((uint32_t)(prod) << o.l2)), 8))
#define BIN_CLAMP(prod) ((int8_t)bin_finish(o, (int32_t)((uint32_t)(prod) << o.l2)))
        if (o.low == -128 && o.high == 127) {
            BIN_MUL_ROW(BIN_SAT)
        } else {
            BIN_MUL_ROW(BIN_CLAMP)
        }
#undef BIN_MUL_ROW
#undef BIN_SAT
#undef BIN_CLAMP
#endif
        for (; i < n; ++i) {
            const int32_t product = ((int32_t)a[i] + off1) * y;
            out[i] = (int8_t)bin_finish(o, (int32_t)((uint32_t)product << o.l2));
        }
        return;
    }
    for (; i < n; ++i) {
        const int32_t product = ((int32_t)*a + off1) * ((int32_t)*b + off2);
        out[i] = (int8_t)bin_finish(o, (int32_t)((uint32_t)product << o.l2));
        a += sa;
        b += sb;
    }
}

BIN_ROW void minmax_row(int32_t is_max, const int8_t *a, int32_t sa, const int8_t *b,
                        int32_t sb, int8_t *out, int32_t n) {
    int32_t i = 0;
#if defined(EEDGE_USE_DSP)
    if (sa == 1 && sb == 1) {
        for (; i + 4 <= n; i += 4) {
            uint32_t wa, wb, w;
            memcpy(&wa, a + i, 4);
            memcpy(&wb, b + i, 4);
            (void)__ssub8(wa, wb);   /* GE flags: lanes where a >= b */
            w = is_max ? __sel(wa, wb) : __sel(wb, wa);
            memcpy(out + i, &w, 4);
        }
        a += i;
        b += i;
    }
#endif
    if (is_max) {
        for (; i < n; ++i) {
            const int8_t x = *a, y = *b;
            out[i] = x > y ? x : y;
            a += sa;
            b += sb;
        }
    } else {
        for (; i < n; ++i) {
            const int8_t x = *a, y = *b;
            out[i] = x < y ? x : y;
            a += sa;
            b += sb;
        }
    }
}

/* A scaled SQUARED_DIFFERENCE input s (|s| <= 255 x 2^7 / 2 = 16320) as the row loops hold
 * it, and twice the square of the difference of two: on the DSP path both halfwords carry
 * s, so one SSUB16 gives the difference twice (|d| <= 32640 fits a halfword) and one SMUAD
 * adds its two squares: 2 d^2 < 2^31. */
#if defined(EEDGE_USE_DSP)
static inline int32_t sqd_pack(int32_t s) {
    return (int32_t)(((uint32_t)s & 0xFFFFu) * 0x10001u);
}
static inline int32_t sqd_twice_square(int32_t x, int32_t y) {
    const int32_t d = (int32_t)__ssub16(x, y);
    return (int32_t)__smuad(d, d);
}
#else
static inline int32_t sqd_pack(int32_t s) {
    return s;
}
static inline int32_t sqd_twice_square(int32_t x, int32_t y) {
    const int32_t d = x - y;
    return 2 * d * d;
}
#endif

/* The squared difference requantized: never negative, so the rounding shift needs no sign
 * correction, and the result (>= the zero point) only saturates at 127. */
static inline int8_t sqd_out(bin_out o, int32_t x, int32_t y) {
    const int32_t v = ((eedge_high_mul_small(sqd_twice_square(x, y), o.m) + o.half) >> o.r) + o.offset;
#if defined(EEDGE_USE_DSP)
    return (int8_t)__ssat(v, 8);
#else
    return (int8_t)(v > 127 ? 127 : v);
#endif
}

/* An offset input scaled, in the row loops' form. */
static inline int32_t sqd_scaled(int32_t v, int32_t m, int32_t r, int32_t half, int32_t neg) {
    return sqd_pack(bin_scale_sqd(v, m, r, half, neg));
}

BIN_ROW void sqdiff_row(const bin_ctx *c, const int8_t *a, int32_t sa, const int8_t *b,
                        int32_t sb, int8_t *out, int32_t n) {
    const bin_out o = c->out;
    const int32_t off1 = c->off1, m1 = c->m1, r1 = c->r1, half1 = c->half1, neg1 = c->neg1;
    const int32_t off2 = c->off2, m2 = c->m2, r2 = c->r2, half2 = c->half2, neg2 = c->neg2;
    const int32_t *l1 = c->lut1 != 0 ? c->lut1 + 128 : 0;
    const int32_t *l2 = c->lut2 != 0 ? c->lut2 + 128 : 0;
    int32_t i = 0;
    if (sb == 0) {   /* one second value per row (x - mean): scale it once */
        const int32_t y = sqd_scaled((int32_t)*b + off2, m2, r2, half2, neg2);
        if (l1 != 0 && sa == 1) {
            for (; i + 4 <= n; i += 4) {   /* four per iteration: the loop test amortised */
                out[i] = sqd_out(o, l1[a[i]], y);
                out[i + 1] = sqd_out(o, l1[a[i + 1]], y);
                out[i + 2] = sqd_out(o, l1[a[i + 2]], y);
                out[i + 3] = sqd_out(o, l1[a[i + 3]], y);
            }
            for (; i < n; ++i) {
                out[i] = sqd_out(o, l1[a[i]], y);
            }
            return;
        }
        for (; i < n; ++i) {
            const int32_t x = l1 != 0 ? l1[*a] : sqd_scaled((int32_t)*a + off1, m1, r1, half1,
                                                            neg1);
            out[i] = sqd_out(o, x, y);
            a += sa;
        }
        return;
    }
    if (l1 != 0 && l2 != 0) {
        if (sa == 1 && sb == 1) {
            for (; i < n; ++i) {
                out[i] = sqd_out(o, l1[a[i]], l2[b[i]]);
            }
            return;
        }
        for (; i < n; ++i) {
            out[i] = sqd_out(o, l1[*a], l2[*b]);
            a += sa;
            b += sb;
        }
        return;
    }
    for (; i < n; ++i) {
        out[i] = sqd_out(o, sqd_scaled((int32_t)*a + off1, m1, r1, half1, neg1),
                         sqd_scaled((int32_t)*b + off2, m2, r2, half2, neg2));
        a += sa;
        b += sb;
    }
}

static void bin_setup(const eedge_binary_bcast_params *p, bin_ctx *c) {
    const int32_t sub = p->op == EEDGE_BINARY_SUB;
    c->off1 = p->in1_offset;
    c->off2 = p->in2_offset;
    c->m1 = p->m1;
    c->r1 = p->r1;
    c->m2 = p->m2;
    c->r2 = p->r2;
    c->out.m = p->m_out;
    c->out.l2 = p->l_out + 1;
    c->out.r = p->r_out;
    c->out.offset = p->out_offset;
    c->out.low = p->act_min;
    c->out.high = p->act_max;
    bin_shift_constants(p->r1, &c->half1, &c->neg1);
    bin_shift_constants(p->r2, &c->half2, &c->neg2);
    bin_shift_constants(p->r_out, &c->out.half, &c->out.neg);
    c->lut1 = c->lut2 = 0;
    if (p->lut != 0 && p->op == EEDGE_BINARY_SQUARED_DIFFERENCE) {
        /* the second operand's table only when rows walk it (not for x - row mean) */
        const int32_t both = p->b_step[p->rank - 1] != 0;
        int32_t v;
        for (v = -128; v < 128; ++v) {
            p->lut[v + 128] = sqd_scaled(v + c->off1, c->m1, c->r1, c->half1, c->neg1);
            if (both) {
                p->lut[v + 384] = sqd_scaled(v + c->off2, c->m2, c->r2, c->half2, c->neg2);
            }
        }
        c->lut1 = p->lut;
        c->lut2 = both ? p->lut + 256 : 0;
    }
    if (p->lut != 0 && (sub || p->op == EEDGE_BINARY_ADD)) {
        int32_t v;
        for (v = -128; v < 128; ++v) {
            const int32_t y = 2 * bin_scale_in(v + c->off2, c->m2, c->r2, c->half2, c->neg2);
            p->lut[v + 128] = 2 * bin_scale_in(v + c->off1, c->m1, c->r1, c->half1, c->neg1);
            p->lut[v + 384] = sub ? -y : y;
        }
        c->lut1 = p->lut;
        c->lut2 = p->lut + 256;
    }
}

static void bin_row(const eedge_binary_bcast_params *p, const bin_ctx *c, const int8_t *a,
                    int32_t sa, const int8_t *b, int32_t sb, int8_t *out, int32_t n) {
    switch (p->op) {
    case EEDGE_BINARY_ADD:
    case EEDGE_BINARY_SUB:
        addsub_row(c, p->op == EEDGE_BINARY_SUB, a, sa, b, sb, out, n);
        break;
    case EEDGE_BINARY_MUL:
        mul_row(c, a, sa, b, sb, out, n);
        break;
    case EEDGE_BINARY_SQUARED_DIFFERENCE:
        sqdiff_row(c, a, sa, b, sb, out, n);
        break;
    default:
        minmax_row(p->op == EEDGE_BINARY_MAXIMUM, a, sa, b, sb, out, n);
        break;
    }
}

void eedge_binary_s8(const eedge_binary_bcast_params *p, const int8_t *a, const int8_t *b,
                     int8_t *out) {
    int32_t index[EEDGE_BINARY_MAX_RANK] = {0};
    const int32_t inner = p->rank - 1;
    const int32_t n = p->dims[inner];
    int32_t rows = 1;
    int32_t level, row;
    bin_ctx c;
    bin_setup(p, &c);
    for (level = 0; level < inner; ++level) {
        rows *= p->dims[level];
    }
    for (row = 0; row < rows; ++row) {
        bin_row(p, &c, a, p->a_step[inner], b, p->b_step[inner], out, n);
        out += n;
        for (level = inner - 1; level >= 0; --level) {   /* odometer over the outer levels */
            a += p->a_step[level];
            b += p->b_step[level];
            if (++index[level] < p->dims[level]) {
                break;
            }
            index[level] = 0;
            a -= p->a_step[level] * p->dims[level];
            b -= p->b_step[level] * p->dims[level];
        }
    }
}
