"""A 1-D audio net the way a user ships it, from torch to an emulated Cortex-M4.

``torch.onnx.export`` writes ``m.onnx`` (+ ``m.onnx.data``); ``eedge export
m.onnx --int8`` lowers the Conv1d stack to unit-height TFLite operators and
verifies every format; ``eedge run --target qemu-cortex-m4`` runs the
generated C and must decide exactly like TFLite Micro's interpreter. The
``export_torch`` path must describe the same model the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_cli
from zoo import build_torch, example_input

from eedge.export import export_torch
from eedge.ir.bundle import load_bundle
from eedge.policies.apply import write_thresholds
from eedge.policies.criteria import confidence
from eedge.runtime.cascade import Cascade


def test_torch_onnx_export_then_cli_export_and_qemu_run(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    model = build_torch("audio1d")
    source = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.from_numpy(example_input(name="audio1d")),), str(source))
    np.savez(tmp_path / "calib.npz", x=example_input(seed=1, batch=64, name="audio1d"))
    bundle_dir = tmp_path / "bundle"
    code, out, err = run_cli(capsys, "export", str(source), "--out", str(bundle_dir),
                             "--format", "onnx,tflite", "--int8", "--calib",
                             str(tmp_path / "calib.npz"))
    assert code == 0, err
    assert "byte for byte" in out
    bundle = load_bundle(bundle_dir)
    assert bundle.manifest["inputs"][0]["layout"] == "NCL"
    x = example_input(seed=7, batch=12, name="audio1d")
    logits = Cascade(bundle, runtime="int8-reference").run_all_exits(x)
    write_thresholds(bundle, [float(np.median(confidence(lg))) for lg in logits[:-1]] + [None],
                     "test: medians")
    y = np.arange(len(x)) % 5
    np.savez(tmp_path / "test.npz", x=x, y=y)   # labels: samples counted in NCL, not NHWC
    results = {}
    for flags in (("--runtime", "int8-tflm"), ("--target", "qemu-cortex-m4")):
        code, out, err = run_cli(capsys, "run", str(bundle_dir), "--input",
                                 str(tmp_path / "test.npz"), "--json", *flags)
        assert code == 0, err
        results[flags[1]] = json.loads(out)
    tflm, device = results["int8-tflm"], results["qemu-cortex-m4"]
    assert device["predictions"] == tflm["predictions"]
    assert device["exit_index"] == tflm["exit_index"]
    assert len(set(device["exit_index"])) > 1
    assert device["accuracy"] == pytest.approx(np.mean(np.array(device["predictions"]) == y))


def test_export_torch_lowers_ncl_inputs_to_unit_height_nhwc(tmp_path: Path) -> None:
    bundle = export_torch(build_torch("audio1d"), example_input(name="audio1d"),
                          tmp_path / "b", name="audio1d", formats=("onnx", "tflite"),
                          int8=True, calibration=example_input(seed=1, batch=64,
                                                               name="audio1d")).bundle
    manifest = bundle.manifest
    assert manifest["inputs"][0]["shape"][1:] == [8, 49]
    assert manifest["inputs"][0]["layout"] == "NCL"
    first = manifest["stages"][0]["io"]
    assert first["tflite_int8"]["inputs"][0]["shape"][1:] == [1, 49, 8]
    assert manifest["verification"]["tflite"]["max_abs_diff"] < 1e-5
    assert manifest["verification"]["tflite_int8"]["reference_vs_tflm"]["identical"]
    # the float TFLite cascade answers like torch itself
    x = example_input(seed=3, batch=8, name="audio1d")
    with torch.no_grad():
        expected = [t.numpy() for t in build_torch("audio1d")(torch.from_numpy(x))]
    got = Cascade(bundle, runtime="tflite").run_all_exits(x)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=1e-4)
