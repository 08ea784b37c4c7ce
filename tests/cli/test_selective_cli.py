"""``eedge calibrate --risk/--coverage [--ensemble running-mean]`` and ``eedge evaluate
--selective`` end to end on the trained digits model (float and int8).

What calibration promises is checked against the runtimes themselves: the
coverage, risk, accuracy and expected MACs it reports on the calibration data
are exactly what the cascade then decides on those samples. The evaluation's
metrics are recomputed independently from the exits' logits.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from cli_runner import run_cli  # noqa: E402

from eedge.ir.bundle import load_bundle  # noqa: E402
from eedge.runtime.cascade import Cascade  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits demo model (3 exits), trained briefly, int8 export, val/test .npz."""
    from eedge.examples.digits import load_digits_splits
    from eedge.examples.digits_model import build_model
    from eedge.export import export_torch
    from eedge.train.multi_exit import TrainConfig, seed_everything, train_multi_exit

    root = tmp_path_factory.mktemp("selective")
    data = load_digits_splits(seed=0)
    seed_everything(0)
    model = build_model()
    train_multi_exit(model, data.x_train, data.y_train, TrainConfig(epochs=12, seed=0))
    export_torch(model, data.x_val[:2], root / "bundle", int8=True,
                 calibration=data.x_train[:128])
    np.savez(root / "val.npz", x=data.x_val, y=data.y_val)
    np.savez(root / "test.npz", x=data.x_test, y=data.y_test)
    return root


@pytest.fixture
def bundle(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(trained / "bundle", copy)
    return copy


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def decided(bundle: Path, data: Path, runtime: str) -> tuple[np.ndarray, ...]:
    d = np.load(data)
    result = Cascade(load_bundle(bundle), runtime=runtime).infer(d["x"])
    return result.exit_index, ~result.rejected, result.predictions == d["y"], result


@pytest.mark.parametrize("runtime", ["onnx", "int8-reference"])
def test_calibrated_windows_are_what_the_runtime_does(runtime: str, bundle: Path, trained: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    val = trained / "val.npz"
    report = cli(capsys, "calibrate", str(bundle), "--data", str(val), "--risk", "0.01",
                 "--ensemble", "running-mean", "--criterion", "margin", "--runtime", runtime,
                 "--max-coverage-drop", "0.03")
    manifest = load_bundle(bundle).manifest
    assert manifest["ensemble"]["mode"] == "running_mean"
    policies = [e["policy"] for e in manifest["exits"]]
    assert [p["threshold"] for p in policies] == report["thresholds"]
    assert [p.get("window_low") for p in policies] == report["window_low"]
    assert policies[-1]["window_low"] is not None  # tau: the final exit rejects below it
    chosen = report["chosen"]
    assert chosen["risk"] <= 0.01
    assert chosen["coverage"] >= report["no_early_exit"]["coverage"] - 0.03
    macs = np.array([e["cumulative_macs"] for e in manifest["exits"]], dtype=float)
    assert chosen["expected_cost"] < macs[-1]
    exit_index, accepted, correct, _ = decided(bundle, val, runtime)
    assert accepted.mean() == pytest.approx(chosen["coverage"], abs=1e-12)
    assert (accepted & ~correct).sum() / accepted.sum() == pytest.approx(chosen["risk"],
                                                                        abs=1e-12)
    assert correct.mean() == pytest.approx(chosen["accuracy"], abs=1e-12)
    assert macs[exit_index].mean() == pytest.approx(chosen["expected_cost"], rel=1e-12)
    if runtime == "int8-reference":  # TFLite Micro decides the same, sample by sample
        tflm = decided(bundle, val, "int8-tflm")
        assert np.array_equal(tflm[0], exit_index) and np.array_equal(tflm[1], accepted)


def test_coverage_target_without_an_ensemble(bundle: Path, trained: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    val = trained / "val.npz"
    report = cli(capsys, "calibrate", str(bundle), "--data", str(val), "--coverage", "0.9",
                 "--max-risk-increase", "0.01")
    assert "ensemble" not in load_bundle(bundle).manifest
    assert report["chosen"]["coverage"] >= 0.9
    assert report["chosen"]["risk"] <= report["no_early_exit"]["risk"] + 0.01
    _, accepted, _, _ = decided(bundle, val, "onnx")
    assert accepted.mean() == pytest.approx(report["chosen"]["coverage"], abs=1e-12)


def test_risk_bound_option(bundle: Path, trained: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    from eedge.policies.selective import risk_upper_bound

    val = str(trained / "val.npz")
    plain = cli(capsys, "calibrate", str(bundle), "--data", val, "--risk", "0.03", "--dry-run")
    bounded = cli(capsys, "calibrate", str(bundle), "--data", val, "--risk", "0.03",
                  "--risk-z", "2", "--dry-run")
    chosen, samples = bounded["chosen"], bounded["samples"]
    assert bounded["risk_z"] == 2.0
    assert float(risk_upper_bound(chosen["risk"], chosen["coverage"] * samples, 2.0)) <= 0.03
    assert chosen["coverage"] <= plain["chosen"]["coverage"]
    assert "window_low" not in load_bundle(bundle).exits[-1]["policy"]  # --dry-run


def _aurc_by_definition(scores: np.ndarray, correct: np.ndarray) -> float:
    """Mean over samples of the risk of accepting every sample at least as confident."""
    risks = [np.mean(~correct[scores >= s]) for s in scores]
    return float(np.mean(risks))


def test_evaluate_selective_against_the_final_exit(bundle: Path, trained: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from scipy.special import softmax

    cli(capsys, "calibrate", str(bundle), "--data", str(trained / "val.npz"), "--risk",
        "0.005", "--ensemble", "running-mean")
    test = trained / "test.npz"
    plot = tmp_path / "rc.png"
    report = cli(capsys, "evaluate", str(bundle), "--data", str(test), "--selective",
                 "--risk", "0.005", "--plot", str(plot))["selective"]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    rows = {r["name"]: r for r in report["rows"]}
    assert set(rows) == {"final exit alone", "ensemble, no early exit", "cascade"}
    d = np.load(test)
    y = d["y"]
    cascade = Cascade(load_bundle(bundle), runtime="onnx")
    logits = cascade.run_all_exits(d["x"])
    final = softmax(logits[-1].astype(np.float64), axis=-1)
    final_ok = final.argmax(-1) == y
    alone = rows["final exit alone"]
    assert alone["aurc"] == pytest.approx(_aurc_by_definition(final.max(-1), final_ok))
    assert alone["accuracy"] == pytest.approx(final_ok.mean())
    macs = [e["cumulative_macs"] for e in load_bundle(bundle).exits]
    assert alone["expected_macs"] == macs[-1]  # one network: the final exit needs every stage
    mean = np.mean([softmax(lg.astype(np.float64), axis=-1) for lg in logits], axis=0)
    assert rows["ensemble, no early exit"]["accuracy"] == pytest.approx(
        np.mean(mean.argmax(-1) == y))
    exit_index, accepted, correct, result = decided(bundle, test, "onnx")
    point = rows["cascade"]["operating_point"]
    assert point["coverage"] == pytest.approx(accepted.mean())
    assert point["risk"] == pytest.approx((accepted & ~correct).sum() / accepted.sum())
    assert rows["cascade"]["expected_macs"] == pytest.approx(np.mean(np.array(macs)[exit_index]))
    assert rows["cascade"]["expected_macs"] < macs[-1]
    assert rows["cascade"]["aurc"] == pytest.approx(
        _aurc_by_definition(result.confidence.astype(np.float64), correct))
    # the human-readable table names the comparison
    code, out, _ = run_cli(capsys, "evaluate", str(bundle), "--data", str(test), "--selective")
    words = " ".join(out.split())  # rich wraps lines at the terminal width
    assert code == 0 and "AURC" in words and "the final exit alone covers" in words
    code, out, _ = run_cli(capsys, "inspect", str(bundle))
    words = " ".join(out.split())
    assert code == 0 and "running-mean ensemble: exit0, exit1, exit2" in words
    assert "(selective threshold)" in words


def test_ensemble_mode_on_and_off(bundle: Path, trained: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    val = str(trained / "val.npz")
    cli(capsys, "calibrate", str(bundle), "--data", val, "--max-accuracy-drop", "0.01",
        "--ensemble", "running-mean")
    assert load_bundle(bundle).manifest["ensemble"]["members"] == [0, 1, 2]
    shown = cli(capsys, "thresholds", str(bundle))
    assert [r["role"] for r in shown["exits"]] == ["early", "early", "ensemble"]
    from eedge.policies.running_mean import sum_threshold_q

    for k, row in enumerate(shown["exits"][:2]):  # the device's integer on the ensemble's sum
        if row["threshold"] is not None:
            assert row["threshold_q"] == sum_threshold_q(row["threshold"], False,
                                                         "max_softmax", 10, k + 1)
    cli(capsys, "calibrate", str(bundle), "--data", val, "--max-accuracy-drop", "0.01",
        "--ensemble", "none")
    assert "ensemble" not in load_bundle(bundle).manifest


def test_bad_combinations_are_one_line_errors(bundle: Path, trained: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    val = str(trained / "val.npz")
    code, _, err = run_cli(capsys, "calibrate", str(bundle), "--data", val, "--risk", "0.01",
                           "--budget-macs", "5000")
    assert code == 5 and "exactly one of" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "evaluate", str(bundle), "--data", val, "--plot", "x.png")
    assert code == 2 and "--selective" in err
    code, _, err = run_cli(capsys, "calibrate", str(bundle), "--data", val, "--risk", "0.01",
                           "--ensemble", "running-mean", "--criterion", "gate")
    assert code != 0 and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def model_cascade(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three independent CNNs (eedge.examples.cascade_members) cascaded by
    ``eedge.cascade.build_cascade``: a bundle whose stages are whole models."""
    from eedge.cascade import build_cascade
    from eedge.examples.cascade_members import SIZES, export_member, train_member
    from eedge.examples.digits import load_digits_splits

    root = tmp_path_factory.mktemp("model-cascade")
    data = load_digits_splits(seed=0)
    paths = []
    for k, size in enumerate(SIZES):
        path = root / f"{size}.onnx"
        export_member(train_member(size, data.x_train, data.y_train, 3, seed=k), path)
        paths.append(path)
    build_cascade(paths, root / "bundle", formats=("onnx",), int8=True,
                  calibration=data.x_train[:128])
    np.savez(root / "val.npz", x=data.x_val, y=data.y_val)
    np.savez(root / "test.npz", x=data.x_test, y=data.y_test)
    return root


def test_cascade_of_models(model_cascade: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    """On a cascade of independent models the final model alone costs only its own MACs."""
    bundle = tmp_path / "bundle"
    shutil.copytree(model_cascade / "bundle", bundle)
    val, test = model_cascade / "val.npz", model_cascade / "test.npz"
    report = cli(capsys, "calibrate", str(bundle), "--data", str(val), "--risk", "0.02",
                 "--ensemble", "running-mean", "--runtime", "int8-reference")
    exit_index, accepted, correct, _ = decided(bundle, val, "int8-reference")
    assert accepted.mean() == pytest.approx(report["chosen"]["coverage"], abs=1e-12)
    assert (accepted & ~correct).sum() / accepted.sum() == pytest.approx(
        report["chosen"]["risk"], abs=1e-12)
    assert report["final_alone"]["macs"] == load_bundle(bundle).stages[-1]["macs"]
    rows = {r["name"]: r for r in cli(capsys, "evaluate", str(bundle), "--data", str(test),
                                      "--runtime", "int8-reference",
                                      "--selective")["selective"]["rows"]}
    manifest = load_bundle(bundle).manifest
    assert rows["final exit alone"]["expected_macs"] == manifest["stages"][-1]["macs"]
    assert rows["ensemble, no early exit"]["expected_macs"] == \
        manifest["exits"][-1]["cumulative_macs"]
    assert rows["cascade"]["expected_macs"] < manifest["exits"][-1]["cumulative_macs"]
