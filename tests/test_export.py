"""Export end to end: manifest contents, atomicity, interruption, torch path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from zoo import build_torch, example_input

from eedge.errors import UnsupportedOpError
from eedge.export import export_onnx, export_torch
from eedge.ir.bundle import load_bundle


def test_manifest_describes_stages_exits_and_costs(bundle_of) -> None:  # type: ignore[no-untyped-def]
    manifest = bundle_of("mlp").bundle.manifest
    s0, s1 = manifest["stages"]
    assert s0["macs"] == 16 * 32 + 32 * 4 and s1["macs"] == 32 * 32 + 32 * 4
    assert s0["handoff_bytes_per_sample"] == 32 * 4
    assert [t["name"] for t in s0["outputs"]] == ["exit0", "h"]
    assert [t["name"] for t in s1["inputs"]] == ["h"]
    assert manifest["exits"][1]["cumulative_macs"] == s0["macs"] + s1["macs"]
    assert manifest["model"]["macs"] == s0["macs"] + s1["macs"]
    assert manifest["exits"][0]["num_classes"] == 4
    assert manifest["inputs"][0]["shape"] == ["N", 16]


def test_split_bundle_records_the_cut(bundle_of) -> None:  # type: ignore[no-untyped-def]
    manifest = bundle_of("residual", split_after=0).bundle.manifest
    split = manifest["split"]
    assert split["head_stages"] == [0] and split["tail_stages"] == [1, 2]
    assert split["cut_bytes_per_sample"] == 8 * 8 * 8 * 4
    assert [s["side"] for s in manifest["stages"]] == ["head", "tail", "tail"]


def test_failed_export_leaves_nothing(tmp_path: Path) -> None:
    from zoo import onnx_two_exit_mlp

    path = tmp_path / "bad.onnx"
    onnx.save(onnx_two_exit_mlp(op="Softsign"), path)
    with pytest.raises(UnsupportedOpError):
        export_onnx(path, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


def test_interruption_after_files_are_written_leaves_nothing(tmp_path: Path, monkeypatch,
                                                             onnx_file) -> None:  # type: ignore[no-untyped-def]
    import eedge.export as export_module

    def interrupted(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "check_staged_equals_whole", interrupted)
    source = onnx_file("mlp")
    with pytest.raises(KeyboardInterrupt):
        export_onnx(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _big_model(path: Path) -> None:
    """Slow enough to export (large weights) that a signal lands mid-way."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((2048, 2048)).astype(np.float32),
                                       f"w{i}") for i in range(6)]
    heads = [numpy_helper.from_array(rng.standard_normal((4, 2048)).astype(np.float32),
                                     f"e{i}") for i in range(6)]
    nodes, prev = [], "x"
    for i in range(6):
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}"], [f"h{i}"], name=f"fc{i}"))
        nodes.append(helper.make_node("Gemm", [f"h{i}", f"e{i}"], [f"exit{i}"], name=f"x{i}",
                                      transB=1))
        prev = f"h{i}"
    graph = helper.make_graph(
        nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2048])],
        [helper.make_tensor_value_info(f"exit{i}", TensorProto.FLOAT, ["N", 4])
         for i in range(6)], initializer=weights + heads)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def test_sigterm_during_export_leaves_no_partial_bundle(tmp_path: Path) -> None:
    source = tmp_path / "big.onnx"
    _big_model(source)
    out = tmp_path / "bundle"
    proc = subprocess.Popen([sys.executable, "-m", "eedge.cli.main", "export", str(source),
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name.startswith(".bundle.tmp-") for p in tmp_path.iterdir()):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "export finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 130, proc.stderr.read().decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx"]


def test_torch_export_keeps_the_model_and_checks_it(tmp_path: Path) -> None:
    result = export_torch(build_torch("depthwise"), example_input(), tmp_path / "b",
                          name="depthwise")
    manifest = result.bundle.manifest
    assert manifest["model"]["source_format"] == "torch"
    assert manifest["model"]["name"] == "depthwise"
    assert len(manifest["stages"]) == 2
    assert load_bundle(tmp_path / "b").manifest == manifest
    assert not os.fspath(tmp_path).encode() in (tmp_path / "b" / "model.onnx").read_bytes()


def test_int8_export_writes_verified_tflite_stages(tmp_path: Path, onnx_file) -> None:  # type: ignore[no-untyped-def]
    calibration = example_input(seed=2, batch=48)
    result = export_onnx(onnx_file("residual"), tmp_path / "b", formats=("onnx", "tflite"),
                         int8=True, calibration=calibration)
    manifest = result.bundle.manifest
    for stage in manifest["stages"]:
        assert set(stage["files"]) == {"onnx", "tflite", "tflite_int8"}
        int8_io = stage["io"]["tflite_int8"]
        assert all(t["dtype"] == "int8" and t["quant"] for t in int8_io["inputs"])
        assert stage["io"]["tflite"]["inputs"][0]["shape"][-1] in (3, 8)  # NHWC
    checks = manifest["verification"]
    assert checks["tflite"]["max_abs_diff"] < 1e-4
    assert checks["tflite_int8"]["staged_vs_monolithic"]["identical"]
    assert checks["tflite_int8"]["reference_vs_tflm"]["identical"]
    quant = manifest["quantization"]
    assert quant["calibration_samples"] == 48 and quant["observer"] == "minmax"
    assert all(t["scale"] > 0 for t in quant["tensors"].values())
    # a hand-off has one quant param set for its producer and its consumer
    for prev, stage in zip(manifest["stages"], manifest["stages"][1:]):
        produced = {t["name"]: t["quant"] for t in prev["io"]["tflite_int8"]["outputs"]}
        for t in stage["io"]["tflite_int8"]["inputs"]:
            if t["name"] in produced:
                assert produced[t["name"]] == t["quant"]


def test_int8_needs_calibration_with_the_right_shape(tmp_path: Path, onnx_file) -> None:  # type: ignore[no-untyped-def]
    from eedge.errors import InputDataError

    source = onnx_file("sequential")
    with pytest.raises(InputDataError, match="--calib"):
        export_onnx(source, tmp_path / "a", int8=True)
    with pytest.raises(InputDataError, match="calibration data has shape"):
        export_onnx(source, tmp_path / "b", int8=True,
                    calibration=np.zeros((4, 3, 9, 9), np.float32))
    with pytest.raises(InputDataError, match="unknown format"):
        export_onnx(source, tmp_path / "c", formats=("coreml",))
    assert not list(p for p in tmp_path.iterdir() if not p.name.endswith(".onnx"))


def test_tflite_source_becomes_a_bundle(tmp_path: Path) -> None:
    from eedge.export import export_tflite

    sys.path.insert(0, str(Path(__file__).parent / "frontends"))
    from test_tflite_frontend import hand_made_int8_model

    path = tmp_path / "hand.tflite"
    path.write_bytes(hand_made_int8_model())
    result = export_tflite(path, tmp_path / "b")
    manifest = result.bundle.manifest
    assert manifest["model"]["source_format"] == "tflite"
    assert list(manifest["stages"][0]["files"]) == ["tflite_int8"]
    assert manifest["verification"]["tflite_int8"]["reference_vs_tflm"]["identical"]


def test_int8_split_bundle_keeps_sides(tmp_path: Path, onnx_file) -> None:  # type: ignore[no-untyped-def]
    result = export_onnx(onnx_file("sequential"), tmp_path / "b", int8=True, split_after=0,
                         calibration=example_input(batch=16))
    stages = result.bundle.manifest["stages"]
    assert [s["side"] for s in stages] == ["head", "tail", "tail"]
    assert result.bundle.manifest["verification"]["tflite_int8"]["staged_vs_monolithic"][
        "identical"]


def test_tflite_source_with_extra_exits_is_partitioned(tmp_path: Path) -> None:
    from conftest import exported_onnx

    from eedge.backends.tflite_writer import graph_to_tflite
    from eedge.export import export_tflite
    from eedge.frontends.onnx_frontend import onnx_to_graph
    from eedge.passes.lower_tflite import lower_to_tflite
    from eedge.passes.quantize import observe_ranges, quantize_graph

    lowered = lower_to_tflite(onnx_to_graph(exported_onnx("sequential")))
    q = quantize_graph(lowered, observe_ranges(
        lowered, [{"input": example_input(batch=32).transpose(0, 2, 3, 1)}]))
    path = tmp_path / "final_only.tflite"  # a standard single-output file
    path.write_bytes(graph_to_tflite(q, range(len(q.nodes)), ["input"], q.exits[-1:]))
    result = export_tflite(path, tmp_path / "b", exits=q.exits[:2])
    manifest = result.bundle.manifest
    assert [s["exit"] for s in manifest["stages"]] == [0, 1, 2]
    assert manifest["verification"]["tflite_int8"]["staged_vs_monolithic"]["exits"] == 3


def test_torch_module_returning_probabilities_gets_logit_exits(tmp_path: Path) -> None:
    import torch

    class Probabilities(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(torch.softmax(e, dim=1) for e in self.net(x))

    net = build_torch("sequential").eval()
    result = export_torch(Probabilities(net), example_input(), tmp_path / "b")
    assert len(result.notes) == 3 and all("ended in Softmax" in n for n in result.notes)
    assert result.bundle.manifest["model"]["notes"] == result.notes
    from eedge.runtime.cascade import Cascade

    x = example_input(seed=5, batch=6)
    with torch.no_grad():
        logits = [t.numpy() for t in net(torch.from_numpy(x))]
    for got, want in zip(Cascade(result.bundle).run_all_exits(x), logits):
        assert np.allclose(got, want, atol=1e-4)


def test_file_names_with_quotes_and_backslashes_export(onnx_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The model name comes from the file name; it used to fail at the manifest write."""
    import shutil

    from eedge.export import export_onnx

    hostile = tmp_path / 'm"x\\y\tz.onnx'
    shutil.copy(onnx_file("mlp"), hostile)
    bundle = export_onnx(hostile, tmp_path / "b").bundle
    assert bundle.manifest["model"]["name"] == "m_x_y_z"
