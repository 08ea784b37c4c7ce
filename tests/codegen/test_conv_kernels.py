"""CONV_2D's C kernel on every branch, byte for byte against the int8 reference executor.

conv.c gathers two output pixels' receptive fields as 16-bit columns (straight from the
input when in_c is a multiple of 4, through a byte copy otherwise; zero points outside the
image), runs weight rows two at a time over groups of 4 taps (the last 1-3 taps from the
word ending the row, or byte by byte when the row is shorter than 4), and requantizes
16 channels at a time: the short form from the host table (conv_requant) with SSAT or a
clamp, or TFLite's general arithmetic when a shift is a left shift or a sum can pass
2^30. The graphs below reach each of those with odd pixel counts, odd and small channel
counts, padding on every side, strides 1 and 2, dilation, fused RELU/RELU6 and
asymmetric zero points; host, Cortex-M4 DSP and portable builds give the reference bytes
(and the reference equals TFLite Micro on the host).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_compare import (assert_c_equals_executor, flat_exit, int8_inputs, same_or_valid,
                            write_tflite)

from eedge.backends.tflite_writer import graph_to_tflite
from eedge.codegen.emit import EmitContext, _conv2d
from eedge.ir.graph import Graph, Node, QuantParams, TensorInfo
from eedge.reference.executor import execute
from eedge.runtime.interpreters import TFLMModel

H, W, C = 7, 5, 8          # 35 pixels: odd, so the last pixel pair has one pixel
IN_SCALE, IN_ZP = 0.05, 9

# name, in_c, (kh, kw), stride, padding, dilation, out_c, activation, kind
# kind: "normal" (short requantization), "big" (biases near +-2^30 and beyond: general
# arithmetic), "left" (output scale below input x weight scale: a left shift), "none"
# (zero bias), "dead" (half the channels with near-zero weight scales: right shifts of ~30
# bits, as real models' dead channels have: general arithmetic)
SPECS = [
    ("pw", 8, (1, 1), 1, "VALID", 1, 6, "RELU", "normal"),          # 1x1 read in place
    ("pw_s2", 4, (1, 1), 2, "SAME", 1, 5, "NONE", "normal"),         # 1x1 stride 2
    ("pw_c1", 1, (1, 1), 1, "VALID", 1, 3, "NONE", "none"),          # k = 1 < 4
    ("pw_c3", 3, (1, 1), 1, "VALID", 1, 17, "RELU6", "normal"),      # k = 3, 2 chunks
    ("pw_c6", 6, (1, 1), 1, "VALID", 1, 4, "NONE", "normal"),        # k = 6: tail of 2
    ("c3", 3, (3, 3), 2, "SAME", 1, 8, "RELU6", "normal"),           # vww's stem: k = 27
    ("c1", 1, (4, 2), 1, "SAME", 1, 5, "RELU", "normal"),            # kws-like, in_c 1
    ("c4", 4, (3, 3), 1, "SAME", 1, 1, "NONE", "normal"),            # one output channel
    ("c4v", 4, (3, 2), 1, "VALID", 1, 6, "RELU", "none"),
    ("c8s2", 8, (3, 3), 2, "SAME", 1, 33, "NONE", "normal"),         # 3 chunks, odd
    ("dil", 4, (3, 3), 1, "SAME", 2, 5, "NONE", "normal"),           # dilation 2
    ("dil_c6", 6, (2, 3), 1, "VALID", 2, 3, "RELU", "normal"),       # dilation, bytes
    ("big", 4, (3, 3), 1, "SAME", 1, 6, "NONE", "big"),              # sums past 2^30
    ("left", 8, (1, 3), 1, "SAME", 1, 6, "NONE", "left"),            # left shifts
    ("left_c5", 5, (2, 2), 2, "SAME", 1, 3, "RELU6", "left"),
    ("dead", 8, (1, 1), 1, "VALID", 1, 6, "RELU", "dead"),          # right shifts of ~30
]


def q(scale, zero_point, axis: int | None = None) -> QuantParams:
    scales = tuple(float(np.float32(s)) for s in np.atleast_1d(scale))
    zps = (zero_point,) * len(scales)
    return QuantParams(scales, zps, axis) if axis is not None else QuantParams(scales, zps)


def conv_graph(seed: int = 3) -> Graph:
    rng = np.random.default_rng(seed)
    tensors = {"x": TensorInfo("x", (1, H, W, C), "int8", q(IN_SCALE, IN_ZP))}
    constants: dict[str, np.ndarray] = {}
    const_quant: dict[str, QuantParams] = {}
    nodes, exits = [], []
    for name, in_c, (kh, kw), stride, padding, dil, oc, act, kind in SPECS:
        src = "x"
        if in_c != C:
            src = f"{name}/in"
            tensors[src] = TensorInfo(src, (1, H, W, in_c), "int8", q(IN_SCALE, IN_ZP))
            constants[f"{src}/begin"] = np.array([0, 0, 0, C - in_c], np.int32)
            constants[f"{src}/size"] = np.array([1, H, W, in_c], np.int32)
            nodes.append(Node(src, "SLICE", ["x", f"{src}/begin", f"{src}/size"], [src], {}))
        w_scales = [0.01 * (1 + (k % 5) / 4) for k in range(oc)]
        if kind == "dead":
            w_scales = [1e-9 if k % 2 == 0 else s for k, s in enumerate(w_scales)]
        if kind == "left":   # one +-1 tap per channel: a sum is one input
            wt = np.zeros((oc, kh, kw, in_c), np.int8)
            wt[:, kh // 2, kw // 2, 0] = rng.choice([-1, 1], oc)
        else:
            wt = rng.integers(-127, 128, (oc, kh, kw, in_c)).astype(np.int8)
        constants[f"{name}/w"] = wt
        const_quant[f"{name}/w"] = q(w_scales, 0, 0)   # per output channel (OHWI)
        inputs = [src, f"{name}/w", f"{name}/b"]
        if kind == "none":   # LiteRT wants CONV_2D's bias: all zeros instead
            bias = np.zeros(oc, np.int64)
        elif kind == "big":
            bias = np.resize([2**30 - 1, -2**30, 1_900_000_000, -1_900_000_000,
                              1_073_000_000, 5], oc)
        else:   # left: a sum is one input, so small biases keep outputs inside int8
            bias = rng.integers(-20, 20, oc) if kind == "left" else rng.integers(-3000, 3000, oc)
        constants[f"{name}/b"] = bias.astype(np.int32)
        const_quant[f"{name}/b"] = q([IN_SCALE * s for s in w_scales], 0)
        taps = kh * kw * in_c
        factor = {"big": 2.0**24, "left": 0.9}.get(kind, 40.0 * np.sqrt(taps) * 1.5)
        # asymmetric output zero points, different with and without an activation
        out_q = q(IN_SCALE * 0.01 * factor, -7 if act != "NONE" else 4)
        oh, ow = same_or_valid(H, W, kh, kw, stride, padding, dil)
        assert oh > 0 and ow > 0, name
        tensors[name] = TensorInfo(name, (1, oh, ow, oc), "int8", out_q)
        nodes.append(Node(name, "CONV_2D", inputs, [name],
                          {"stride_h": stride, "stride_w": stride, "dilation_h": dil,
                           "dilation_w": dil, "padding": padding, "activation": act}))
        flat, size = f"{name}_exit", oh * ow * oc
        nodes.append(flat_exit(tensors, constants, name, flat, size, out_q))
        exits.append((size * taps, flat))
    # exits in order of cost: the partitioner wants the final exit to be the dearest
    return Graph("conv", [tensors["x"]], [e for _, e in sorted(exits)], nodes, constants,
                 tensors, 13, 8, "tflite", const_quant)


def inputs(n: int = 6) -> np.ndarray:
    return int8_inputs((H, W, C), 5, n)   # the widest sums of both signs first


def test_specs_reach_both_requantization_forms() -> None:
    """The short table is emitted exactly where its bounds hold for every channel: the
    normal layers get it; big biases (sums past 2^30), left shifts and dead channels
    (right shifts of ~30 bits, past the 22 the table's rounding term allows) take
    TFLite's general arithmetic."""
    graph = conv_graph()
    kinds = {name: kind for name, *_, kind in SPECS}
    for node in graph.nodes:
        if node.op_type != "CONV_2D":
            continue
        ctx = EmitContext(graph, lambda t: t, lambda t: t, ident="t")
        tables = [d for d in _conv2d(ctx, node).declarations if "t_cq[" in d]
        assert bool(tables) == (kinds[node.name] in ("normal", "none")), node.name
        if tables:
            values = [int(v) for v in tables[0].split("{")[1].rstrip("};").split(",")]
            assert all(1 <= r <= 22 for r in values[2::3]), (node.name, values)


def test_reference_equals_tflm() -> None:
    graph = conv_graph()
    data = graph_to_tflite(graph, range(len(graph.nodes)), ["x"], graph.exits)
    x = inputs()
    expected = execute(graph, {"x": x})
    tflm = TFLMModel(data, len(graph.exits)).run([x])
    for name, got in zip(graph.exits, tflm):
        want = expected[name]
        assert np.array_equal(got.reshape(want.shape), want), name
        assert len(np.unique(want)) > 3 or name.startswith("pw_c1"), name


@pytest.mark.parametrize("target,dsp", [("host", None), ("qemu-cortex-m4", True),
                                        ("qemu-cortex-m4", False)])
def test_conv_c_equals_the_reference(tmp_path: Path, target: str, dsp: bool | None) -> None:
    graph = conv_graph()
    path = tmp_path / "conv.tflite"
    write_tflite(graph, path)
    assert_c_equals_executor(path, graph, inputs(), target, dsp)


@pytest.mark.parametrize("target,dsp", [("host", None), ("qemu-cortex-m4", False)])
def test_portable_conv_without_folded_bias(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           target: str, dsp: bool | None) -> None:
    """The portable path folds the input offset into a host-side bias (conv_bias) and sums
    raw int8 products; where the emitter cannot (weights not constant, or a partial sum
    that could overflow) it widens the columns with the offset instead. Real models rarely
    reach that branch, so it is forced here and must give the same bytes."""
    import eedge.codegen.emit as emit

    monkeypatch.setattr(emit, "_conv_folded_bias", lambda *args: None)
    graph = conv_graph()
    ctx = EmitContext(graph, lambda t: t, lambda t: t, ident="t")
    conv = next(n for n in graph.nodes if n.op_type == "CONV_2D")
    assert not any("t_cb[" in d for d in emit._conv2d(ctx, conv).declarations)
    test_conv_c_equals_the_reference(tmp_path, target, dsp)


def test_folded_bias_is_emitted() -> None:
    graph = conv_graph()
    for node in graph.nodes:
        if node.op_type == "CONV_2D":
            ctx = EmitContext(graph, lambda t: t, lambda t: t, ident="t")
            assert any("t_cb[" in d for d in _conv2d(ctx, node).declarations), node.name
