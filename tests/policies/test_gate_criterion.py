"""The gate criterion: integer thresholds, runtime decisions against independent engines,
calibration, and the errors for models without gates."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from gated_model import bundle_path, inputs, onnx_path, trained, whole_onnx, with_policy

from eedge.errors import InputDataError
from eedge.ir.bundle import load_bundle
from eedge.policies.calibrate import calibrate
from eedge.policies.criteria import confidence, sigmoid
from eedge.policies.fixed_point import gate_float_threshold, gate_threshold_q, threshold_q
from eedge.runtime.cascade import Cascade
from eedge.runtime.interpreters import TFLMModel


def _passes(q: int, t: float, scale: float, zp: int) -> bool:
    """The float meaning of an int8 gate decision: sigmoid of the dequantized gate >= t."""
    return 1.0 / (1.0 + math.exp(-(q - zp) * scale)) >= t


@pytest.mark.parametrize("scale, zp", [(0.0849, 50), (0.09, 6), (0.5, -128), (0.01, 127),
                                       (0.2, 0)])
def test_gate_threshold_is_the_smallest_passing_int8_value(scale: float, zp: int) -> None:
    rng = np.random.default_rng(0)
    previous = -129
    for t in np.sort(np.concatenate([rng.uniform(0, 1, 300), [1e-9, 0.5, 1 - 1e-9]])):
        q = gate_threshold_q(float(t), scale, zp)
        assert -128 <= q <= 128
        assert q >= previous, "monotonic in t"
        previous = q
        passing = [v for v in range(-128, 128) if _passes(v, float(t), scale, zp)]
        # every int8 value at or above q passes, none below (up to sigmoid's rounding at
        # the exact boundary, which a random t does not hit)
        assert passing == list(range(q, 128)), (t, q, passing[:3])
    assert gate_threshold_q(0.0, scale, zp) == -128          # always
    assert gate_threshold_q(1.0, scale, zp) == 128           # never
    assert threshold_q(None, criterion="gate", gate=(scale, zp)) == threshold_q(None)
    assert threshold_q(0.3, True, "gate", gate=(scale, zp)) == threshold_q(0.3, True)


@pytest.mark.parametrize("scale, zp", [(0.0849, 50), (0.3, -20)])
def test_float_threshold_of_an_integer_gives_it_back(scale: float, zp: int) -> None:
    for q in range(-128, 129):
        if (q - zp) * scale < 30:  # beyond, float64 probabilities round to 1 - 2^-52 steps
            assert gate_threshold_q(gate_float_threshold(q, scale, zp), scale, zp) == q


def test_extreme_scales_clamp() -> None:
    assert gate_threshold_q(0.9, 1e-300, 0) == 128     # logit(0.9) / scale overflows
    assert gate_threshold_q(0.1, 1e-300, 0) == -128
    assert gate_threshold_q(0.5, 1e-300, 0) == 0
    assert gate_threshold_q(0.9, 1e30, 3) == 4        # one step above the zero point


def test_the_gate_criterion_needs_the_gate_quantization() -> None:
    with pytest.raises(ValueError, match="scale and zero point"):
        threshold_q(0.5, criterion="gate")


def test_export_marks_gates_from_output_names() -> None:
    manifest = load_bundle(bundle_path()).manifest
    gates = [e.get("gate") for e in manifest["exits"]]
    assert [e["num_classes"] for e in manifest["exits"]] == [10, 10, 10]
    assert [g["column"] if g else None for g in gates] == [10, 10, None]
    for g, e in zip(gates[:2], manifest["exits"]):
        stage = manifest["stages"][e["stage"]]
        assert g["quant"] == {k: stage["io"]["tflite_int8"]["outputs"][0]["quant"][k]
                              for k in ("scale", "zero_point")}


def _medians(x: np.ndarray) -> list[float | None]:
    whole = whole_onnx(x)
    return [float(np.median(sigmoid(out[:, -1]))) for out in whole[:-1]] + [None]


@pytest.mark.parametrize("runtime", ["onnx", "tflite", "tvm"])
def test_float_runtimes_exit_on_sigmoid_of_the_gate(runtime: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Decisions and predictions against the whole model on ONNX Runtime, computed here."""
    x = inputs(200)
    thresholds = _medians(x)
    bundle = with_policy(tmp_path / "b", "gate", thresholds)
    if runtime == "tvm":
        code, _, err = run_cli(capsys, "compile", str(bundle.path), "--backend", "tvm",
                               "--target", "host")
        assert code == 0, err
        bundle = load_bundle(bundle.path)
    result = Cascade(bundle, runtime=runtime).infer(x)
    whole = whole_onnx(x)
    expected = np.full(len(x), 2)
    for k in (1, 0):
        expected[sigmoid(whole[k][:, -1]) >= thresholds[k]] = k
    near = np.zeros(len(x), bool)   # float TFLite may differ from ORT in the last bits
    for k in (0, 1):
        near |= np.abs(sigmoid(whole[k][:, -1]) - thresholds[k]) < 1e-5
    assert np.array_equal(result.exit_index[~near], expected[~near])
    assert len(set(expected.tolist())) == 3
    for k in range(3):
        rows = result.exit_index == k
        assert np.array_equal(result.predictions[rows], np.argmax(whole[k][rows, :10], axis=1))
    assert (result.predictions < 10).all()
    gated = result.exit_index < 2
    gate_prob = np.where(result.exit_index == 0, sigmoid(whole[0][:, -1]), sigmoid(whole[1][:, -1]))
    assert np.allclose(result.confidence[gated], gate_prob[gated], atol=1e-5)


def test_int8_runtimes_compare_the_int8_gate_with_an_integer(tmp_path: Path) -> None:
    """int8-reference and LiteRT decide as the integer rule on TFLite Micro's exit bytes."""
    x = inputs(200)
    thresholds = _medians(x)
    bundle = with_policy(tmp_path / "b", "gate", thresholds)
    manifest = bundle.manifest
    cascade = Cascade(bundle, runtime="int8-reference")
    feeds = cascade.stage_inputs(x)
    whole = TFLMModel(bundle.file(manifest["model"]["files"]["tflite_int8"]).read_bytes(),
                      3).run([feeds["x"]])
    expected = np.full(len(x), 2)
    for k in (1, 0):
        quant = manifest["exits"][k]["gate"]["quant"]
        scale, zp = quant["scale"][0], quant["zero_point"][0]
        q = whole[k][:, -1].astype(np.int64)
        limit = gate_threshold_q(thresholds[k], scale, zp)
        expected[q >= limit] = k
        # the integer rule means the float rule on the dequantized gate
        assert np.array_equal(q >= limit, sigmoid((q - zp) * scale) >= thresholds[k])
    assert len(set(expected.tolist())) == 3
    for runtime in ("int8-reference", "int8"):
        result = Cascade(bundle, runtime=runtime).infer(x)
        assert np.array_equal(result.exit_index, expected), runtime
        for k in range(3):
            rows = result.exit_index == k
            assert np.array_equal(result.predictions[rows],
                                  np.argmax(whole[k][rows, :10], axis=1)), runtime


def test_max_softmax_on_a_gated_exit_ignores_the_gate_column(tmp_path: Path) -> None:
    x = inputs(120)
    bundle = with_policy(tmp_path / "b", "max_softmax", [0.9, 0.9, None])
    whole = whole_onnx(x)
    result = Cascade(bundle, runtime="onnx").infer(x)
    expected = np.full(len(x), 2)
    for k in (1, 0):
        expected[confidence(whole[k][:, :10]) >= 0.9] = k
    assert np.array_equal(result.exit_index, expected)


@pytest.mark.parametrize("runtime", ["onnx", "int8-reference"])
def test_calibrate_chooses_gate_thresholds_that_hold_on_the_data(runtime: str,
                                                                 tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(bundle_path(), copy)
    bundle = load_bundle(copy)
    data = trained().data
    costs = [e["cumulative_macs"] for e in bundle.exits]
    result = calibrate(bundle, data.x_val, data.y_val, "budget", 0.5 * costs[-1], costs,
                       "MACs", criterion="gate", runtime=runtime)
    assert result.chosen.cost <= 0.5 * costs[-1]
    assert result.chosen.thresholds[-1] is None
    cascade = Cascade(bundle, thresholds=result.chosen.thresholds, runtime=runtime)
    cascade.set_policy("gate")
    decided = cascade.infer(data.x_val)
    # the stored float thresholds reproduce the searched decisions exactly
    assert float(np.mean(decided.predictions == data.y_val)) == pytest.approx(
        result.chosen.accuracy)
    rates = [float(np.mean(decided.exit_index == k)) for k in range(3)]
    assert rates == pytest.approx(result.chosen.exit_rates)


def test_cli_calibrate_and_thresholds_with_the_gate(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(bundle_path(), copy)
    data = trained().data
    np.savez(tmp_path / "val.npz", x=data.x_val, y=data.y_val)
    code, out, err = run_cli(capsys, "calibrate", str(copy), "--data", str(tmp_path / "val.npz"),
                             "--max-accuracy-drop", "0.02", "--criterion", "gate", "--runtime",
                             "int8-reference", "--json")
    assert code == 0, err
    code, out, err = run_cli(capsys, "thresholds", str(copy), "--json")
    assert code == 0, err
    rows = json.loads(out)["exits"]
    manifest = load_bundle(copy).manifest
    for row, entry in zip(rows[:2], manifest["exits"]):
        assert row["criterion"] == "gate"
        if row["threshold"] is not None:
            quant = entry["gate"]["quant"]
            assert row["threshold_q"] == gate_threshold_q(row["threshold"], quant["scale"][0],
                                                          quant["zero_point"][0])


def test_gate_criterion_without_gates_is_refused(bundle_of, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from eedge.errors import BundleError
    from eedge.ir.bundle import update_manifest

    plain = bundle_of("mlp").bundle
    cascade = Cascade(plain)
    with pytest.raises(InputDataError, match="has no gate"):
        cascade.set_policy("gate")
    with pytest.raises(InputDataError, match="has no gate"):
        calibrate(plain, np.zeros((4,) + tuple(plain.manifest["inputs"][0]["shape"][1:]),
                                  np.float32), np.zeros(4, np.int64), "budget", 1e9,
                  [1, 2], "MACs", criterion="gate")

    def gate_policy(manifest: dict) -> None:
        manifest["exits"][0]["policy"]["criterion"] = "gate"

    with pytest.raises(BundleError, match="exit 0 uses the gate criterion but has no gate"):
        update_manifest(plain, gate_policy)


def test_export_gates_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "export", str(onnx_path()), "--out", str(tmp_path / "a"),
                             "--gates", "0", "--json")
    assert code == 0, err
    exits = json.loads(out)["manifest"]["exits"]
    assert [("gate" in e, e["num_classes"]) for e in exits] == [(True, 10), (False, 11),
                                                                (False, 10)]
    code, out, err = run_cli(capsys, "export", str(onnx_path()), "--out", str(tmp_path / "e"))
    assert code == 0 and "learned gates on exit0, exit1" in " ".join(out.split()), err
    code, _, err = run_cli(capsys, "export", str(onnx_path()), "--out", str(tmp_path / "b"),
                           "--gates", "5")
    assert code != 0 and "--gates names exit 5" in err
    code, _, err = run_cli(capsys, "export", str(onnx_path()), "--out", str(tmp_path / "c"),
                           "--gates", "x")
    assert code != 0 and "bad --gates" in err
    code, _, err = run_cli(capsys, "export", str(onnx_path()), "--out", str(tmp_path / "d"),
                           "--gates", "all", "--ensemble", "1,2")
    assert code != 0 and "cannot be ensemble members" in err


def test_split_halves_keep_gates_and_decide_like_the_whole(tmp_path: Path) -> None:
    """Head and tail bundles keep their exits' gates: head then tail on the head's
    hand-offs decide as the whole bundle does; the tail's Triton config has C + 1 columns."""
    from eedge.split.bundles import export_halves, triton_config

    x = inputs(120)
    bundle = with_policy(tmp_path / "b", "gate", _medians(x))
    head, tail = export_halves(bundle, 0, tmp_path / "split", int8=True,
                               calibration=trained().data.x_val)
    assert [e.get("gate", {}).get("column") for e in head.exits + tail.exits] == [10, 10, None]
    for runtime in ("onnx", "int8-reference"):
        whole = Cascade(bundle, runtime=runtime).infer(x)
        first = Cascade(head, runtime=runtime).infer(x)
        assert first.pending.size > 0
        rest = Cascade(tail, runtime=runtime).infer(first.handoff, raw=True)
        exits, predictions = first.exit_index.copy(), first.predictions.copy()
        exits[first.pending] = rest.exit_index + len(head.exits)
        predictions[first.pending] = rest.predictions
        assert np.array_equal(exits, whole.exit_index), runtime
        assert np.array_equal(predictions, whole.predictions), runtime
    config = triton_config(tail, "tail")
    assert config.count("dims: [ 11 ]") == 1 and config.count("dims: [ 10 ]") == 1
