"""A standalone RELU6 that changes scale: TFLM is wrong there, verification knows it.

The model is TensorFlow-shaped (CONV_2D -> RELU6 with its own output scale
-> RESHAPE -> FULLY_CONNECTED). eedge must export it, follow LiteRT's
reference kernels for the RELU6 and say so, and still catch a RELU6 kernel
that copied TFLM's bug.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from relu6_model import RELU6_OUTPUT, int8_inputs, relu6_model

from eedge.backends.tflite_writer import graph_to_tflite
from eedge.errors import VerificationError
from eedge.frontends.tflite_frontend import read_tflite_bytes
from eedge.ir.bundle import load_bundle
from eedge.reference import int8_kernels
from eedge.reference.executor import execute
from eedge.runtime.cascade import Cascade
from eedge.runtime.interpreters import LiteRTModel, TFLMModel
from eedge.verify.tflite_checks import check_int8_reference_vs_tflm
from eedge.verify.tflm_exceptions import LITERT_REF, TFLM, split_at, tflm_relu6_bug_nodes


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "x.tflite"
    path.write_bytes(relu6_model())
    return path


def test_the_model_exercises_tflms_relu6_bug() -> None:
    """On the RELU6 tensor itself: eedge == LiteRT BUILTIN_REF != TFLM."""
    graph, _ = read_tflite_bytes(relu6_model())
    probe = graph_to_tflite(graph, [0, 1], ["x"], [RELU6_OUTPUT])
    x = int8_inputs(64)
    ours = execute(graph, {"x": x}, [0, 1])[RELU6_OUTPUT]
    litert = LiteRTModel(probe, reference=True).run([x])[0]
    tflm = TFLMModel(probe, 1).run([x])[0].reshape(ours.shape)
    assert np.array_equal(ours, litert)
    assert not np.array_equal(ours, tflm)


def test_export_follows_litert_ref_for_the_relu6_and_says_why(
        model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b"
    code, stdout, stderr = run_cli(capsys, "export", str(model_file), "--out", str(out))
    assert code == 0, stderr
    assert "LiteRT BUILTIN_REF" in stdout
    report = json.loads((out / "manifest.json").read_text())["verification"]
    stages = report["tflite_int8"]["reference_vs_tflm"]["stages"]
    assert stages == [stages[0]] and stages[0]["reference"] == LITERT_REF
    assert stages[0]["nodes"] == ["relu6_1"] and "TFLite Micro" in stages[0]["why"]
    assert stages[0]["other_nodes_reference"] == TFLM
    # the bundle's int8 reference gives LiteRT BUILTIN_REF's bytes for the whole model
    x = int8_inputs(200, seed=5)
    ours = Cascade(load_bundle(out), runtime="int8-reference").run_all_exits(x, raw=True)[0]
    litert = LiteRTModel(model_file.read_bytes(), reference=True).run([x])[0]
    tflm = TFLMModel(model_file.read_bytes(), 1).run([x])[0]
    assert np.array_equal(ours, litert.reshape(ours.shape))
    assert not np.array_equal(ours, tflm.reshape(ours.shape))


def test_a_relu6_that_copied_tflms_bug_is_caught(model_file: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from eedge.export import export_tflite

    out = tmp_path / "b"
    export_tflite(model_file, out)

    def clamp_in_input_scale(node, graph, args):  # type: ignore[no-untyped-def]
        in_q = int8_kernels.quant_of(graph, node.inputs[0])
        low, high = int8_kernels.activation_range("RELU6", in_q)
        return np.clip(args[0], low, high).astype(np.int8)

    monkeypatch.setitem(int8_kernels.INT8_KERNELS, "RELU6", clamp_in_input_scale)
    x = int8_inputs(16)
    with pytest.raises(VerificationError, match="LiteRT BUILTIN_REF.*RELU6 node 'relu6_1'"):
        check_int8_reference_vs_tflm(load_bundle(out), {"x": x})


def test_other_nodes_of_that_stage_are_still_checked_against_tflm(
        model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eedge.export import export_tflite

    out = tmp_path / "b"
    export_tflite(model_file, out)
    fc = int8_kernels.INT8_KERNELS["FULLY_CONNECTED"]
    monkeypatch.setitem(int8_kernels.INT8_KERNELS, "FULLY_CONNECTED",
                        lambda n, g, a: np.clip(fc(n, g, a).astype(np.int16) + 1, -128,
                                                127).astype(np.int8))
    with pytest.raises(VerificationError, match="TFLite Micro interpreter disagree on 'logits'"):
        check_int8_reference_vs_tflm(load_bundle(out), {"x": int8_inputs(16)})


def test_a_relu6_that_keeps_its_scale_is_checked_against_tflm(tmp_path: Path) -> None:
    from eedge.export import export_tflite

    path = tmp_path / "same.tflite"
    path.write_bytes(relu6_model(relu6_scale=0.05, relu6_zero_point=-20))
    graph, _ = read_tflite_bytes(path.read_bytes())
    assert tflm_relu6_bug_nodes(graph) == []
    result = export_tflite(path, tmp_path / "b")
    report = result.bundle.manifest["verification"]
    assert report["tflite_int8"]["reference_vs_tflm"]["stages"] == [
        {"name": "stage0", "reference": TFLM}]


def test_parts_cut_around_each_exception_and_cover_every_node() -> None:
    graph, _ = read_tflite_bytes(relu6_model())
    parts = split_at(graph, tflm_relu6_bug_nodes(graph))
    assert [(p.nodes, p.reference) for p in parts] == [
        ([0], TFLM), ([1], LITERT_REF), ([2, 3], TFLM)]
    assert parts[1].inputs == ["conv_out"] and parts[1].outputs == [RELU6_OUTPUT]
    assert parts[2].inputs == [RELU6_OUTPUT] and parts[2].outputs == ["flat", "logits"]
