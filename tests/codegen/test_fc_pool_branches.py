"""FULLY_CONNECTED and the pools in C on every branch of their kernels, byte for byte
against eedge's int8 reference executor: host build, Cortex-M4 DSP and portable (QEMU).

FULLY_CONNECTED with one input row runs on weights packed by the emitter (blocks of four
rows, the input offset folded into the bias; fully_connected.c): input depths that are
and are not multiples of 4 and 8 (odd and even counts of 4-byte groups, a tail of 1-3
bytes, fewer than 4 inputs), output depths 1, 2, 3, 5, 17 (blocks of four, single rows,
more than one chunk of 16), per-tensor and per-channel scales, RELU/RELU6, no bias, the
input widened once into scratch (8..256 inputs, 8+ outputs; an odd group count) or in
every block.
Asymmetric weights (weight zero point != 0) and token rows (keep_num_dims, an odd row
count) take the unpacked kernels. The pools: global and windowed averages with and
without padding, channel counts not multiples of 4, one channel, and max pools.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_compare import assert_c_equals_executor, flat_exit, int8_inputs, write_tflite

from eedge.ir.graph import Graph, Node, QuantParams, TensorInfo
from eedge.reference.executor import execute

H, W, C = 6, 5, 24
FLAT = H * W * C


def q(scale: float | tuple[float, ...], zero_point: int | tuple[int, ...] = 0,
      axis: int | None = None) -> QuantParams:
    scales = scale if isinstance(scale, tuple) else (scale,)
    zps = zero_point if isinstance(zero_point, tuple) else (zero_point,) * len(scales)
    return QuantParams(tuple(float(np.float32(s)) for s in scales), tuple(zps), axis)


# (name, in_depth, out_depth, activation, per_channel, weight_zero_point, bias, rows)
FCS = [("fc_1x3", 1, 3, "NONE", False, 0, True, 1),
       ("fc_3x5", 3, 5, "RELU", False, 0, True, 1),
       ("fc_4x2", 4, 2, "NONE", False, 0, False, 1),
       ("fc_7x17", 7, 17, "RELU6", False, 0, True, 1),
       ("fc_8x1", 8, 1, "NONE", False, 0, True, 1),
       ("fc_13x4", 13, 4, "NONE", False, 0, True, 1),
       ("fc_16x8", 16, 8, "RELU", False, 0, True, 1),
       ("fc_21x9", 21, 9, "RELU", False, 0, True, 1),
       ("fc_40x12", 40, 12, "NONE", False, 0, True, 1),
       ("fc_129x5", 129, 5, "NONE", False, 0, True, 1),
       ("fc_720x17", FLAT, 17, "NONE", False, 0, True, 1),
       ("fc_pc_13x5", 13, 5, "NONE", True, 0, True, 1),
       ("fc_pc_64x17", 64, 17, "RELU", True, 0, False, 1),
       ("fc_asym_20x6", 20, 6, "NONE", False, 3, True, 1),
       ("fc_rows_3x24x7", 24, 7, "NONE", False, 0, True, 3),
       ("fc_rows_pc_5x8x3", 8, 3, "RELU6", True, 0, True, 5)]

# (name, op, source channels, filter, stride, padding, activation)
POOLS = [("avg_global", "AVERAGE_POOL_2D", C, (H, W), (1, 1), "VALID", "NONE"),
         ("avg_3x3_s2_same", "AVERAGE_POOL_2D", C, (3, 3), (2, 2), "SAME", "NONE"),
         ("avg_2x2_s1_c7", "AVERAGE_POOL_2D", 7, (2, 2), (1, 1), "VALID", "RELU"),
         ("avg_3x2_s1_same_c7", "AVERAGE_POOL_2D", 7, (3, 2), (1, 1), "SAME", "NONE"),
         ("avg_global_c1", "AVERAGE_POOL_2D", 1, (H, W), (1, 1), "VALID", "NONE"),
         ("avg_global_c7", "AVERAGE_POOL_2D", 7, (H, W), (1, 1), "VALID", "RELU6"),
         ("max_3x3_s2_same", "MAX_POOL_2D", C, (3, 3), (2, 2), "SAME", "NONE"),
         ("max_2x2_s2_c7", "MAX_POOL_2D", 7, (2, 2), (2, 2), "VALID", "RELU")]


def branches_graph(kind: str) -> Graph:
    """kind: fc or pool (one graph each: at most 16 exits)"""
    rng = np.random.default_rng(23)
    xq = q(0.05, 7)
    tensors = {"x": TensorInfo("x", (1, H, W, C), "int8", xq),
               "flat": TensorInfo("flat", (1, FLAT), "int8", xq)}
    constants: dict[str, np.ndarray] = {"flat/shape": np.array([1, FLAT], np.int32)}
    const_quant: dict[str, QuantParams] = {}
    nodes = [Node("flat", "RESHAPE", ["x", "flat/shape"], ["flat"], {})]
    outputs = []
    for name, depth, units, act, per_channel, w_zp, with_bias, rows in FCS * (kind == "fc"):
        src = f"{name}/in"
        shape = (1, rows, depth) if rows > 1 else (1, depth)
        tensors[src] = TensorInfo(src, shape, "int8", xq)
        constants[f"{src}/begin"] = np.zeros(2, np.int32)
        constants[f"{src}/size"] = np.array([1, rows * depth], np.int32)
        constants[f"{src}/shape"] = np.array(shape, np.int32)
        tensors[f"{src}/flat"] = TensorInfo(f"{src}/flat", (1, rows * depth), "int8", xq)
        nodes += [Node(f"{src}/flat", "SLICE", ["flat", f"{src}/begin", f"{src}/size"],
                       [f"{src}/flat"], {}),
                  Node(src, "RESHAPE", [f"{src}/flat", f"{src}/shape"], [src], {})]
        w = rng.integers(-127, 128, (units, depth)).astype(np.int8)
        w_scales = tuple(rng.uniform(0.002, 0.02, units)) if per_channel else 0.01
        constants[f"{name}/w"] = w
        const_quant[f"{name}/w"] = (q(w_scales, 0, 0) if per_channel else q(w_scales, w_zp))
        inputs = [src, f"{name}/w", ""]
        if with_bias:
            constants[f"{name}/b"] = rng.integers(-20000, 20000, units).astype(np.int32)
            b_scales = (tuple(0.05 * s for s in w_scales) if per_channel else 0.05 * 0.01)
            const_quant[f"{name}/b"] = q(b_scales, 0, 0 if per_channel else None)
            inputs[2] = f"{name}/b"
        out_shape = (1, rows, units) if rows > 1 else (1, units)
        scale = 0.05 * 0.01 * np.sqrt(depth) * 40
        tensors[name] = TensorInfo(name, out_shape, "int8", q(scale, -5))
        nodes.append(Node(name, "FULLY_CONNECTED", inputs, [name],
                          {"activation": act, "keep_num_dims": rows > 1}))
        outputs.append(name)
    for name, op, channels, (fh, fw), (sh, sw), padding, act in POOLS * (kind == "pool"):
        src = "x"
        if channels != C:
            src = f"{name}/in"
            tensors[src] = TensorInfo(src, (1, H, W, channels), "int8", xq)
            constants[f"{src}/begin"] = np.zeros(4, np.int32)
            constants[f"{src}/size"] = np.array([1, H, W, channels], np.int32)
            nodes.append(Node(src, "SLICE", ["x", f"{src}/begin", f"{src}/size"], [src], {}))
        out_h = -(-H // sh) if padding == "SAME" else (H - fh) // sh + 1
        out_w = -(-W // sw) if padding == "SAME" else (W - fw) // sw + 1
        tensors[name] = TensorInfo(name, (1, out_h, out_w, channels), "int8", xq)
        nodes.append(Node(name, op, [src], [name],
                          {"filter_h": fh, "filter_w": fw, "stride_h": sh, "stride_w": sw,
                           "padding": padding, "activation": act}))
        outputs.append(name)
    exits = []
    macs = {f[0]: f[1] * f[2] * f[7] for f in FCS}
    # every result flattened into one exit, the cheapest first (the final exit costs most)
    for name in sorted(outputs, key=lambda n: macs.get(n, 0)):
        size = int(np.prod(tensors[name].shape))
        flat = f"{name}/exit"
        nodes.append(flat_exit(tensors, constants, name, flat, size, tensors[name].quant))
        exits.append(flat)
    return Graph("fc_pool", [tensors["x"]], exits, nodes, constants, tensors, 13, 8, "tflite",
                 const_quant)


@pytest.mark.parametrize("kind", ["fc", "pool"])
@pytest.mark.parametrize("target,dsp", [("host", None), ("qemu-cortex-m4", True),
                                        ("qemu-cortex-m4", False)])
def test_fc_and_pool_branches_equal_the_reference(tmp_path: Path, kind: str, target: str,
                                                  dsp: bool | None) -> None:
    graph = branches_graph(kind)
    path = tmp_path / "branches.tflite"
    write_tflite(graph, path)
    x = int8_inputs((H, W, C), 5, 6)
    expected = execute(graph, {"x": x})
    for name in graph.exits:  # the outputs are not all clamped to one value
        if not name.startswith(("fc_1x3", "fc_4x2", "fc_8x1", "avg_global_c1")):
            assert len(np.unique(expected[name])) > 4, name
    assert_c_equals_executor(path, graph, x, target, dsp, expected)
