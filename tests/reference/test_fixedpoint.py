"""TFLite's fixed-point primitives against a plain big-integer model of the C code."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from eedge.reference.fixedpoint import (multiply_by_quantized_multiplier, quantize_multiplier,
                                        rdbpot, round_half_away, round_half_away_f32, srdhm,
                                        trunc_div, wrap_int32)

INT32 = st.integers(-(1 << 31), (1 << 31) - 1)


def c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def model_srdhm(a: int, b: int) -> int:
    if a == b == -(1 << 31):
        return (1 << 31) - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return c_div(ab + nudge, 1 << 31)


def model_rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


@settings(max_examples=500, deadline=None)
@given(INT32, INT32)
def test_srdhm_matches_the_c_definition(a: int, b: int) -> None:
    assert int(srdhm(np.int64(a), np.int64(b))) == model_srdhm(a, b)


@settings(max_examples=500, deadline=None)
@given(INT32, st.integers(0, 31))
def test_rdbpot_matches_the_c_definition(x: int, e: int) -> None:
    assert int(rdbpot(np.int64(x), e)) == model_rdbpot(x, e)


def test_known_values() -> None:
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(1e-12)[1] == -39 + 0 or quantize_multiplier(1e-12) == (0, 0)
    # rounding ties away from zero: 2.5 -> 3, -2.5 -> -3 (numpy would give 2 and -2)
    assert rdbpot(np.int64(5), 1) == 3 and rdbpot(np.int64(-5), 1) == -3
    assert list(round_half_away(np.array([0.5, 1.5, -0.5, -2.5]))) == [1, 2, -1, -3]
    assert list(round_half_away_f32(np.array([0.5, 2.5, -1.5], np.float32))) == [1, 3, -2]
    assert srdhm(np.int64(-(1 << 31)), -(1 << 31)) == (1 << 31) - 1
    assert list(trunc_div(np.array([-7, 7]), 2)) == [-3, 3]
    assert wrap_int32(np.int64(1 << 31)) == -(1 << 31)


@settings(max_examples=300, deadline=None)
@given(st.floats(1e-6, 100.0), st.integers(-(1 << 24), 1 << 24))
def test_quantized_multiplier_approximates_the_real_ratio(real: float, x: int) -> None:
    q, shift = quantize_multiplier(real)
    assert (1 << 30) <= q < (1 << 31)
    assert math.isclose(q * 2.0 ** (shift - 31), real, rel_tol=1e-9)
    got = int(multiply_by_quantized_multiplier(np.int64(x), q, shift))
    if abs(x * real) < (1 << 30):
        assert abs(got - x * real) <= 1.0 + abs(x * real) * 1e-9
