"""TFLite's integer arithmetic, vectorised in numpy and exact to the bit.

These are the primitives of TFLite Micro's reference kernels in their
default "double rounding" form: a Q31 multiplier and a shift per scale
ratio, a saturating rounding doubling high multiply, and a rounding right
shift that breaks ties away from zero. C semantics matter and are emulated
explicitly: int32 wrap-around, truncating division, and ``std::round``
(halves away from zero, unlike numpy's round-half-to-even).

Arrays are int64 internally so products never overflow before we decide
how C would have wrapped them.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def round_half_away(values: np.ndarray | float) -> np.ndarray:
    """``std::round``: halves go away from zero (numpy rounds them to even)."""
    v = np.asarray(values, dtype=np.float64)
    return np.where(v >= 0, np.floor(v + 0.5), np.ceil(v - 0.5))


def round_half_away_f32(values: np.ndarray) -> np.ndarray:
    """``roundf`` on float32 values, exactly (no float64 detour for the .5 test)."""
    v = np.asarray(values, dtype=np.float32)
    r = np.trunc(v)
    return r + np.sign(v) * (np.abs(v - r) >= np.float32(0.5))


def wrap_int32(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.int64)
    return ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def trunc_div(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """C integer division (rounds toward zero)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """A double ratio -> (Q31 multiplier, shift); positive shift = left shift."""
    if real == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)
    q = int(round_half_away(mantissa * (1 << 31)))
    if q > (1 << 31):
        raise ValueError(f"multiplier {real} overflows")
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def srdhm(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul on int32 values."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    result = trunc_div(ab + nudge, 1 << 31)
    return np.where(overflow, INT32_MAX, result)


def rdbpot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """RoundingDivideByPOT: x / 2**exponent, ties away from zero."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(x: np.ndarray, multiplier: np.ndarray | int,
                                     shift: np.ndarray | int) -> np.ndarray:
    """MultiplyByQuantizedMultiplier (int32 input), the double-rounding form."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = wrap_int32(np.asarray(x, dtype=np.int64) << left)
    return rdbpot(srdhm(shifted, multiplier), right)


def saturating_shift_left(x: np.ndarray, k: int) -> np.ndarray:
    limit = (1 << (31 - k)) - 1
    return np.where(x > limit, INT32_MAX, np.where(x < -limit, INT32_MIN, x << k))


_EXP_OF_MINUS_POWERS = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                        (2, 39332535), (3, 720401), (4, 242))
"""exp(-2^k) in Q0.31: the barrel shifter's factors, one per bit of the input."""


def exp_on_negative_values(a: np.ndarray, integer_bits: int = 5) -> np.ndarray:
    """gemmlowp exp(x) for x <= 0 with ``integer_bits`` integer bits, result in Q0.31.

    Softmax and tanh call it on Q5.26 values, logistic on Q4.27; the integer
    bits move the quarter mask and decide how many barrel stages run.
    """
    a = np.asarray(a, dtype=np.int64)
    fractional = 31 - integer_bits
    quarter = 1 << (fractional - 2)
    t = (a & (quarter - 1)) - quarter
    x = (t << integer_bits) + (1 << 28)      # Q0.31 value + 1/8
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    u = rdbpot(srdhm(rdbpot(x4, 2) + x3, 715827883) + x2, 1)
    result = 1895147668 + srdhm(1895147668, x + u)
    remainder = t - a
    for exponent, multiplier in _EXP_OF_MINUS_POWERS:
        if exponent < integer_bits:
            bit = 1 << (fractional + exponent)
            result = np.where(remainder & bit, srdhm(result, multiplier), result)
    return np.where(a == 0, INT32_MAX, result)


def _reciprocal_of_one_plus_x(a: np.ndarray) -> np.ndarray:
    """gemmlowp's 1/(1+x) for x in [0, 1) in Q2.29 (Q0.31 in; three Newton steps)."""
    s = np.asarray(a, dtype=np.int64) + INT32_MAX
    half_denominator = trunc_div(s + np.where(s >= 0, 1, -1), 2)
    x = 1515870810 + srdhm(half_denominator, -1010580540)
    for _ in range(3):
        p = (1 << 29) - srdhm(half_denominator, x)
        x = x + saturating_shift_left(srdhm(x, p), 2)
    return x


def one_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    """gemmlowp 1/(1+x) for x in [0, 1): Q0.31 in, Q1.30 out (softmax, logistic)."""
    return saturating_shift_left(_reciprocal_of_one_plus_x(a), 1)


def one_minus_x_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    """gemmlowp (1 - x) / (1 + x) for x in [0, 1): Q0.31 in and out (tanh)."""
    return saturating_shift_left(_reciprocal_of_one_plus_x(a) - (1 << 29), 2)


def inv_sqrt_quantized_multiplier_exp(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's ``GetInvSqrtQuantizedMultiplierExp(x, kReverseShift)`` per element of ``values``.

    1/sqrt(x) for integers x >= 0 as (Q31 multiplier, left shift): the input is
    normalised to [2^27, 2^29) in steps of two bits, five gemmlowp Newton steps
    in Q3.28 from a first guess of 1, a multiply by sqrt(2)/2, and a negative
    right shift folded into the multiplier (an int32 shift that may wrap, as C's
    does). 0 and 1 both give (INT32_MAX, 0). RSQRT and L2 normalisation use it.
    """
    x = np.asarray(values, dtype=np.int64).copy()
    if np.any(x < 0):
        raise ValueError("inverse square root of a negative integer")
    small = x <= 1
    x = np.where(small, 2, x)
    shift = np.full(x.shape, 11, np.int64)
    while np.any(x >= (1 << 29)):
        big = x >= (1 << 29)
        x = np.where(big, x // 4, x)
        shift = shift + big
    leading_zeros = 32 - np.frexp(x.astype(np.float64))[1].astype(np.int64)   # of uint32 x
    pairs = (leading_zeros - 1) // 2 - 1
    shift = shift - pairs
    x = x << (2 * pairs)
    half_input = rdbpot(x >> 1, 1)            # Q3.28 input, halved
    half_three = (1 << 28) + (1 << 27)        # 1.5 in Q3.28
    guess = np.full(x.shape, 1 << 28, np.int64)
    for _ in range(5):
        cube = saturating_shift_left(srdhm(srdhm(guess, guess), guess), 6)   # Q9 -> Q3
        step = wrap_int32(srdhm(half_three, guess) - srdhm(half_input, cube))
        guess = saturating_shift_left(step, 3)                                # Q6 -> Q3
    guess = srdhm(guess, 1518500250)          # times sqrt(2)/2 (Q0.31)
    multiplier = np.where(shift < 0, wrap_int32(guess << np.maximum(-shift, 0)), guess)
    shift = np.maximum(shift, 0)
    return (np.where(small, INT32_MAX, multiplier), np.where(small, 0, -shift))
