"""Calibration, criteria and policies on the digits demo model and synthetic scores."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from eedge.errors import InputDataError  # noqa: E402
from eedge.examples.digits import load_digits_splits  # noqa: E402
from eedge.ir.bundle import Bundle  # noqa: E402
from eedge.policies.budget import BudgetController, run_budgeted  # noqa: E402
from eedge.policies.calibrate import calibrate  # noqa: E402
from eedge.policies.criteria import confidence  # noqa: E402
from eedge.policies.fixed_point import ENTROPY_LUT, int8_score, threshold_q  # noqa: E402
from eedge.runtime.cascade import Cascade  # noqa: E402


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Bundle, object]:
    """The demo model, trained briefly and exported with int8 stages."""
    import torch

    from eedge.examples.digits_model import build_model
    from eedge.export import export_torch
    from eedge.train.multi_exit import TrainConfig, seed_everything, train_multi_exit

    data = load_digits_splits(seed=0)
    seed_everything(0)
    model = build_model()
    train_multi_exit(model, data.x_train, data.y_train, TrainConfig(epochs=12, seed=0))
    out = tmp_path_factory.mktemp("digits") / "bundle"
    result = export_torch(model, data.x_val[:2], out, int8=True,
                          calibration=data.x_train[:128])
    del torch
    return result.bundle, data


def costs(bundle: Bundle) -> list[float]:
    return [float(e["cumulative_macs"]) for e in bundle.exits]


def test_criteria_scores() -> None:
    logits = np.array([[4.0, 0.0, 0.0], [1.0, 1.0, 1.0], [3.0, 3.0, -9.0]])
    assert confidence(logits, "max_softmax")[1] == pytest.approx(1 / 3)
    assert confidence(logits, "margin")[2] == pytest.approx(0.0, abs=1e-6)
    assert confidence(logits, "entropy")[1] == pytest.approx(0.0, abs=1e-9)
    assert confidence(logits, "entropy")[0] > 0.5
    assert ENTROPY_LUT[0] == 0 and ENTROPY_LUT.max() <= 1507
    q = np.array([[127, -128, -128], [-43, -43, -43]])
    assert int8_score(q, "max_softmax").tolist() == [127, -43]
    assert int8_score(q, "margin").tolist() == [255, 0]
    assert int8_score(q, "entropy")[0] > int8_score(q, "entropy")[1]
    assert threshold_q(0.5, criterion="max_softmax") == 0
    assert threshold_q(0.5, criterion="margin") == 128
    assert threshold_q(None) > 10**6 and threshold_q(0.2, final=True) < -10**6


@pytest.mark.parametrize("criterion", ["max_softmax", "margin", "entropy"])
def test_per_exit_thresholds_beat_one_global_threshold(digits, criterion: str) -> None:  # type: ignore[no-untyped-def]
    bundle, data = digits
    result = calibrate(bundle, data.x_val, data.y_val, "max_accuracy_drop", 0.01, costs(bundle),
                       "MACs", criterion)
    assert result.best_global is not None
    assert result.chosen.cost <= result.best_global.cost + 1e-9
    assert result.chosen.accuracy >= result.final_accuracy - 0.01
    assert result.chosen.cost < costs(bundle)[-1]
    # the front is monotone: more cost buys more accuracy
    front = [(p.cost, p.accuracy) for p in result.pareto]
    assert all(a[0] <= b[0] and a[1] < b[1] for a, b in zip(front, front[1:]))


def test_mac_budget_and_unmeetable_budget(digits) -> None:  # type: ignore[no-untyped-def]
    bundle, data = digits
    budget = 0.3 * costs(bundle)[-1]
    result = calibrate(bundle, data.x_val, data.y_val, "budget", budget, costs(bundle), "MACs")
    assert result.chosen.cost <= budget
    with pytest.raises(InputDataError, match="cheapest possible"):
        calibrate(bundle, data.x_val, data.y_val, "budget", costs(bundle)[0] / 2, costs(bundle),
                  "MACs")


def test_int8_calibration_uses_device_scores(digits) -> None:  # type: ignore[no-untyped-def]
    bundle, data = digits
    result = calibrate(bundle, data.x_val, data.y_val, "max_accuracy_drop", 0.02,
                       costs(bundle), "MACs", "margin", runtime="int8-reference")
    cascade = Cascade(bundle, runtime="int8-reference")
    cascade.set_policy(criterion="margin")
    cascade.set_thresholds(result.chosen.thresholds)
    decided = cascade.infer(data.x_val)
    rates = [float(np.mean(decided.exit_index == k)) for k in range(3)]
    assert rates == pytest.approx(result.chosen.exit_rates)
    assert float(np.mean(decided.predictions == data.y_val)) == pytest.approx(
        result.chosen.accuracy)


def test_empty_and_single_class_data(digits) -> None:  # type: ignore[no-untyped-def]
    bundle, data = digits
    with pytest.raises(InputDataError, match="empty"):
        calibrate(bundle, data.x_val[:0], data.y_val[:0], "max_accuracy_drop", 0.01,
                  costs(bundle), "MACs")
    ones = data.y_val == 1
    result = calibrate(bundle, data.x_val[ones], data.y_val[ones], "max_accuracy_drop", 0.05,
                       costs(bundle), "MACs")
    assert 0.0 <= result.chosen.accuracy <= 1.0


def test_window_policy_rejects_uncertain_samples(digits) -> None:  # type: ignore[no-untyped-def]
    bundle, data = digits
    cascade = Cascade(bundle)
    cascade.set_thresholds([0.9, 0.9, None])
    plain = cascade.infer(data.x_test)
    cascade.set_policy(window_low=[0.5, 0.5, None])
    windowed = cascade.infer(data.x_test)
    assert windowed.rejected.any() and not plain.rejected.any()
    scores0 = confidence(cascade.run_all_exits(data.x_test)[0])
    assert np.all(windowed.exit_index[scores0 < 0.5] == 0)
    assert np.all(windowed.rejected[scores0 < 0.5])
    # rejected samples stop early, so the windowed cascade never costs more
    assert np.all(windowed.exit_index <= plain.exit_index)


def test_budget_policy_tracks_the_budget(digits) -> None:  # type: ignore[no-untyped-def]
    bundle, data = digits
    cascade = Cascade(bundle)
    cascade.set_thresholds([0.9, 0.9, None])
    for fraction in (0.25, 0.5):
        budget = fraction * costs(bundle)[-1]
        run = run_budgeted(cascade, data.x_test, BudgetController(budget, costs(bundle)))
        assert abs(run.average_cost - budget) / budget < 0.15, (fraction, run.average_cost)
    assert cascade.thresholds == [0.9, 0.9, None]  # restored
    with pytest.raises(InputDataError, match="cannot be met"):
        BudgetController(costs(bundle)[0] / 2, costs(bundle))


def test_calibrate_and_evaluate_cli(digits, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from cli_runner import run_cli

    from eedge.ir.bundle import load_bundle

    bundle, data = digits
    copy = tmp_path / "b"
    shutil.copytree(bundle.path, copy)
    np.savez(tmp_path / "val.npz", x=data.x_val, y=data.y_val)
    np.savez(tmp_path / "test.npz", x=data.x_test, y=data.y_test)

    def cli(*args: str) -> tuple[int, str, str]:
        return run_cli(capsys, *args)

    code, out, err = cli("calibrate", str(copy), "--data", str(tmp_path / "val.npz"),
                         "--max-accuracy-drop", "0.01", "--criterion", "entropy", "--plot",
                         str(tmp_path / "c.png"))
    assert code == 0, err
    assert "Pareto front" in out and (tmp_path / "c.png").stat().st_size > 1000
    manifest = load_bundle(copy).manifest
    assert manifest["exits"][0]["policy"]["criterion"] == "entropy"
    assert manifest["calibration"]["objective"] == "max_accuracy_drop"
    code, out, err = cli("evaluate", str(copy), "--data", str(tmp_path / "test.npz"), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert all(0 <= e["ece"] <= 1 for e in report["exits"])
    assert report["expected_macs"] < report["full_macs"]
    code, _, err = cli("calibrate", str(copy), "--data", str(tmp_path / "val.npz"))
    assert code == 5 and "exactly one" in err
    code, _, err = cli("calibrate", str(copy), "--data", str(tmp_path / "val.npz"),
                       "--budget-ms", "1")
    assert code == 5 and "--profile" in err
    np.savez(tmp_path / "bad.npz", x=data.x_val, y=data.y_val[:5])
    code, _, err = cli("calibrate", str(copy), "--data", str(tmp_path / "bad.npz"),
                       "--max-accuracy-drop", "0.01")
    assert code == 5 and "labels" in err
