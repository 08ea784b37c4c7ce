"""``eedge thresholds``: show and set per-exit thresholds by hand; firmware uses them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from zoo import example_input, onnx_two_exit_mlp

from cli_runner import run_cli as run
from eedge.errors import InputDataError
from eedge.ir.bundle import load_bundle


@pytest.fixture
def bundle(capsys, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """A two-exit float bundle with calibration statistics in its manifest."""
    onnx.save(onnx_two_exit_mlp(), tmp_path / "mlp.onnx")
    out = tmp_path / "b"
    assert run(capsys, "export", str(tmp_path / "mlp.onnx"), "--out", str(out))[0] == 0
    x = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32)
    np.savez(tmp_path / "val.npz", x=x, y=np.arange(40) % 4)
    code, _, err = run(capsys, "calibrate", str(out), "--data", str(tmp_path / "val.npz"),
                       "--max-accuracy-drop", "0.5")
    assert code == 0, err
    return out


def test_show_and_set_thresholds(capsys, bundle: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "thresholds", str(bundle), "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert not shown["written"] and shown["exits"][0]["method"].startswith("calibrated")
    assert [e["role"] for e in shown["exits"]] == ["early", "final"]

    code, out, err = run(capsys, "thresholds", str(bundle), "0.75")
    assert code == 0, err
    assert "0.7500" in out and "written" in out
    loaded = load_bundle(bundle, verify_checksums=True)  # checksums still valid
    assert [e["policy"] for e in loaded.exits] == [
        {"criterion": "max_softmax", "threshold": 0.75, "method": "set by hand (eedge thresholds)"},
        {"criterion": "max_softmax", "threshold": None, "method": "set by hand (eedge thresholds)"}]
    assert "calibration" not in loaded.manifest
    assert not list(bundle.glob(".manifest-*"))  # written via a temp file, nothing left over

    code, out, err = run(capsys, "thresholds", str(bundle), "0.25", "--criterion", "margin",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["exits"][0] == {"index": 0, "role": "early", "criterion": "margin",
                                           "threshold": 0.25,
                                           "method": "set by hand (eedge thresholds)"}
    code, out, _ = run(capsys, "inspect", str(bundle))
    assert code == 0 and "0.2500" in out
    code, out, _ = run(capsys, "thresholds", str(bundle), "none")
    assert code == 0 and "never" in out


@pytest.mark.parametrize("values, message", [
    ("0.9,0.8", "VALUES has 2 values; the bundle has 2 exits: give 1"),
    ("nan", "not a finite number"),
    ("inf", "not a finite number"),
    ("1.5", "outside the max_softmax score range [0, 1]"),
    ("high", "bad threshold 'high'"),
])
def test_bad_values_are_one_line_errors_and_change_nothing(capsys, bundle: Path, values: str,  # type: ignore[no-untyped-def]
                                                           message: str) -> None:
    before = (bundle / "manifest.json").read_text()
    code, _, err = run(capsys, "thresholds", str(bundle), "--", values)
    assert code == InputDataError.exit_code and message in err
    assert err.strip().count("\n") == 0
    assert (bundle / "manifest.json").read_text() == before


def test_criterion_alone_is_a_usage_error(capsys, bundle: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, "thresholds", str(bundle), "--criterion", "entropy")
    assert code == 2 and "give the thresholds too" in err


def test_run_thresholds_count_must_match(capsys, bundle: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for values in ("0.9,0.8", "0.9,0.8,0.7"):   # one too many was silently accepted
        code, _, err = run(capsys, "run", str(bundle), "--input", str(tmp_path / "val.npz"),
                           "--thresholds", values)
        assert code == InputDataError.exit_code
        assert "the bundle has 2 exits: give 1" in err and err.strip().count("\n") == 0
    code, _, err = run(capsys, "run", str(bundle), "--input", str(tmp_path / "val.npz"),
                       "--thresholds", "0.9")
    assert code == 0, err


def test_firmware_uses_thresholds_set_by_hand(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Set by hand, generate and run the host C build: its decisions are Python int8's."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    from conftest import exported_onnx

    from eedge.runtime.cascade import Cascade

    onnx.save(exported_onnx("sequential"), tmp_path / "seq.onnx")
    np.savez(tmp_path / "calib.npz", x=example_input(seed=1, batch=32))
    bundle = tmp_path / "b"
    assert run(capsys, "export", str(tmp_path / "seq.onnx"), "--out", str(bundle), "--int8",
               "--calib", str(tmp_path / "calib.npz"))[0] == 0
    x = example_input(seed=5, batch=40)
    np.savez(tmp_path / "data.npz", x=x, y=np.arange(40) % 5)
    reference = Cascade(bundle, runtime="int8-reference")
    for criterion in ("margin", "max_softmax"):
        # medians of each early exit's int8 score: samples leave at every exit
        from eedge.policies.criteria import confidence

        logits = reference.run_all_exits(x)
        chosen = [round(float(np.median(confidence(lg, criterion))), 3) for lg in logits[:-1]]
        code, _, err = run(capsys, "thresholds", str(bundle), ",".join(map(str, chosen)),
                           "--criterion", criterion)
        assert code == 0, err
        code, out, err = run(capsys, "run", str(bundle), "--input", str(tmp_path / "data.npz"),
                             "--target", "host", "--json")
        assert code == 0, err
        device = json.loads(out)
        python = Cascade(bundle, runtime="int8-reference", thresholds=chosen + [None])
        assert python.criteria == [criterion] * 3
        decided = python.infer(x)
        assert device["exit_index"] == decided.exit_index.tolist()
        assert device["predictions"] == decided.predictions.tolist()
        assert len(set(device["exit_index"])) == 3, "the thresholds should use every exit"
        # and the same thresholds given to the Python runtime on the command line
        code, out, err = run(capsys, "run", str(bundle), "--input", str(tmp_path / "data.npz"),
                             "--runtime", "int8-reference", "--thresholds",
                             ",".join(map(str, chosen)), "--json")
        assert code == 0, err
        assert json.loads(out)["exit_index"] == device["exit_index"]


def test_help_has_examples(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "thresholds", "--help")
    assert code == 0 and "Examples" in out and "--criterion" in out and "--debug" in out


def test_a_bundle_path_with_brackets_is_shown_as_is(capsys, bundle: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    odd = tmp_path / "[b]"
    bundle.rename(odd)
    code, out, err = run(capsys, "thresholds", str(odd), "0.5")
    assert code == 0, err
    assert "[b]" in " ".join(out.split())
