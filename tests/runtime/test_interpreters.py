"""The interpreters eedge checks against load every valid model, however its bytes split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from eedge.export import export_onnx
from eedge.runtime.interpreters import tflm_arena_bytes


def few_weights_large_activations() -> onnx.ModelProto:
    """x[N,32,16,16] -> Relu -> GlobalAveragePool -> Flatten -> MatMul(10): an 8 KiB input."""
    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((32, 10)).astype(np.float32), "w")
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["y"])]
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_tflm_gets_an_arena_for_large_activations_and_few_weights(tmp_path: Path) -> None:
    """tflite-micro's default arena (10x the file) failed this valid model at export."""
    onnx.save(few_weights_large_activations(), tmp_path / "m.onnx")
    calibration = np.random.default_rng(1).standard_normal((16, 32, 16, 16)).astype(np.float32)
    result = export_onnx(tmp_path / "m.onnx", tmp_path / "b", int8=True,
                         calibration=calibration, force=True)
    data = (result.bundle.path / "stage0.int8.tflite").read_bytes()
    assert tflm_arena_bytes(data) > 10 * len(data)  # the default would not have held it
    report = result.bundle.manifest["verification"]["tflite_int8"]
    assert report["reference_vs_tflm"]["identical"]


def test_arena_bound_survives_a_damaged_file() -> None:
    assert tflm_arena_bytes(b"\x00" * 64) == 256 << 10
