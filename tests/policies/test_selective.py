"""Risk–coverage metrics on hand-computed cases, and window-based deferral on synthetic scores."""

from __future__ import annotations

import numpy as np
import pytest

from eedge.errors import InputDataError
from eedge.policies.selective import (aurc, calibrate_window, coverage_at_risk,
                                      risk_at_coverage, risk_coverage, simulate)


def test_risk_coverage_and_aurc_by_hand() -> None:
    scores = np.array([0.6, 0.9, 0.7, 0.8])          # sorted: 0.9 0.8 0.7 0.6
    correct = np.array([False, True, True, False])   # sorted: T F T F
    curve = risk_coverage(scores, correct)
    assert curve.coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert curve.risk.tolist() == pytest.approx([0.0, 1 / 2, 1 / 3, 2 / 4])
    assert curve.thresholds.tolist() == [0.9, 0.8, 0.7, 0.6]
    assert aurc(scores, correct) == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    assert coverage_at_risk(scores, correct, 0.0) == (0.25, 0.9)
    assert coverage_at_risk(scores, correct, 0.34) == (0.75, 0.7)
    assert coverage_at_risk(scores, correct, 0.5) == (1.0, 0.6)
    assert risk_at_coverage(scores, correct, 0.6) == (pytest.approx(1 / 3), 0.7)


def test_tied_scores_are_accepted_together() -> None:
    scores = np.array([0.9, 0.9, 0.5])
    correct = np.array([True, False, True])
    curve = risk_coverage(scores, correct)
    assert curve.coverage.tolist() == pytest.approx([2 / 3, 1.0])
    assert curve.risk.tolist() == pytest.approx([1 / 2, 1 / 3])
    assert aurc(scores, correct) == pytest.approx(2 / 3 * 1 / 2 + 1 / 3 * 1 / 3)
    assert coverage_at_risk(scores, correct, 0.4) == (1.0, 0.5)
    assert coverage_at_risk(scores, correct, 0.0) == (0.0, None)  # only "reject all" is safe


def test_aurc_without_ties_is_the_mean_risk_of_the_top_i() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(300)
    correct = rng.random(300) < scores   # confident samples are more often right
    order = np.argsort(-scores)
    brute = np.mean([np.mean(~correct[order[: i + 1]]) for i in range(300)])
    assert aurc(scores, correct) == pytest.approx(brute, abs=1e-12)
    assert aurc(scores, correct) < aurc(rng.random(300), correct)  # a better ranking wins


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InputDataError, match="no samples"):
        aurc(np.zeros(0), np.zeros(0, bool))
    with pytest.raises(InputDataError, match="scores for"):
        aurc(np.zeros(3), np.zeros(2, bool))
    with pytest.raises(InputDataError, match="finite"):
        aurc(np.array([np.nan, 1.0]), np.ones(2, bool))


def test_simulate_by_hand() -> None:
    s0 = np.array([0.95, 0.10, 0.50, 0.60])
    s1 = np.array([0.99, 0.99, 0.30, 0.80])
    c0 = np.array([True, False, False, False])
    c1 = np.array([True, True, False, True])
    # exit0: accept >= 0.9, reject < 0.2; final: tau = 0.5
    out = simulate([s0, s1], [c0, c1], [0.2, 0.5], [0.9, None], [10.0, 30.0])
    assert out.exit_index.tolist() == [0, 0, 1, 1]
    assert out.accepted.tolist() == [True, False, False, True]
    assert out.correct.tolist() == [True, False, False, True]
    assert out.coverage == 0.5 and out.risk == 0.0 and out.accuracy == 0.5
    assert out.expected_cost == pytest.approx((10 + 10 + 30 + 30) / 4)
    assert out.exit_rates() == [0.5, 0.5]


def _synthetic(n: int = 600, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two exits whose confidence predicts correctness; the second is more accurate."""
    rng = np.random.default_rng(seed)
    hard = rng.random(n)
    c0 = rng.random(n) > 0.6 * hard
    c1 = rng.random(n) > 0.3 * hard
    s0 = np.clip(1 - hard + 0.15 * rng.standard_normal(n), 0, 1)
    s1 = np.clip(1 - hard + 0.08 * rng.standard_normal(n), 0, 1)
    return [s0, s1], [c0, c1]


def test_calibrated_window_meets_the_risk_target_for_less_cost() -> None:
    scores, correct = _synthetic()
    costs = [1.0, 4.0]
    result = calibrate_window(scores, correct, costs, target_risk=0.05,
                              max_coverage_drop=0.02)
    final_cov, _ = coverage_at_risk(scores[1], correct[1], 0.05)
    assert result.chosen["risk"] <= 0.05
    assert result.chosen["coverage"] >= final_cov - 0.02
    assert result.chosen["expected_cost"] < 4.0          # samples leave at exit 0
    assert result.lows[-1] == result.tau and result.highs[-1] is None
    assert result.lows[0] is None or result.lows[0] <= result.tau
    assert result.highs[0] is None or result.highs[0] >= result.tau
    again = simulate(scores, correct, result.lows, result.highs, costs)
    assert again.summary() == result.chosen
    assert result.full["expected_cost"] == 4.0
    # a stricter coverage requirement can only cost as much or more
    strict = calibrate_window(scores, correct, costs, target_risk=0.05, max_coverage_drop=0.0)
    assert strict.chosen["expected_cost"] >= result.chosen["expected_cost"]


def test_calibrated_window_for_a_coverage_target() -> None:
    scores, correct = _synthetic(seed=1)
    result = calibrate_window(scores, correct, [1.0, 4.0], target_coverage=0.7,
                              max_risk_increase=0.01)
    final_risk, _ = risk_at_coverage(scores[1], correct[1], 0.7)
    assert result.chosen["coverage"] >= 0.7
    assert result.chosen["risk"] <= final_risk + 0.01
    assert result.chosen["expected_cost"] < 4.0


def test_unreachable_risk_is_one_clear_error() -> None:
    scores = [np.array([0.9, 0.8]), np.array([0.9, 0.8])]
    correct = [np.array([False, False]), np.array([False, True])]
    with pytest.raises(InputDataError, match="raise --risk"):
        calibrate_window(scores, correct, [1.0, 2.0], target_risk=0.1)
    with pytest.raises(InputDataError, match="exactly one"):
        calibrate_window(scores, correct, [1.0, 2.0])


def test_coordinate_descent_stays_feasible_and_exhaustive_is_no_worse(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from eedge.policies import selective

    rng = np.random.default_rng(3)
    hard = rng.random(500)
    correct = [rng.random(500) > f * hard for f in (0.7, 0.45, 0.25)]
    scores = [np.clip(1 - hard + s * rng.standard_normal(500), 0, 1) for s in (0.2, 0.1, 0.05)]
    costs = [1.0, 3.0, 9.0]
    monkeypatch.setattr(selective, "WINDOW_QUANTILES", 5)
    exhaustive = calibrate_window(scores, correct, costs, target_risk=0.05)
    monkeypatch.setattr(selective, "EXHAUSTIVE_LIMIT", 100)   # 36 x 36 combinations: descent
    descent = calibrate_window(scores, correct, costs, target_risk=0.05)
    reference, _ = coverage_at_risk(scores[-1], correct[-1], 0.05)
    for result in (exhaustive, descent):
        assert result.chosen["risk"] <= 0.05
        assert result.chosen["coverage"] >= reference - 0.01 - 1e-12
        assert result.chosen["expected_cost"] < 9.0
    assert exhaustive.chosen["expected_cost"] <= descent.chosen["expected_cost"]
    assert descent.evaluated < exhaustive.evaluated


def test_wilson_bound_by_hand_and_a_stricter_calibration() -> None:
    from eedge.policies.selective import risk_upper_bound

    # no error in 100 accepted samples, z = 2: (0 + 4/200 + 2 sqrt(4/40000)) / (1 + 4/100)
    assert float(risk_upper_bound(0.0, 100, 2.0)) == pytest.approx(0.04 / 1.04)
    assert float(risk_upper_bound(0.1, 50, 0.0)) == 0.1
    scores, correct = _synthetic(seed=2)
    plain = calibrate_window(scores, correct, [1.0, 4.0], target_risk=0.1)
    bounded = calibrate_window(scores, correct, [1.0, 4.0], target_risk=0.1, risk_z=2.0)
    n = len(scores[0])
    chosen = bounded.chosen
    assert float(risk_upper_bound(chosen["risk"], chosen["coverage"] * n, 2.0)) <= 0.1
    assert chosen["coverage"] <= plain.chosen["coverage"]
    assert coverage_at_risk(scores[1], correct[1], 0.1, z=2.0)[0] < \
        coverage_at_risk(scores[1], correct[1], 0.1)[0]
