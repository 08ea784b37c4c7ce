"""The latency prediction on synthetic timing distributions, against exact arithmetic and
brute-force enumeration of every (path, pass, overhead) combination."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from eedge.errors import InputDataError
from eedge.profiling.cascade_timing import CascadeTiming
from eedge.profiling.prediction import (compare, distribution, end_to_end, path_overheads,
                                        predict_batch, predict_batch1)


def test_constant_timings_give_exact_paths() -> None:
    """Constant stage and overhead times: every quantile is one path's exact cost."""
    stages = [[1.0] * 5, [2.0] * 5, [4.0] * 5]
    overhead = [[0.1] * 3, [0.2] * 3, [0.3] * 3]
    p = predict_batch1(stages, overhead, [0.6, 0.3, 0.1], [0, 1, 2])
    paths = [1.1, 3.2, 7.3]
    assert p["mean"] == pytest.approx(0.6 * 1.1 + 0.3 * 3.2 + 0.1 * 7.3)
    assert p["p50"] == pytest.approx(1.1)          # 60% leave at exit 0
    assert p["p90"] in (pytest.approx(3.2), pytest.approx(7.3))
    assert p["p99"] == pytest.approx(7.3)
    assert p["overhead_ms"] == pytest.approx(0.6 * 0.1 + 0.3 * 0.2 + 0.1 * 0.3)
    assert p["stages_per_sample"] == pytest.approx(0.6 + 0.6 + 0.3)
    assert p["overhead_per_stage_us"] == pytest.approx(1e3 * p["overhead_ms"] / 1.5)
    assert p["mean"] == pytest.approx(p["stages_ms"] + p["overhead_ms"])
    assert min(paths) <= p["p50"] <= max(paths)


def test_tail_matches_brute_force_enumeration() -> None:
    """Heavy-tailed stage times: the resampled quantiles are those of the exact mixture
    of (stage pass, overhead) pairs timed at the same moment (a pass and an overhead
    sample are paired for the share of the run their time slots overlap)."""
    rng = np.random.default_rng(3)
    passes = 40
    stages = [list(rng.exponential(1.0, passes) + 1), list(rng.pareto(2.5, passes) + 2)]
    overhead = [list(rng.exponential(0.2, 30)), list(rng.exponential(0.3, 30))]
    rates = [0.7, 0.3]
    p = predict_batch1(stages, overhead, rates, [0, 1], draws=400_000)
    cumulative = np.cumsum(np.asarray(stages), axis=0)
    values, weights = [], []
    for path, rate in enumerate(rates):
        count = len(overhead[path])
        for j, i in itertools.product(range(passes), range(count)):
            overlap = min((j + 1) / passes, (i + 1) / count) - max(j / passes, i / count)
            if overlap > 0:
                values.append(cumulative[path, j] + overhead[path][i])
                weights.append(rate * overlap)
    order = np.argsort(values)
    cdf = np.cumsum(np.asarray(weights)[order])
    exact = {k: float(np.asarray(values)[order][np.searchsorted(cdf, q / 100)])
             for k, q in (("p50", 50), ("p90", 90), ("p99", 99))}
    mean = sum(r * (np.mean(cumulative[k]) + np.mean(overhead[k])) for k, r in enumerate(rates))
    assert p["mean"] == pytest.approx(mean)
    for key, value in exact.items():
        assert p[key] == pytest.approx(value, rel=0.03), key


def test_overhead_is_paired_with_the_pass_timed_at_the_same_moment() -> None:
    """The machine was slow in the second half of the run: stage pass and overhead are
    both slow there, and a draw never pairs a slow pass with a fast overhead."""
    stages = [[1.0, 1.0, 10.0, 10.0]]
    p = predict_batch1(stages, [[0.0, 0.0, 5.0, 5.0, 5.0, 5.0][:4]], [1.0], [0],
                       draws=10_000)
    assert {round(p[k], 6) for k in ("p50", "p90", "p99")} <= {1.0, 15.0}
    assert p["p90"] == 15.0


def test_passes_stay_correlated() -> None:
    """A slow pass slows every stage of that pass: its sum is drawn, not independent parts."""
    stages = [[1.0, 10.0], [1.0, 10.0]]  # pass 1 is slow in both stages
    p = predict_batch1(stages, [[0.0], [0.0]], [0.0, 1.0], [0, 1], draws=10_000)
    draws_seen = {round(v, 6) for v in (p["p50"], p["p90"], p["p99"])}
    assert draws_seen <= {2.0, 20.0}  # never 11 (a fast and a slow stage together)


def test_unforced_exit_borrows_the_next_deeper_overhead() -> None:
    borrowed = path_overheads([[], [0.5, 0.7], []])
    assert borrowed[0].tolist() == [0.5, 0.7] and borrowed[2].tolist() == [0.5, 0.7]
    with pytest.raises(InputDataError, match="could be timed"):
        path_overheads([[], []])


def test_batch_prediction_interpolates_rows() -> None:
    """Everyone leaves at exit 0: a batch costs stage 0 at full batch plus its overhead."""
    ones, full = [[1.0] * 4, [5.0] * 4], [[3.0] * 4, [9.0] * 4]
    p = predict_batch(ones, full, [[0.4] * 2, [0.8] * 2], [1.0, 0.0], [0, 1], batch=4)
    assert p["mean"] == pytest.approx((3.0 + 0.4) / 4)
    # half reach stage 1 on average; with exactly 2 of 4 rows, stage 1 costs 5 + 4 * 1/3
    q = predict_batch(ones, full, [[0.0], [0.0]], [0.5, 0.5], [0, 1], batch=4, draws=20_000)
    assert 3.0 / 4 < q["mean"] < (3.0 + 9.0) / 4
    assert q["p99"] == pytest.approx((3.0 + 9.0) / 4)  # all four rows went on


def test_batch_overhead_grows_with_the_rows_that_go_on() -> None:
    """A batch pays exit 0's overhead, plus each later exit's extra cost scaled between its
    2-row and B-row values by the rows reaching it (1 row costs what 2 do): not the whole
    batch forced to the deepest row's exit."""
    zeros = [[0.0] * 4, [0.0] * 4]
    overhead_b, overhead_2 = [[1.0], [3.0]], [[0.5], [1.5]]
    p = predict_batch(zeros, zeros, overhead_b, [0.5, 0.5], [0, 1], batch=4, draws=40_000,
                      overhead_pair_ms=overhead_2)
    extra = {0: 0.0, 1: 1.0, 2: 1.0, 3: 1.5, 4: 2.0}  # 1.0 at 1-2 rows, 2.0 at 4
    per_rows = {r: (1.0 + extra[r]) / 4 for r in range(5)}
    expected_mean = sum(per_rows[r] * math.comb(4, r) / 16 for r in range(5))
    assert p["mean"] == pytest.approx(expected_mean, rel=0.02)
    assert p["p99"] == pytest.approx(per_rows[4])  # all four went on: the forced figure
    assert p["p50"] == pytest.approx(per_rows[2])
    # without the 2-row figures every batch a row goes on in pays the forced increment
    q = predict_batch(zeros, zeros, overhead_b, [0.5, 0.5], [0, 1], batch=4, draws=40_000)
    assert q["p50"] == pytest.approx(per_rows[4])


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InputDataError, match="sum to 1"):
        predict_batch1([[1.0]], [[0.1]], [0.5], [0])
    with pytest.raises(InputDataError, match="one exit rate"):
        predict_batch1([[1.0]], [[0.1]], [0.5, 0.5], [0])
    with pytest.raises(InputDataError, match="batch"):
        predict_batch([[1.0]], [[1.0]], [[0.1]], [1.0], [0], batch=1)


def test_end_to_end_uses_the_streams_exit_rates_and_reports_rounds() -> None:
    timing = CascadeTiming(
        batch=2, stage_ms=[[1.0, 1.0, 1.2, 1.2], [2.0, 2.0, 2.2, 2.2]],
        overhead_ms=[[0.1, 0.1], [0.2, 0.2]], measured_ms=[1.1, 3.2, 1.3, 3.6],
        exit_index=[0, 1, 0, 1], stage_batch_ms=[[1.5, 1.5], [3.0, 3.0]],
        overhead_batch_ms=[[0.2], [0.3]], measured_batch_ms=[4.0, 4.4], rounds=2,
        stage_round_sizes=[2, 2], overhead_round_sizes=[1, 1])
    report = end_to_end(timing.to_json(), [0, 1])
    assert report["exit_rates"] == [0.5, 0.5]
    assert report["batch1"]["measured"] == distribution([1.1, 3.2, 1.3, 3.6])
    assert report["batch1"]["predicted"]["mean"] == pytest.approx(
        0.5 * (1.1 + 0.1) + 0.5 * (1.1 + 2.1 + 0.2))
    assert set(report["batch1"]["ratio"]) == {"mean", "p50", "p90", "p99"}
    assert report["overhead"]["overhead_ms"] == pytest.approx(0.15)
    assert "batch2" in report and report["batch2"]["measured"]["mean"] == pytest.approx(2.1)
    first = timing.round(0)
    assert first.stage_ms == [[1.0, 1.0], [2.0, 2.0]] and first.measured_ms == [1.1, 3.2]
    assert first.overhead_ms == [[0.1], [0.2]]
    assert compare({"mean": 2.0}, {"mean": 4.0, "p50": 1.0}) == {"mean": 0.5}
