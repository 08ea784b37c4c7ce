"""FULLY_CONNECTED's output stage in C on every branch, against the reference and TFLM.

conv.c requantizes an FC's int32 sums row by row: with one multiplier and a right
shift, sums within +-2^30 take the short form (SMMULR of twice the sum on the DSP path,
one rounding add and shift) and larger ones TFLite's general arithmetic; a left shift
(output scale below input x weight scale) takes the general arithmetic. Biases near
+-2^30 and +-1.9e9 put sums on both sides of the bound (and of the fast path's range
check exactly at it). Token rows (keep_num_dims: two rows per block, then an odd one)
and a single row go through; host, Cortex-M4 DSP and portable give the reference bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_compare import assert_c_equals_executor, flat_exit, int8_inputs, write_tflite

from eedge.ir.graph import Graph, Node, QuantParams, TensorInfo
from eedge.reference.executor import execute
from eedge.runtime.interpreters import TFLMModel

ROWS, DEPTH, UNITS = 5, 40, 12


def q(scale: float, zero_point: int) -> QuantParams:
    return QuantParams((float(np.float32(scale)),), (zero_point,))


def fc_graph() -> Graph:
    rng = np.random.default_rng(17)
    xq, wq = q(0.05, 3), q(0.01, 0)
    bias_q = q(0.05 * 0.01, 0)
    big = np.array([2**30 - 1, -2**30, 2**30, -2**30 - 1, 1_900_000_000, -1_900_000_000,
                    1_073_000_000, -1_074_000_000, 5, -7, 123_456, 0], np.int32)
    constants: dict[str, np.ndarray] = {
        "w": rng.integers(-127, 128, (UNITS, DEPTH)).astype(np.int8), "big": big,
        # one +-1 per row: a sum is one input, so a multiplier above one stays in range
        "w_one": (np.eye(UNITS, DEPTH, dtype=np.int8) * rng.choice([-1, 1], (UNITS, 1))
                  ).astype(np.int8),
        "small": rng.integers(-3000, 3000, UNITS).astype(np.int32),
        "begin": np.zeros(3, np.int32), "size": np.array([1, 1, DEPTH], np.int32),
        "one_row": np.array([1, DEPTH], np.int32)}
    const_quant = {"w": wq, "w_one": wq, "big": bias_q, "small": bias_q}
    tensors = {"x": TensorInfo("x", (1, ROWS, DEPTH), "int8", xq),
               "row": TensorInfo("row", (1, 1, DEPTH), "int8", xq),
               "row2": TensorInfo("row2", (1, DEPTH), "int8", xq)}
    nodes = [Node("row", "SLICE", ["x", "begin", "size"], ["row"], {}),
             Node("row2", "RESHAPE", ["row", "one_row"], ["row2"], {})]
    exits = []
    # output scale: sums of 2^30 land inside int8 (right shift ~23) / a left shift
    for name, src, w, bias, scale, keep, act in (
            ("big_rows", "x", "w", "big", 0.05 * 0.01 * 2**24, True, "NONE"),
            ("big_one", "row2", "w", "big", 0.05 * 0.01 * 2**24, False, "RELU"),
            ("small_rows", "x", "w", "small", 0.05 * 0.01 * 40, True, "NONE"),
            ("left_rows", "x", "w_one", None, 0.05 * 0.01 * 0.9, True, "NONE")):
        shape = (1, ROWS, UNITS) if keep else (1, UNITS)
        tensors[name] = TensorInfo(name, shape, "int8", q(scale, -4))
        nodes.append(Node(name, "FULLY_CONNECTED", [src, w, bias or ""], [name],
                          {"activation": act, "keep_num_dims": keep}))
        flat = f"{name}_exit"
        size = int(np.prod(shape))
        nodes.append(flat_exit(tensors, constants, name, flat, size, tensors[name].quant))
        exits.append(flat)
    return Graph("fc", [tensors["x"]], exits, nodes, constants, tensors, 13, 8, "tflite",
                 const_quant)


@pytest.mark.parametrize("target,dsp", [("host", None), ("qemu-cortex-m4", True),
                                        ("qemu-cortex-m4", False)])
def test_fc_output_stage_equals_the_reference(tmp_path: Path, target: str,
                                              dsp: bool | None) -> None:
    graph = fc_graph()
    path = tmp_path / "fc.tflite"
    data = write_tflite(graph, path)
    x = int8_inputs((ROWS, DEPTH), 2, 30)
    expected = execute(graph, {"x": x})
    outputs = [expected[name] for name in graph.exits]
    # sums on both sides of 2^30 land inside int8 (the bias dominates at this scale), and
    # the other stages spread over many values
    assert len(np.unique(expected["big_rows_exit"])) >= 5
    assert len(np.unique(expected["small_rows_exit"])) > 50
    assert len(np.unique(expected["left_rows_exit"])) > 50
    if target == "host":
        tflm = TFLMModel(data, len(graph.exits)).run([x])
        for got, want in zip(tflm, outputs):
            assert np.array_equal(got.reshape(want.shape), want)
    assert_c_equals_executor(path, graph, x, target, dsp, expected)
