"""Progress for long commands: live on a terminal, phase lines in logs, silent with --json.

`EEDGE_PROGRESS=live` stands in for a terminal (pytest's stderr is not one).
Progress only ever goes to stderr, so stdout holds the results (or one JSON
document) in every mode.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from zoo import onnx_two_exit_mlp

from cli_runner import run_cli as run
from eedge.export import export_onnx
from eedge.runtime import batched
from eedge.runtime.cascade import Cascade

SAMPLES = 700  # several slices (batched._slices), so the counts move


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    source = tmp_path / "mlp.onnx"
    onnx.save(onnx_two_exit_mlp(), source)
    calibration = np.random.default_rng(1).standard_normal((32, 16)).astype(np.float32)
    return export_onnx(source, tmp_path / "bundle", formats=("onnx", "tflite"), int8=True,
                       calibration=calibration).bundle.path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.standard_normal((SAMPLES, 16)).astype(np.float32),
             y=rng.integers(0, 4, SAMPLES))
    return path


def test_run_draws_live_progress_on_stderr(capsys, monkeypatch, bundle: Path,  # type: ignore[no-untyped-def]
                                           data: Path) -> None:
    monkeypatch.setenv("EEDGE_PROGRESS", "live")
    code, out, err = run(capsys, "run", str(bundle), "--input", str(data), "--runtime",
                         "int8-reference")
    assert code == 0, err
    assert "running the cascade (int8-reference)" in err and f"{SAMPLES}/{SAMPLES}" in err
    assert "\x1b[" in err                      # drawn, not logged
    assert "running the cascade" not in out and "accuracy" in out


def test_json_stays_pure_even_when_progress_is_forced(capsys, monkeypatch, bundle: Path,  # type: ignore[no-untyped-def]
                                                      data: Path) -> None:
    monkeypatch.setenv("EEDGE_PROGRESS", "live")
    for args in (["run", str(bundle), "--input", str(data), "--json"],
                 ["profile", str(bundle), "--target", "host", "--warmup", "1", "--repeats", "3",
                  "--data", str(data), "--json"]):
        code, out, err = run(capsys, *args)
        assert code == 0, err
        json.loads(out)
        assert err == ""


def test_logs_get_one_plain_line_per_phase(capsys, monkeypatch, bundle: Path,  # type: ignore[no-untyped-def]
                                           data: Path) -> None:
    monkeypatch.delenv("EEDGE_PROGRESS", raising=False)  # stderr is not a terminal here
    code, out, err = run(capsys, "profile", str(bundle), "--target", "host", "--warmup", "2",
                         "--repeats", "5", "--data", str(data))
    assert code == 0, err
    lines = err.splitlines()
    assert any(line.startswith("… timing 2 stages") for line in lines)
    assert any(line.startswith(f"… deciding exits on {SAMPLES} samples") for line in lines)
    assert "\x1b[" not in err and len(lines) == len(set(lines))  # no bars, no repeats
    assert "…" not in out


def test_profile_counts_timing_passes_live(capsys, monkeypatch, bundle: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("EEDGE_PROGRESS", "live")
    code, _, err = run(capsys, "profile", str(bundle), "--target", "host", "--warmup", "2",
                       "--repeats", "5")
    assert code == 0, err
    assert "timing 2 stages in cascade order" in err and "7/7" in err


def test_run_on_target_names_its_phases(capsys, monkeypatch, bundle: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    np.save(tmp_path / "x.npy", np.zeros((3, 16), np.float32))
    monkeypatch.setenv("EEDGE_PROGRESS", "plain")
    code, out, err = run(capsys, "run", str(bundle), "--input", str(tmp_path / "x.npy"),
                         "--target", "host")
    assert code == 0, err
    for phase in ("generating the C project for host", "compiling with gcc",
                  "running 3 samples on the host"):
        assert f"… {phase}" in err
    assert "…" not in out


def test_compile_reports_each_stage(capsys, monkeypatch, bundle: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("tvm")
    monkeypatch.setenv("EEDGE_PROGRESS", "plain")
    code, _, err = run(capsys, "compile", str(bundle), "--backend", "tvm")
    assert code == 0, err
    assert "… compiling stage0 with TVM for host" in err
    assert "… compiling stage1 with TVM for host" in err


@pytest.mark.parametrize("runtime", ["onnx", "tflite", "int8-reference"])
@pytest.mark.parametrize("growth", [1, batched.MAX_GROWTH])  # 1: 175 slices of 4 rows
def test_slices_decide_exactly_what_one_call_decides(monkeypatch, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                     runtime: str, growth: int) -> None:
    monkeypatch.setattr(batched, "MAX_GROWTH", growth)
    source = tmp_path / "mlp.onnx"
    onnx.save(onnx_two_exit_mlp(), source)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((SAMPLES, 16)).astype(np.float32)
    for split_after in (None, 0):  # a head bundle leaves rows pending, with hand-offs
        path = export_onnx(source, tmp_path / f"b{split_after}", formats=("onnx", "tflite"),
                           int8=True, calibration=x[:64], split_after=split_after,
                           force=True).bundle.path
        cascade = Cascade(path, runtime=runtime)
        cascade.set_thresholds([0.5, None])
        whole, ticks = cascade.infer(x), []
        sliced = batched.infer(cascade, x, tick=lambda d, t: ticks.append((d, t)))
        assert len(ticks) > 2 and ticks[-1] == (SAMPLES, SAMPLES)
        for name in ("predictions", "exit_index", "confidence", "rejected", "confidence_q",
                     "probabilities", "pending"):
            assert np.array_equal(getattr(sliced, name), getattr(whole, name)), name
        assert sliced.stage_samples == whole.stage_samples
        assert sliced.handoff.keys() == whole.handoff.keys()
        for name in whole.handoff:
            assert np.array_equal(sliced.handoff[name], whole.handoff[name])
        for a, b in zip(batched.run_all_exits(cascade, x), cascade.run_all_exits(x)):
            assert np.array_equal(a, b)


def test_evaluate_and_calibrate_count_samples(capsys, monkeypatch, bundle: Path,  # type: ignore[no-untyped-def]
                                             data: Path) -> None:
    monkeypatch.setenv("EEDGE_PROGRESS", "live")
    code, _, err = run(capsys, "evaluate", str(bundle), "--data", str(data))
    assert code == 0, err
    assert f"the cascade on {SAMPLES} samples" in err and f"{SAMPLES}/{SAMPLES}" in err
    code, _, err = run(capsys, "calibrate", str(bundle), "--data", str(data),
                       "--max-accuracy-drop", "0.05", "--dry-run")
    assert code == 0, err
    assert "scoring every exit" in err and f"{SAMPLES}/{SAMPLES}" in err
    code, out, err = run(capsys, "evaluate", str(bundle), "--data", str(data), "--json")
    assert code == 0 and err == "" and json.loads(out)["samples"] == SAMPLES


def test_build_shows_its_phase(capsys, monkeypatch, bundle: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fw = tmp_path / "fw"
    code, _, err = run(capsys, "codegen", str(bundle), "--target", "host", "--out", str(fw))
    assert code == 0, err
    monkeypatch.setenv("EEDGE_PROGRESS", "live")
    code, out, err = run(capsys, "build", str(fw))
    assert code == 0, err
    assert "building" in err and "building" not in out
    code, out, err = run(capsys, "build", str(fw), "--json")
    assert code == 0 and err == ""
    json.loads(out)


def test_budget_stream_counts_samples(capsys, monkeypatch, bundle: Path, data: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("EEDGE_PROGRESS", "live")
    code, out, err = run(capsys, "run", str(bundle), "--input", str(data), "--thresholds", "0.6",
                         "--budget-macs", "1000")
    assert code == 0, err
    assert f"streaming {SAMPLES} samples under the budget" in err and f"{SAMPLES}/{SAMPLES}" in err
    assert "average" in out
