"""Running-mean ensemble decisions: the float runtime against numpy, the integer rules by
hand, thresholds that map back to their integers, and the manifest switch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from scipy.special import softmax as scipy_softmax

sys.path.insert(0, str(Path(__file__).parents[1]))

from zoo import example_input  # noqa: E402

from eedge.errors import BundleError, InputDataError  # noqa: E402
from eedge.export import ExportResult  # noqa: E402
from eedge.ir.bundle import Bundle, load_bundle, update_manifest  # noqa: E402
from eedge.policies import running_mean  # noqa: E402
from eedge.policies.fixed_point import ENTROPY_LUT  # noqa: E402
from eedge.policies.thresholds import deciding_exits  # noqa: E402
from eedge.runtime.cascade import Cascade  # noqa: E402


def test_integer_scores_by_hand() -> None:
    sums = np.array([[10, 300, 200], [100, 100, 310]])   # two members: 0..510 per class
    assert running_mean.sum_score(sums, 2, "max_softmax").tolist() == [300, 310]
    assert running_mean.sum_score(sums, 2, "margin").tolist() == [100, 210]
    # entropy: the mean back on the 0..255 grid, rounded half up: 5, 150, 100 and 50, 50, 155
    expected = [-(ENTROPY_LUT[5] + ENTROPY_LUT[150] + ENTROPY_LUT[100]),
                -(2 * ENTROPY_LUT[50] + ENTROPY_LUT[155])]
    assert running_mean.sum_score(sums, 2, "entropy").tolist() == expected
    assert running_mean.sum_score(np.array([[7, 7]]), 1, "margin").tolist() == [0]  # a tie
    # one member: the single-exit thresholds shifted by 128 (max_softmax) or equal (margin)
    assert running_mean.sum_threshold_q(0.5, False, "max_softmax", 10, 1) == 128
    assert running_mean.sum_threshold_q(0.5, False, "max_softmax", 10, 3) == 384
    assert running_mean.sum_threshold_q(None, False, "margin", 10, 3) == 1 << 30
    assert running_mean.sum_threshold_q(0.5, True, "margin", 10, 3) == -(1 << 30)


@pytest.mark.parametrize("criterion", ["max_softmax", "margin", "entropy"])
def test_every_integer_score_has_a_float_threshold(criterion: str) -> None:
    classes = 10
    for members in (1, 2, 3, 7):
        top = 255 * members if criterion != "entropy" else 0
        low = 0 if criterion != "entropy" else -9000
        for q in range(low, top + 1, 1 if criterion != "entropy" else 7):
            t = running_mean.sum_float_threshold(q, criterion, classes, members)
            if 0.0 <= t <= 1.0:
                assert running_mean.sum_threshold_q(t, False, criterion, classes, members) == q


@pytest.fixture
def float_bundle(bundle_of: Callable[..., ExportResult]) -> Bundle:
    bundle = bundle_of("sequential").bundle
    return update_manifest(bundle, lambda m: running_mean.set_running_mean(m, True))


def test_float_cascade_decides_on_the_mean_of_softmaxes(float_bundle: Bundle) -> None:
    x = example_input(seed=4, batch=200, name="sequential")
    logits = Cascade(float_bundle, runtime="onnx").run_all_exits(x)
    means = [np.mean([scipy_softmax(lg.astype(np.float64), axis=-1) for lg in logits[: k + 1]],
                     axis=0) for k in range(3)]
    margins = [np.diff(np.sort(m, axis=-1)[:, -2:], axis=-1)[:, 0] for m in means]
    thresholds = [float(np.median(margins[0])), float(np.quantile(margins[1], 0.3)), None]
    low = float(np.quantile(margins[2], 0.2))   # the selective threshold at the last member

    def change(manifest: dict) -> None:
        for entry, t in zip(manifest["exits"], thresholds):
            entry["policy"] = {"criterion": "margin", "threshold": t}
        manifest["exits"][-1]["policy"]["window_low"] = low

    result = Cascade(update_manifest(float_bundle, change), runtime="onnx").infer(x)
    leaves = np.stack([margins[0] >= thresholds[0], margins[1] >= thresholds[1],
                       np.ones(len(x), bool)])
    exit_index = np.argmax(leaves, axis=0)
    rows = np.arange(len(x))
    assert np.array_equal(result.exit_index, exit_index)
    chosen = np.stack(means)[exit_index, rows]
    assert np.array_equal(result.predictions, chosen.argmax(-1))
    np.testing.assert_allclose(result.probabilities, chosen, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.confidence, np.stack(margins)[exit_index, rows],
                               rtol=1e-5, atol=1e-6)
    assert np.array_equal(result.rejected, (exit_index == 2) & (margins[2] < low))
    assert len(set(exit_index.tolist())) == 3 and result.rejected.any()


def test_calibrated_thresholds_reproduce_on_the_running_mean(float_bundle: Bundle) -> None:
    from eedge.policies.calibrate import calibrate

    x = example_input(seed=6, batch=160, name="sequential")
    classes = float_bundle.exits[0]["num_classes"]
    y = np.random.default_rng(0).integers(0, classes, len(x))
    costs = [float(e["cumulative_macs"]) for e in float_bundle.exits]
    result = calibrate(float_bundle, x, y, "budget", 0.6 * costs[-1], costs, "MACs")
    cascade = Cascade(float_bundle, runtime="onnx", thresholds=result.chosen.thresholds)
    decided = cascade.infer(x)
    assert np.mean(decided.predictions == y) == pytest.approx(result.chosen.accuracy)
    rates = [np.mean(decided.exit_index == k) for k in range(3)]
    assert rates == pytest.approx(result.chosen.exit_rates)


def test_mode_switch_in_the_manifest(float_bundle: Bundle) -> None:
    manifest = float_bundle.manifest
    assert manifest["ensemble"]["members"] == [0, 1, 2]
    assert deciding_exits(manifest) == 2        # every member but the last takes a threshold
    assert load_bundle(float_bundle.path).manifest["ensemble"]["mode"] == "running_mean"
    off = update_manifest(float_bundle, lambda m: running_mean.set_running_mean(m, False))
    assert "ensemble" not in off.manifest
    # a QUTE ensemble keeps its members and returns to its own mode
    qute = {**manifest, "ensemble": {"members": [1, 2], "aggregation": "mean_softmax"}}
    running_mean.set_running_mean(qute, True)
    assert qute["ensemble"] == {"members": [1, 2], "aggregation": "mean_softmax",
                                "mode": "running_mean"}
    assert running_mean.running_members(qute) == [1, 2]
    running_mean.set_running_mean(qute, False)
    assert qute["ensemble"] == {"members": [1, 2], "aggregation": "mean_softmax"}
    assert deciding_exits(qute) == 1


def test_refusals(float_bundle: Bundle) -> None:
    from eedge.policies.monitor import EnsembleStream

    with pytest.raises(InputDataError, match="running mean"):
        EnsembleStream(float_bundle)
    head = dict(float_bundle.manifest, split={**(float_bundle.manifest.get("split") or {}),
                                              "role": "head", "cut_tensors": []})
    with pytest.raises(BundleError, match="split bundle"):
        Cascade(Bundle(float_bundle.path, head), runtime="onnx")
    cascade = Cascade(float_bundle, runtime="onnx")
    cascade.criteria = ["gate"] * 3
    with pytest.raises(InputDataError, match="gate criterion cannot score"):
        cascade.infer(example_input(seed=1, batch=2, name="sequential"))


def test_selective_calibration_refuses_a_qute_ensemble(float_bundle: Bundle) -> None:
    from eedge.policies.selective import calibrate_selective

    qute = dict(float_bundle.manifest, ensemble={"members": [1, 2],
                                                 "aggregation": "mean_softmax"})
    x = example_input(seed=1, batch=8, name="sequential")
    with pytest.raises(InputDataError, match="QUTE ensemble"):
        calibrate_selective(Bundle(float_bundle.path, qute), x, np.zeros(8, int), [1.0] * 3,
                            target_risk=0.1)
