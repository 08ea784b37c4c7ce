"""`eedge cascade build`: members from the command line, the table and the JSON, and
one-line errors with their exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
# test_build imports cascade_fixtures by name: collected alone, this module must find it too
sys.path.insert(0, str(Path(__file__).parents[1] / "cascade"))

from cli_runner import run_cli  # noqa: E402
from cascade.test_build import _linear_onnx  # noqa: E402


def test_build_prints_members_and_writes_the_bundle(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    a = _linear_onnx(tmp_path / "a.onnx", [1, 1, 8, 8], 10, 0)
    b = _linear_onnx(tmp_path / "b.onnx", [1, 1, 8, 8], 10, 1)
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).random((32, 1, 8, 8), np.float32))
    code, out, err = run_cli(capsys, "cascade", "build", str(a), str(b), "--out",
                             str(tmp_path / "c"), "--int8", "--calib", str(tmp_path / "calib.npy"))
    assert code == 0, err
    flat = " ".join(out.split())
    assert "cascade of independent models, each reading the input: a (onnx, 640 MACs), " \
        "b (onnx, 640 MACs)" in flat
    assert "cascade == members" in out
    code, out, err = run_cli(capsys, "cascade", "build", str(a), str(b), "--out",
                             str(tmp_path / "c"), "--name", "pair", "--force", "--json")
    assert code == 0, err
    manifest = json.loads(out)["manifest"]
    assert manifest["model"]["name"] == "pair"
    assert [m["file"] for m in manifest["cascade"]["members"]] == ["a.onnx", "b.onnx"]


def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = _linear_onnx(tmp_path / "a.onnx", [1, 1, 8, 8], 10)
    code, _, err = run_cli(capsys, "cascade", "build", str(a), "--out", str(tmp_path / "c"))
    errors = [line for line in err.splitlines() if not line.startswith("…")]  # progress lines
    assert code == 3 and len(errors) == 1 and "at least two members" in errors[0]
    code, _, err = run_cli(capsys, "cascade", "build", str(a), str(tmp_path / "x.onnx"),
                           "--out", str(tmp_path / "c"))
    assert code == 3 and "does not exist" in err
    code, _, err = run_cli(capsys, "cascade", "build", str(a), str(a), "--out",
                           str(tmp_path / "c"), "--calib", str(a))
    assert code == 5 and "only used with --int8" in err
    assert not (tmp_path / "c").exists()
