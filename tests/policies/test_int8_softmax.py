"""The exp-table int8 softmax gives softmax_s8's bytes (TFLite's arithmetic), row by row and
batched, for every int8 row of two classes and random rows of many widths and scales."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from eedge.policies.fixed_point import int8_probabilities
from eedge.policies.int8_softmax import MAX_COLS, ExpTable, exp_table, row_scale
from eedge.reference.fixedpoint import one_over_one_plus_x
from eedge.reference.int8_kernels import softmax_s8

# logit scales of real exits and the extremes: tiny (everything within diff_min), large
# (most distances below diff_min), and scales whose multiplier rounds up to a new shift
SCALES = (0.0021, 0.0113, 0.0625, 0.0849, 0.1, 0.2371, 0.5, 1.0, 2.5, 7.9)


@pytest.mark.parametrize("scale", SCALES)
def test_every_two_class_row(scale: float) -> None:
    rows = np.array(list(itertools.product(range(-128, 128), repeat=2)), np.int8)
    expected = softmax_s8(rows, scale)
    table = ExpTable(scale)
    assert np.array_equal(table.probabilities(rows), expected)
    assert np.array_equal(np.array([table.row(r) for r in rows[::7].tolist()], np.int8),
                          expected[::7])


@pytest.mark.parametrize("scale", SCALES)
def test_random_and_edge_rows(scale: float) -> None:
    rng = np.random.default_rng(int(scale * 1000))
    table = exp_table(scale)
    for cols in (1, 3, 10, 37, 257, 1000):
        rows = rng.integers(-128, 128, (300, cols)).astype(np.int8)
        # near-ties and spikes, where the reciprocal's rounding decides
        rows[:50] = np.clip(rng.integers(120, 128, (50, cols)), -128, 127)
        rows[50] = 127
        rows[51] = -128
        rows[52] = -128
        rows[52, cols // 2] = 127
        expected = softmax_s8(rows, scale)
        assert np.array_equal(table.probabilities(rows), expected), cols
        assert np.array_equal(table.probabilities(rows.reshape(2, 150, cols)),
                              expected.reshape(2, 150, cols))
        assert np.array_equal(np.array([table.row(r) for r in rows.tolist()], np.int8),
                              expected), cols
        assert np.array_equal(int8_probabilities(rows, scale), expected)


def test_reciprocal_equals_the_reference_for_every_reachable_sum() -> None:
    rng = np.random.default_rng(0)
    totals = np.concatenate([np.arange(1 << 19, (1 << 19) + 5000),
                             rng.integers(1 << 19, MAX_COLS << 19, 20000)])
    for total in totals.tolist():
        if total % 997 == 0:  # computed, not only looked up
            row_scale.cache_clear()
        reciprocal, exponent = row_scale(total)
        headroom = 32 - total.bit_length()
        shifted = ((total << headroom) & 0xFFFFFFFF) - (1 << 31)
        assert reciprocal == int(one_over_one_plus_x(np.array([shifted]))[0])
        assert exponent == 35 - headroom


def test_wide_rows_and_empty_batches_use_the_reference() -> None:
    rng = np.random.default_rng(1)
    wide = rng.integers(-128, 128, (2, MAX_COLS + 1)).astype(np.int8)
    assert np.array_equal(exp_table(0.1).probabilities(wide), softmax_s8(wide, 0.1))
    empty = np.zeros((0, 10), np.int8)
    assert exp_table(0.1).probabilities(empty).shape == (0, 10)
