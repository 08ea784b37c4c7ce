"""Everything that works on a multi-exit bundle works on a cascade bundle, end to end:
calibrate, evaluate, profile (host and QEMU), run (onnx, int8, int8-reference), int8
codegen + build + QEMU (decisions == the Python int8 runtime) and split export (the head
holds the first member and forwards the input; head + tail decide as the whole)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from cli_runner import run_cli  # noqa: E402

from eedge.ir.bundle import load_bundle  # noqa: E402
from eedge.policies.apply import write_thresholds  # noqa: E402
from eedge.policies.criteria import score_from_probabilities, softmax  # noqa: E402
from eedge.runtime.cascade import Cascade  # noqa: E402
from cascade_fixtures import cascade_case  # noqa: E402, F401


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, f"eedge {args[0]} failed (exit {code}): {err.strip()}"
    return json.loads(out)


@pytest.fixture(scope="module")
def calibrated(cascade_case, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """The session cascade calibrated by `eedge calibrate` (in a copy: it writes)."""
    bundle = tmp_path_factory.mktemp("calibrated") / "bundle"
    shutil.copytree(cascade_case.bundle, bundle)
    code = _run(["calibrate", str(bundle), "--data", str(cascade_case.val),
                 "--max-accuracy-drop", "0.02"])
    assert code == 0
    return bundle


def _run(args: list[str]) -> int:
    from eedge.cli.main import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def spread(cascade_case, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """The cascade with thresholds that send a third of the validation samples to each
    member (so every exit decides some test samples)."""
    bundle = tmp_path_factory.mktemp("spread") / "bundle"
    shutil.copytree(cascade_case.bundle, bundle)
    loaded = load_bundle(bundle)
    logits = Cascade(loaded, runtime="onnx").run_all_exits(cascade_case.data.x_val)
    t0 = float(np.quantile(score_from_probabilities(softmax(logits[0]), "max_softmax"), 2 / 3))
    t1 = float(np.quantile(score_from_probabilities(softmax(logits[1]), "max_softmax"), 1 / 2))
    write_thresholds(loaded, [t0, t1, None], "test quantiles")
    return bundle


def test_calibrate_and_evaluate(capsys, calibrated: Path, cascade_case) -> None:  # type: ignore[no-untyped-def]
    manifest = load_bundle(calibrated).manifest
    assert manifest["exits"][0]["policy"]["threshold"] is not None
    report = cli_json(capsys, "evaluate", str(calibrated), "--data", str(cascade_case.val))
    final_alone = report["exits"][-1]["accuracy"]
    assert report["cascade_accuracy"] >= final_alone - 0.02 - 1e-9  # the calibration target
    assert report["expected_macs"] < report["full_macs"]
    assert sum(e["exit_rate"] for e in report["exits"]) == pytest.approx(1.0)
    ours = Cascade(load_bundle(calibrated), runtime=report["runtime"]).infer(cascade_case.data.x_val)
    assert report["cascade_accuracy"] == pytest.approx(
        float(np.mean(ours.predictions == cascade_case.data.y_val)))


@pytest.mark.parametrize("runtime", ["onnx", "int8", "int8-reference"])
def test_run_with_each_runtime(capsys, spread: Path, cascade_case, tmp_path: Path,  # type: ignore[no-untyped-def]
                               runtime: str) -> None:
    x = cascade_case.data.x_test[:40]
    np.save(tmp_path / "x.npy", x)
    out = cli_json(capsys, "run", str(spread), "--input", str(tmp_path / "x.npy"),
                   "--runtime", runtime)
    want = Cascade(load_bundle(spread), runtime=runtime).infer(x)
    assert out["predictions"] == want.predictions.tolist()
    assert out["exit_index"] == want.exit_index.tolist()
    assert set(out["exit_index"]) == {0, 1, 2}
    assert np.mean(np.array(out["predictions"]) == cascade_case.data.y_test[:40]) > 0.85


def test_profile_host_and_qemu(capsys, spread: Path, cascade_case) -> None:  # type: ignore[no-untyped-def]
    host = cli_json(capsys, "profile", str(spread), "--target", "host", "--data",
                    str(cascade_case.val), "--repeats", "5", "--warmup", "1")
    assert host["unit"] == "ms" and len(host["stages"]) == 3
    assert host["expected"]["expected"] < host["no_exit"]
    qemu = cli_json(capsys, "profile", str(spread), "--target", "qemu-cortex-m4", "--data",
                    str(cascade_case.val))
    assert qemu["unit"] == "instructions"
    per_stage = [s["value"] for s in qemu["stages"]]
    assert per_stage[0] < per_stage[1] < per_stage[2]  # members of increasing size
    assert qemu["expected"]["expected"] < qemu["no_exit"]


def test_codegen_build_and_qemu_decisions(capsys, spread: Path, cascade_case,  # type: ignore[no-untyped-def]
                                          tmp_path: Path) -> None:
    x = cascade_case.data.x_test[:24]
    np.save(tmp_path / "x.npy", x)
    project = tmp_path / "fw"
    cli_json(capsys, "codegen", str(spread), "--target", "qemu-cortex-m4", "--out",
             str(project), "--inputs", str(tmp_path / "x.npy"))
    built = cli_json(capsys, "build", str(project))
    assert built["flash_bytes"] < built["flash_limit_bytes"]
    device = cli_json(capsys, "run", str(spread), "--input", str(tmp_path / "x.npy"),
                      "--target", "qemu-cortex-m4")
    python = Cascade(load_bundle(spread), runtime="int8-reference").infer(x)
    assert device["exit_index"] == python.exit_index.tolist()
    assert device["predictions"] == python.predictions.tolist()


def test_split_head_is_the_first_member(capsys, spread: Path, cascade_case,  # type: ignore[no-untyped-def]
                                        tmp_path: Path) -> None:
    out = tmp_path / "split"
    cli_json(capsys, "split", "export", str(spread), "--after", "0", "--out", str(out))
    head, tail = load_bundle(out / "head"), load_bundle(out / "tail")
    assert len(head.stages) == 1 and len(tail.stages) == 2
    assert [t["name"] for t in head.manifest["split"]["cut_tensors"]] == ["input"]
    x = cascade_case.data.x_test[:40]
    whole = Cascade(load_bundle(spread), runtime="int8-reference").infer(x)
    first = Cascade(head, runtime="int8-reference").infer(x)
    rest = Cascade(tail, runtime="int8-reference").infer(first.handoff, raw=True)
    exits = first.exit_index.copy()
    preds = first.predictions.copy()
    exits[first.pending] = rest.exit_index + 1
    preds[first.pending] = rest.predictions
    assert 0 < len(first.pending) < len(x)
    assert exits.tolist() == whole.exit_index.tolist()
    assert preds.tolist() == whole.predictions.tolist()


def test_selective_calibrate_and_evaluate(capsys, cascade_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Window-based deferral on the running mean, then `evaluate --selective`, on the
    cascade bundle: the reported operating point is what the runtime decides."""
    bundle = tmp_path / "bundle"
    shutil.copytree(cascade_case.bundle, bundle)
    calibration = cli_json(capsys, "calibrate", str(bundle), "--data", str(cascade_case.val),
                           "--risk", "0.02", "--ensemble", "running-mean")
    assert calibration["running_mean"] is True
    assert calibration["chosen"]["risk"] <= 0.02 + 1e-12
    np.savez(tmp_path / "test.npz", x=cascade_case.data.x_test, y=cascade_case.data.y_test)
    report = cli_json(capsys, "evaluate", str(bundle), "--data", str(tmp_path / "test.npz"),
                      "--selective", "--risk", "0.02")
    rows = {r["name"]: r for r in report["selective"]["rows"]}
    decided = Cascade(load_bundle(bundle), runtime=report["runtime"]).infer(
        cascade_case.data.x_test)
    point = rows["cascade"]["operating_point"]
    assert point["coverage"] == pytest.approx(float(np.mean(~decided.rejected)))
    costs = np.array([e["cumulative_macs"] for e in load_bundle(bundle).exits], float)
    assert rows["cascade"]["expected_macs"] == pytest.approx(
        float(costs[decided.exit_index].mean()))
    assert rows["cascade"]["expected_macs"] < costs[-1]  # cheaper than running every member
    assert rows["final exit alone"]["expected_macs"] == \
        load_bundle(bundle).manifest["cascade"]["members"][-1]["macs"]
