"""``calibrate`` / ``evaluate`` / ``run``: labels, latency units and how costs are shown."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from zoo import onnx_two_exit_mlp

from cli_runner import run_cli as run
from eedge.cli.tables import human_cost
from eedge.errors import InputDataError


@pytest.fixture
def bundle(capsys, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """A two-exit MLP (4 classes) with int8 stages, and validation data beside it."""
    onnx.save(onnx_two_exit_mlp(), tmp_path / "mlp.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((64, 16)).astype(np.float32))
    np.savez(tmp_path / "val.npz", x=rng.standard_normal((40, 16)).astype(np.float32),
             y=np.arange(40) % 4)
    out = tmp_path / "b"
    code, _, err = run(capsys, "export", str(tmp_path / "mlp.onnx"), "--out", str(out),
                       "--int8", "--calib", str(tmp_path / "calib.npz"))
    assert code == 0, err
    return out


def flat(text: str) -> str:
    """Console output with rich's line wrapping undone."""
    return " ".join(text.split())


def host_report(bundle: Path, ms: list[float]) -> dict[str, Any]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    cumulative = np.cumsum(ms).tolist()
    return {"target": "host", "unit": "ms", "environment": {},
            "stages": [{"index": i, "value": v, "estimates": {}} for i, v in enumerate(ms)],
            "exits": [{"index": e["index"], "stage": e["stage"],
                       "cumulative": cumulative[e["stage"]]} for e in manifest["exits"]]}


def test_costs_are_shown_by_magnitude() -> None:
    assert human_cost(0.0379, "ms") == "37.9 µs"
    assert human_cost(10.305, "ms") == "10.3 ms"
    assert human_cost(1234.0, "ms") == "1.23 s"
    assert human_cost(0.0000379, "ms") == "37.9 ns"
    assert human_cost(62_720, "MACs") == "62.72k MACs"


def test_sub_millisecond_budgets_are_not_printed_as_zero(capsys, bundle: Path,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path) -> None:
    report = tmp_path / "host.json"
    report.write_text(json.dumps(host_report(bundle, [0.0151, 0.0228])))
    code, out, err = run(capsys, "calibrate", str(bundle), "--data", str(tmp_path / "val.npz"),
                         "--budget-ms", "0.03", "--profile", str(report), "--dry-run")
    assert code == 0, err
    assert not re.search(r"\b0 ms", out), out
    assert "µs/sample" in flat(out) and "15.1 µs:" in flat(out)
    code, out, err = run(capsys, "evaluate", str(bundle), "--data", str(tmp_path / "val.npz"),
                         "--profile", str(report))
    assert code == 0, err
    assert "37.9 µs without exits" in flat(out)


def qemu_report(bundle: Path, instructions: list[float], unit: str = "instructions"
                ) -> dict[str, Any]:
    """A QEMU (instructions) or board (cycles) report: ms only as per-stage estimates."""
    report = host_report(bundle, instructions)
    report.update(target="qemu-cortex-m4", unit=unit, environment={
        "estimate_basis": "1.0 cycles per instruction at 25 MHz (estimate)"})
    for stage in report["stages"]:
        stage["estimates"] = {"cycles": stage["value"], "ms": stage["value"] / 25e6 * 1e3}
    return report


@pytest.mark.parametrize("unit", ["instructions", "cycles"])  # cycles were taken as ms
def test_instruction_profiles_are_accepted_as_estimated_ms(capsys, bundle: Path,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path, unit: str) -> None:
    report = tmp_path / "qemu.json"
    report.write_text(json.dumps(qemu_report(bundle, [25_000.0, 50_000.0], unit)))  # 1, 3 ms
    args = ["calibrate", str(bundle), "--data", str(tmp_path / "val.npz"), "--budget-ms", "2.5",
            "--profile", str(report), "--dry-run"]
    code, out, err = run(capsys, *args, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["cost_unit"] == "ms" and result["cost_estimated"] is True
    assert "25 MHz" in result["cost_basis"] and 1.0 <= result["chosen"]["cost"] <= 2.5
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "ms/sample (estimate)" in flat(out) and "costs are estimates" in flat(out)
    code, out, err = run(capsys, "evaluate", str(bundle), "--data", str(tmp_path / "val.npz"),
                         "--profile", str(report), "--json")
    assert code == 0, err
    latency = json.loads(out)["expected_latency"]
    assert latency["unit"] == "ms" and latency["estimated"] and latency["no_exit"] == 3.0
    code, out, err = run(capsys, "evaluate", str(bundle), "--data", str(tmp_path / "val.npz"),
                         "--profile", str(report))
    assert code == 0 and "3.00 ms without exits (ms estimated from" in flat(out)


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None
                    or shutil.which("arm-none-eabi-gcc") is None,
                    reason="QEMU or the ARM toolchain is not installed")
def test_calibrate_budget_ms_measured_on_qemu(capsys, bundle: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "calibrate", str(bundle), "--data", str(tmp_path / "val.npz"),
                         "--budget-ms", "1000", "--target", "qemu-cortex-m4", "--dry-run",
                         "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["cost_estimated"] and "qemu-cortex-m4" in result["cost_basis"]
    assert result["chosen"]["cost"] > 0


@pytest.mark.parametrize("bad", [4, 9, -1])
def test_labels_outside_the_classes_fail_everywhere_the_same_way(capsys, bundle: Path,  # type: ignore[no-untyped-def]
                                                                 tmp_path: Path, bad: int) -> None:
    with np.load(tmp_path / "val.npz") as data:
        y = data["y"].copy()
        y[3] = bad
        np.savez(tmp_path / "bad.npz", x=data["x"], y=y)
    data_file = str(tmp_path / "bad.npz")
    messages = set()
    for args in (["run", str(bundle), "--input", data_file],
                 ["run", str(bundle), "--input", data_file, "--runtime", "int8-reference"],
                 ["run", str(bundle), "--input", data_file, "--budget-macs", "100"],
                 ["evaluate", str(bundle), "--data", data_file],
                 ["calibrate", str(bundle), "--data", data_file, "--max-accuracy-drop", "0.1"]):
        code, _, err = run(capsys, *args)
        assert code == InputDataError.exit_code, (args, err)
        assert err.strip().count("\n") == 0
        messages.add(err.strip())
    assert len(messages) == 1
    assert f"label {bad} at sample 3" in messages.pop()
