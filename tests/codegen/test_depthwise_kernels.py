"""DEPTHWISE_CONV_2D in C on every branch of depthwise.c, against the reference executor.

Multiplier 1 keeps each output's sum in registers: on the DSP path 3x3 windows with
dilation 1 that lie inside the image run per row (widened weights, short
requantization), windows over the padding and other kernels go block by block over
their valid taps, and channels past the last multiple of 4 go one by one (the whole
portable path). Depth multiplier 2 takes the general loop. The short requantization
applies when sums stay within 2^30 and shifts are right shifts of 1..22 bits; a left
shift (multiplier above one) and sums beyond 2^30 take TFLite's general arithmetic.
Images from 1x1 up, channel counts 1..17, strides 1 and 2, SAME and VALID, 5x5 and 1x3
kernels, dilation 2, RELU/RELU6 with asymmetric zero points: host, Cortex-M4 DSP and
portable builds give the reference executor's bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_compare import (assert_c_equals_executor, flat_exit, int8_inputs, same_or_valid,
                            write_tflite)

from eedge.ir.graph import Graph, Node, QuantParams, TensorInfo
from eedge.reference.executor import execute

IN_SCALE, IN_ZP = 0.05, 7


def q(scale: float | list[float], zero_point: int, axis: int | None = None) -> QuantParams:
    scales = scale if isinstance(scale, list) else [scale]
    return QuantParams(tuple(float(np.float32(s)) for s in scales),
                       (zero_point,) * len(scales), axis)


# name, kernel (h, w), stride, padding, dilation, multiplier, activation, bias kind
# ("normal", "none": zeros, "big": sums beyond 2^30, "left": a multiplier above one)
SPECS = [
    ("s1_same", (3, 3), 1, "SAME", 1, 1, "RELU", "normal"),
    ("s2_same", (3, 3), 2, "SAME", 1, 1, "RELU6", "normal"),
    ("s1_valid", (3, 3), 1, "VALID", 1, 1, "NONE", "none"),
    ("s2_valid", (3, 3), 2, "VALID", 1, 1, "NONE", "normal"),
    ("k5", (5, 5), 1, "SAME", 1, 1, "RELU", "normal"),
    ("k1x3", (1, 3), 1, "SAME", 1, 1, "NONE", "normal"),
    ("dil2", (3, 3), 1, "SAME", 2, 1, "RELU6", "normal"),
    ("mult2", (3, 3), 1, "SAME", 1, 2, "NONE", "normal"),
    ("big", (3, 3), 1, "SAME", 1, 1, "NONE", "big"),
    ("left", (3, 3), 2, "SAME", 1, 1, "NONE", "left"),
]

# (height, width, channels) of the input image
SHAPES = [(1, 1, 3), (2, 2, 5), (4, 5, 1), (3, 3, 4), (5, 4, 8), (6, 7, 12), (7, 9, 17)]


def dw_graph(h: int, w: int, c: int, seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    tensors = {"x": TensorInfo("x", (1, h, w, c), "int8", q(IN_SCALE, IN_ZP))}
    constants: dict[str, np.ndarray] = {}
    const_quant: dict[str, QuantParams] = {}
    layers: list[tuple[int, list[Node]]] = []
    exits: list[str] = []
    for name, (kh, kw), stride, padding, dil, mult, act, kind in SPECS:
        oc = c * mult
        w_scales = [0.01 * (1 + (k % 5) / 4) for k in range(oc)]
        if kind == "left":   # one +-1 tap per channel: a sum is one input
            wt = np.zeros((1, kh, kw, oc), np.int8)
            wt[0, kh // 2, kw // 2] = rng.choice([-1, 1], oc)
        else:
            wt = rng.integers(-127, 128, (1, kh, kw, oc)).astype(np.int8)
        constants[f"{name}/w"] = wt
        const_quant[f"{name}/w"] = q(w_scales, 0, 3)   # per channel on the last axis
        inputs = ["x", f"{name}/w", ""]
        if True:   # LiteRT refuses a depthwise layer without its bias: "none" is zeros
            if kind == "none":
                bias = np.zeros(oc, np.int64)
            elif kind == "big":
                bias = rng.choice([2**30 - 1, -2**30, 1_900_000_000, -1_900_000_000,
                                   1_073_000_000, 5], oc)
            else:
                bias = rng.integers(-3000, 3000, oc)
            constants[f"{name}/b"] = bias.astype(np.int32)
            const_quant[f"{name}/b"] = q([IN_SCALE * s for s in w_scales], 0)
            inputs[2] = f"{name}/b"
        taps = kh * kw
        factor = {"big": 2.0**24, "left": 0.9}.get(kind, 40.0 * np.sqrt(taps) * 1.5)
        out_q = q(IN_SCALE * 0.01 * factor, -5 if act != "NONE" else 3)
        oh, ow = same_or_valid(h, w, kh, kw, stride, padding, dil)
        if oh <= 0 or ow <= 0:
            continue
        tensors[name] = TensorInfo(name, (1, oh, ow, oc), "int8", out_q)
        flat, size = f"{name}_exit", oh * ow * oc
        exit_node = flat_exit(tensors, constants, name, flat, size, out_q)
        layers.append((size * taps, [
            Node(name, "DEPTHWISE_CONV_2D", inputs, [name],
                 {"stride_h": stride, "stride_w": stride, "dilation_h": dil, "dilation_w": dil,
                  "padding": padding, "depth_multiplier": mult, "activation": act}),
            exit_node]))
        exits.append(flat)
    # exits in depth order: the one with the most MACs last
    layers.sort(key=lambda item: item[0])
    nodes = [n for _, pair in layers for n in pair]
    exits = [pair[1].outputs[0] for _, pair in layers]
    return Graph("dw", [tensors["x"]], exits, nodes, constants, tensors, 13, 8, "tflite",
                 const_quant)


@pytest.mark.parametrize("target,dsp", [("host", None), ("qemu-cortex-m4", True),
                                        ("qemu-cortex-m4", False)])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_depthwise_equals_the_reference(tmp_path: Path, shape: tuple[int, int, int],
                                        target: str, dsp: bool | None) -> None:
    h, w, c = shape
    graph = dw_graph(h, w, c, seed=h * 100 + w * 10 + c)
    path = tmp_path / "dw.tflite"
    write_tflite(graph, path)
    x = int8_inputs((h, w, c), 5, 4)
    expected = execute(graph, {"x": x})
    if target == "host":
        if h * w * c >= 100:   # the outputs are spread, not saturated
            assert len(np.unique(expected["s1_same_exit"])) > 20
            assert len(np.unique(expected["left_exit"])) > 4
    assert_c_equals_executor(path, graph, x, target, dsp, expected)
