"""Binary ops whose second operand is one value per row, on the host and on a Cortex-M4.

LayerNorm lowers to x - mean and x * (1/std) with the second operand broadcast along
the last axis; binary.c scales that value once per row (ADD/SUB below the table size)
and, for MUL, widens four bytes per step against it (SSAT for the whole int8 range, a
clamp for fused activations). Rows of 18 leave a tail after the four-byte steps. Each
result must equal the reference (itself equal to TFLite Micro, checked here too) with
the DSP path on and off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_binary import _device_exits, _inputs, qp

from eedge.backends.tflite_writer import graph_to_tflite
from eedge.codegen.device_run import run_on_target
from eedge.codegen.model_source import load_codegen_model
from eedge.ir.graph import Graph, Node, TensorInfo
from eedge.ops.binary import quantize_operand
from eedge.reference.executor import execute
from eedge.runtime.interpreters import TFLMModel
from eedge.targets import load_target

SHAPE = (1, 6, 18)
STEPS = [("sub", "SUB", "NONE", (0.07, -5)), ("sub_relu", "SUB", "RELU", (0.05, -30)),
         ("add", "ADD", "RELU6", (0.04, -128)), ("mul", "MUL", "NONE", (0.11, 3)),
         ("mul_relu", "MUL", "RELU", (0.06, -20))]


def rows_graph() -> Graph:
    rng = np.random.default_rng(8)
    x = TensorInfo("x", SHAPE, "int8", qp(0.05, 2))
    row_q = qp(0.03, -7)
    constants = {"row": quantize_operand(rng.uniform(-3, 3, (1, SHAPE[1], 1)), row_q)}
    tensors, nodes, exits = {"x": x}, [], []
    for name, op, activation, q in STEPS:
        tensors[name] = TensorInfo(name, SHAPE, "int8", qp(*q))
        nodes.append(Node(name, op, ["x", "row"], [name], {"activation": activation}))
        flat = f"{name}_exit"
        tensors[flat] = TensorInfo(flat, (1, SHAPE[1] * SHAPE[2]), "int8", tensors[name].quant)
        constants[f"{flat}/shape"] = np.array([1, SHAPE[1] * SHAPE[2]], np.int32)
        nodes.append(Node(flat, "RESHAPE", [name, f"{flat}/shape"], [flat], {}))
        exits.append(flat)
    return Graph("rows", [x], exits, nodes, constants, tensors, 13, 8, "tflite",
                 {"row": row_q})


@pytest.mark.parametrize("target,dsp", [("host", None), ("qemu-cortex-m4", True),
                                        ("qemu-cortex-m4", False)])
def test_row_value_operands_are_bit_exact(tmp_path: Path, target: str, dsp: bool | None
                                          ) -> None:
    graph = rows_graph()
    data = graph_to_tflite(graph, range(len(graph.nodes)), ["x"], graph.exits)
    path = tmp_path / "rows.tflite"
    path.write_bytes(data)
    x = _inputs(SHAPE, 5)[:40]
    expected = execute(graph, {"x": x})
    if target == "host":
        tflm = TFLMModel(data, len(graph.exits)).run([x])
        for name, got in zip(graph.exits, tflm):
            assert np.array_equal(got.reshape(expected[name].shape), expected[name]), name
    run = run_on_target(load_codegen_model(path), load_target(target), x, dsp=dsp)
    device = _device_exits(run)
    for name in graph.exits:
        assert np.array_equal(device[name].reshape(expected[name].shape), expected[name]), name
