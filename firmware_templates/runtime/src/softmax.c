/* int8 softmax with gemmlowp's fixed-point exp and reciprocal (TFLite's arithmetic),
 * and the exit decision built on it. Output scale 1/256, zero point -128. */
#include "eedge/fixedpoint.h"
#include "eedge/kernels.h"
#include "eedge/runtime.h"

static int32_t saturating_shl(int32_t x, int k) {
    const int32_t limit = (int32_t)(((int64_t)1 << (31 - k)) - 1);
    if (x > limit) {
        return INT32_MAX;
    }
    if (x < -limit) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << k);
}

/* exp(a) for a <= 0 given in Q5.26; result in Q0.31 */
static int32_t exp_on_negative_values(int32_t a) {
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308,
                                      39332535, 720401, 242};
    const int32_t quarter = 1 << 24;
    const int32_t t = (a & (quarter - 1)) - quarter;
    const int32_t x = (int32_t)((uint32_t)t << 5) + (1 << 28);
    const int32_t x2 = eedge_srdhm(x, x);
    const int32_t x3 = eedge_srdhm(x2, x);
    const int32_t x4 = eedge_srdhm(x2, x2);
    const int32_t u = eedge_rdbpot(eedge_srdhm(eedge_rdbpot(x4, 2) + x3, 715827883) + x2, 1);
    int32_t result = 1895147668 + eedge_srdhm(1895147668, x + u);
    const int32_t remainder = t - a;
    int k;
    for (k = 0; k < 7; ++k) {
        if (remainder & (1 << (24 + k))) {
            result = eedge_srdhm(result, barrel[k]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

static int32_t one_over_one_plus_x(int32_t a) {
    const int64_t s = (int64_t)a + INT32_MAX;
    const int32_t half = (int32_t)((s + (s >= 0 ? 1 : -1)) / 2);
    int32_t x = 1515870810 + eedge_srdhm(half, -1010580540);
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t p = (1 << 29) - eedge_srdhm(half, x);
        x = x + saturating_shl(eedge_srdhm(x, p), 2);
    }
    return saturating_shl(x, 1);
}

static int leading_zeros(uint32_t v) {
    int n = 0;
    if (v == 0) {
        return 32;
    }
    while (!(v & 0x80000000u)) {
        v <<= 1;
        ++n;
    }
    return n;
}

/* What every probability of one row needs: its largest logit, and the reciprocal of
 * the sum of exponentials with the exponent that scales it back to q. */
typedef struct {
    int32_t max_value, reciprocal, exponent;
} softmax_row;

static int32_t scaled_diff(const eedge_softmax_params *p, int32_t diff) {
    return eedge_srdhm((int32_t)((uint32_t)diff << p->input_shift), p->input_multiplier);
}

static int32_t row_max(const int8_t *in, int32_t cols) {
    int32_t max_value = -128, i;
    for (i = 0; i < cols; ++i) {
        max_value = in[i] > max_value ? in[i] : max_value;
    }
    return max_value;
}

/* the reciprocal and exponent of a row from its sum of exponentials (Q12.19) */
static void softmax_scale(uint32_t sum, int32_t max_value, softmax_row *row) {
    int32_t headroom, shifted;
    /* the largest logit adds exp(0) = 2^19, so sum > 0 unless it wrapped to exactly 0 */
    headroom = leading_zeros(sum);
    if (headroom > 31) {
        headroom = 31;
    }
    shifted = (int32_t)((sum << headroom) - 0x80000000u);
    row->max_value = max_value;
    row->reciprocal = one_over_one_plus_x(shifted);
    row->exponent = (12 - headroom) + 31 - 8;
}

static void softmax_prepare(const eedge_softmax_params *p, const int8_t *in, softmax_row *row) {
    const int32_t max_value = row_max(in, p->cols);
    int32_t i;
    uint32_t sum = 0; /* Q12.19 like TFLite's; unsigned, so 4096+ equal logits wrap, not UB */
    for (i = 0; i < p->cols; ++i) {
        const int32_t diff = in[i] - max_value;
        if (diff >= p->diff_min) {
            sum += (uint32_t)eedge_rdbpot(exp_on_negative_values(scaled_diff(p, diff)), 12);
        }
    }
    softmax_scale(sum, max_value, row);
}

/* q of one logit of a prepared row: probability (q + 128) / 256 */
static int32_t softmax_q(const eedge_softmax_params *p, const softmax_row *row, int32_t logit) {
    const int32_t diff = logit - row->max_value;
    int32_t prob;
    if (diff < p->diff_min || row->exponent > 31) {
        /* exponent > 31 (about 1000 near-equal logits): the rounded quotient is 0, as the
         * reference computes it; shifting an int32 by 32 or more would be undefined */
        return -128;
    }
    prob = eedge_rdbpot(eedge_srdhm(row->reciprocal, exp_on_negative_values(scaled_diff(p, diff))),
                        row->exponent) - 128;
    return eedge_clamp(prob, -128, 127);
}

void eedge_softmax_s8(const eedge_softmax_params *p, const int8_t *input, int8_t *output) {
    int32_t r, i;
    for (r = 0; r < p->rows; ++r) {
        const int8_t *in = input + r * p->cols;
        int8_t *out = output + r * p->cols;
        softmax_row row;
        softmax_prepare(p, in, &row);
        for (i = 0; i < p->cols; ++i) {
            out[i] = (int8_t)softmax_q(p, &row, in[i]);
        }
    }
}

/* The row's sum of exponentials from the exp table, each exp_table[max_value - logit]
 * rounded from Q0.31 to Q12 as gemmlowp's sum does: (e + 2^11) >> 12, in unsigned (e >= 0) */
static inline uint32_t lut_sum(const int32_t *exp_table, int32_t exp_count, const int8_t *in,
                               int32_t cols, int32_t max_value) {
    uint32_t sum = 0;
    int32_t i;
    for (i = 0; i < cols; ++i) {
        const int32_t d = max_value - in[i];
        sum += d < exp_count ? ((uint32_t)exp_table[d] + 2048u) >> 12 : 0u;
    }
    return sum;
}

/* exp_table[d] is exp of the logit max - d (Q0.31) as TFLite computes it, 0 where d is
 * below diff_min or the exponential is 0, and for d >= exp_count: a logit is int8, so its
 * distance to the row's maximum is 0..255 and the exponentials are known when the code is
 * generated. A zero exponential adds nothing to the sum and gives q = -128, what the
 * reference gives a logit below diff_min, so the bytes equal eedge_softmax_s8's while each
 * logit costs a lookup instead of gemmlowp's exp (about 150 instructions) twice. */
void eedge_softmax_lut_s8(const eedge_softmax_params *p, const int32_t *exp_table,
                          int32_t exp_count, const int8_t *input, int8_t *output) {
    const int32_t rows = p->rows, cols = p->cols;   /* locals: int8 stores may alias *p */
    int32_t r, i;
    for (r = 0; r < rows; ++r) {
        const int8_t *in = input + r * cols;
        int8_t *out = output + r * cols;
        const int32_t max_value = row_max(in, cols);
        softmax_row row;
        softmax_scale(lut_sum(exp_table, exp_count, in, cols, max_value), max_value, &row);
        if (row.exponent > 31) { /* see softmax_q: every quotient rounds to 0 */
            for (i = 0; i < cols; ++i) {
                out[i] = -128;
            }
            continue;
        }
        {
            /* reciprocal and exponentials are >= 0: the doubling high multiply cannot
             * saturate, and the rounding shift of v >= 0 by e (4 <= e <= 31) is
             * (v + 2^(e-1)) >> e, in unsigned */
            const int64_t reciprocal = row.reciprocal;
            const int32_t exponent = row.exponent;
            const uint32_t half = 1u << (exponent - 1);
            for (i = 0; i < cols; ++i) {
                const int32_t d = max_value - in[i];
                int32_t prob = -128;
                if (d < exp_count) {
                    const int32_t v = (int32_t)((reciprocal * exp_table[d] + (1 << 30)) >> 31);
                    prob = (int32_t)(((uint32_t)v + half) >> exponent) - 128;
                }
                out[i] = (int8_t)(prob > 127 ? 127 : prob);
            }
        }
    }
}

int32_t eedge_argmax_s8(const int8_t *logits, int32_t count) {
    int32_t best = 0, i;
    for (i = 1; i < count; ++i) {
        if (logits[i] > logits[best]) {
            best = i;
        }
    }
    return best;
}

/* q of the logit at distance d below the row's maximum, from the exp table, as
 * eedge_softmax_lut_s8 computes it (row.exponent <= 31) */
static int32_t lut_q(const softmax_row *row, const int32_t *exp_table, int32_t exp_count,
                     int32_t d) {
    int32_t v, prob;
    if (d >= exp_count) {
        return -128;
    }
    v = (int32_t)(((int64_t)row->reciprocal * exp_table[d] + (1 << 30)) >> 31);
    prob = (int32_t)(((uint32_t)v + (1u << (row->exponent - 1))) >> row->exponent) - 128;
    return prob > 127 ? 127 : prob;
}

/* The exit score from the generated exp table (see eedge_softmax_lut_s8): the bytes of
 * eedge_softmax_s8's q without gemmlowp's exp (two per logit, about 270 instructions: ad01's
 * 640 outputs cost 117k-175k instructions of exit score, a fifth of the inference). q is non-decreasing in
 * the logit, so max_softmax and margin need q of the two largest logits only. */
int32_t eedge_exit_score_s8(const eedge_softmax_params *p, const int32_t *exp_table,
                            int32_t exp_count, const int8_t *logits, int32_t criterion,
                            const uint16_t *entropy_lut) {
    const int32_t cols = p->cols;
    int32_t i, top1 = -128, top2 = -128, first, second, entropy = 0;
    softmax_row row;
    if (cols < 1) {
        return INT32_MIN;
    }
    for (i = 0; i < cols; ++i) { /* the two largest logits (equal ones both count) */
        const int32_t v = logits[i];
        if (v > top2) {
            top2 = v > top1 ? top1 : v;
            top1 = v > top1 ? v : top1;
        }
    }
    softmax_scale(lut_sum(exp_table, exp_count, logits, cols, top1), top1, &row);
    if (row.exponent > 31) { /* every quotient rounds to 0 (see softmax_q) */
        first = second = -128;
        if (criterion == EEDGE_CRITERION_ENTROPY && entropy_lut != 0) {
            entropy = cols * (int32_t)entropy_lut[0];
        }
    } else {
        first = lut_q(&row, exp_table, exp_count, 0);
        second = cols > 1 ? lut_q(&row, exp_table, exp_count, top1 - top2) : -128;
        if (criterion == EEDGE_CRITERION_ENTROPY && entropy_lut != 0) {
            for (i = 0; i < cols; ++i) {
                entropy += entropy_lut[lut_q(&row, exp_table, exp_count, top1 - logits[i]) + 128];
            }
        }
    }
    if (criterion == EEDGE_CRITERION_MARGIN) {
        return first - second;
    }
    if (criterion == EEDGE_CRITERION_ENTROPY) {
        return -entropy;
    }
    return first;
}
