"""A small three-exit CNN written with ``onnx.helper``, and its int8 bundle, for fuzzing.

The demo's digits CNN needs torch to export (several seconds of import and
export, too much for a fuzz file's budget), so the model fuzzers start from
this stand-in with the same shape of problem: 8x8 single-channel images,
conv stages with ReLU, three exits with pooled heads, a symbolic batch.
Exporting it with ``int8=True`` gives the per-stage and whole-model int8
``.tflite`` files eedge writes, which the TFLite fuzzer mutates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = 10


def _conv(rng: np.random.Generator, name: str, x: str, cin: int, cout: int, stride: int,
          inits: list[onnx.TensorProto]) -> onnx.NodeProto:
    w = rng.normal(0, 0.5, (cout, cin, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, cout).astype(np.float32)
    inits += [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")]
    return helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.y"],
                            kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride])


def _head(rng: np.random.Generator, name: str, x: str, channels: int, out: str,
          inits: list[onnx.TensorProto]) -> list[onnx.NodeProto]:
    w = rng.normal(0, 0.5, (CLASSES, channels)).astype(np.float32)
    b = rng.normal(0, 0.1, CLASSES).astype(np.float32)
    inits += [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")]
    return [helper.make_node("GlobalAveragePool", [x], [f"{name}.pool"]),
            helper.make_node("Flatten", [f"{name}.pool"], [f"{name}.flat"], axis=1),
            helper.make_node("Gemm", [f"{name}.flat", f"{name}.w", f"{name}.b"], [out],
                             transB=1)]


def tiny_cnn(seed: int = 0) -> onnx.ModelProto:
    """input [N,1,8,8] -> conv/relu (exit0) -> conv s2/relu (exit1) -> conv/relu (exit2)."""
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes = [_conv(rng, "c0", "input", 1, 4, 1, inits),
             helper.make_node("Relu", ["c0.y"], ["r0"])]
    nodes += _head(rng, "h0", "r0", 4, "exit0", inits)
    nodes += [_conv(rng, "c1", "r0", 4, 8, 2, inits), helper.make_node("Relu", ["c1.y"], ["r1"])]
    nodes += _head(rng, "h1", "r1", 8, "exit1", inits)
    nodes += [_conv(rng, "c2", "r1", 8, 8, 1, inits), helper.make_node("Relu", ["c2.y"], ["r2"])]
    nodes += _head(rng, "h2", "r2", 8, "exit2", inits)
    graph = helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info(f"exit{i}", TensorProto.FLOAT, ["N", CLASSES])
         for i in range(3)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="eedge-fuzz")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def calibration(seed: int = 1, batch: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (batch, 1, 8, 8)).astype(np.float32)


def tiny_int8_bundle(out: Path) -> Path:
    """Export :func:`tiny_cnn` with int8 TFLite stages to ``out/bundle``; return the bundle."""
    from eedge.export import export_onnx

    out.mkdir(parents=True, exist_ok=True)
    source = out / "tiny.onnx"
    onnx.save(tiny_cnn(), source)
    result = export_onnx(source, out / "bundle", formats=("onnx", "tflite"), int8=True,
                         calibration=calibration())
    source.unlink()
    return result.bundle.path
