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

void eedge_softmax_s8(const eedge_softmax_params *p, const int8_t *input, int8_t *output) {
    int32_t r, i;
    for (r = 0; r < p->rows; ++r) {
        const int8_t *in = input + r * p->cols;
        int8_t *out = output + r * p->cols;
        int32_t max_value = -128;
        int32_t sum = 0;
        int32_t headroom, shifted, reciprocal, exponent;
        for (i = 0; i < p->cols; ++i) {
            max_value = in[i] > max_value ? in[i] : max_value;
        }
        for (i = 0; i < p->cols; ++i) {
            const int32_t diff = in[i] - max_value;
            if (diff >= p->diff_min) {
                const int32_t scaled = eedge_srdhm(
                    (int32_t)((uint32_t)diff << p->input_shift), p->input_multiplier);
                sum += eedge_rdbpot(exp_on_negative_values(scaled), 12);
            }
        }
        headroom = leading_zeros((uint32_t)sum);
        shifted = (int32_t)(((uint32_t)sum << headroom) - 0x80000000u);
        reciprocal = one_over_one_plus_x(shifted);
        exponent = (12 - headroom) + 31 - 8;
        for (i = 0; i < p->cols; ++i) {
            const int32_t diff = in[i] - max_value;
            if (diff >= p->diff_min) {
                const int32_t scaled = eedge_srdhm(
                    (int32_t)((uint32_t)diff << p->input_shift), p->input_multiplier);
                const int32_t prob = eedge_rdbpot(
                    eedge_srdhm(reciprocal, exp_on_negative_values(scaled)), exponent) - 128;
                out[i] = (int8_t)eedge_clamp(prob, -128, 127);
            } else {
                out[i] = -128;
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

int32_t eedge_exit_score_s8(const eedge_softmax_params *p, const int8_t *logits,
                            int32_t criterion, const uint16_t *entropy_lut) {
    int8_t probabilities[EEDGE_MAX_CLASSES];
    eedge_softmax_params one_row = *p;
    int32_t i, first = -128, second = -128, entropy = 0;
    one_row.rows = 1;
    if (p->cols > EEDGE_MAX_CLASSES || p->cols < 1) {
        return INT32_MIN;
    }
    eedge_softmax_s8(&one_row, logits, probabilities);
    for (i = 0; i < p->cols; ++i) {
        const int32_t q = probabilities[i];
        if (q > first) {
            second = first;
            first = q;
        } else if (q > second) {
            second = q;
        }
        if (criterion == EEDGE_CRITERION_ENTROPY && entropy_lut != 0) {
            entropy += entropy_lut[q + 128];
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
