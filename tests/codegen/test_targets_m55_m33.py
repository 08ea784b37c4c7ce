"""Cortex-M55 (mps3-an547, Helium/MVE) and Cortex-M33 (mps2-an505) targets.

The MLPerf Tiny models give TFLite Micro's bytes on qemu-cortex-m55 with the MVE kernels
(runtime/src/*_mve.c, EEDGE_USE_MVE) and with the portable ones, and on qemu-cortex-m33
with the DSP kernels. Small graphs drive every branch of the MVE kernels against eedge's
reference executor: CONV_2D with reduction lengths below, at and past multiples of 16,
channel counts not multiple of 2, 4 or 16 (and more than one 64-channel block), strides
1/2, SAME/VALID padding, dilation, 1x1 in place and over padding, odd pixel counts,
sums beyond 2^30 and left shifts (multipliers above one); DEPTHWISE_CONV_2D on the
depthwise suite's shapes (channel tails 1..7 take the predicated group); FULLY_CONNECTED
with depths not multiple of 16, outputs not multiple of 4 or 16, per-tensor and
per-channel scales. The per-op profiler works on the M55 (SysTick at 31.25 instructions
per tick).
"""

from __future__ import annotations

import json
from pathlib import Path

import device_compare
import numpy as np
import pytest
from codegen.test_depthwise_kernels import SHAPES as DW_SHAPES
from codegen.test_depthwise_kernels import dw_graph
from device_compare import flat_exit, int8_inputs, same_or_valid, write_tflite
from reference.test_mlperf_tiny import BASELINE, FILES, MODELS, xorshift_bytes

from eedge.codegen.device_run import run_on_target
from eedge.codegen.model_source import load_codegen_model
from eedge.codegen.project import generate_project, makefile
from eedge.ir.graph import Graph, Node, QuantParams, TensorInfo
from eedge.reference.executor import execute
from eedge.targets import load_target

M55, M33 = "qemu-cortex-m55", "qemu-cortex-m33"
SEEDS = (0, 1, 2)
IN_SCALE, IN_ZP = 0.05, -9


def q(scale: float | list[float], zero_point: int, axis: int | None = None) -> QuantParams:
    scales = scale if isinstance(scale, list) else [scale]
    return QuantParams(tuple(float(np.float32(s)) for s in scales),
                       (zero_point,) * len(scales), axis)


def test_targets_describe_the_machines(tmp_path: Path) -> None:
    m55, m33 = load_target(M55), load_target(M33)
    assert m55.get("qemu") == {"machine": "mps3-an547", "instructions_per_tick": 31.25}
    assert m33.get("qemu") == {"machine": "mps2-an505", "instructions_per_tick": 50}
    assert m55.get("mve") is True and not m33.get("mve")
    assert "-DEEDGE_USE_MVE" in makefile(m55, "qemu-mps2", "O2", True)
    assert "-DEEDGE_USE_MVE" not in makefile(m55, "qemu-mps2", "O2", False)  # portable
    assert "-DEEDGE_USE_MVE" not in makefile(m33, "qemu-mps2", "O2", True)
    assert "-DEEDGE_UART_CMSDK_BASE=0x59303000u" in makefile(m55, "qemu-mps2", "O2", True)
    assert "-DEEDGE_UART_CMSDK_BASE=0x50200000u" in makefile(m33, "qemu-mps2", "O2", True)
    assert "UART_CMSDK_BASE" not in makefile(load_target("qemu-cortex-m4"), "qemu-mps2",
                                             "O2", True)


def mlperf_inputs(name: str) -> tuple[object, np.ndarray, dict[str, str]]:
    runs = json.loads(BASELINE.read_text())["runs"]
    model = load_codegen_model(MODELS / FILES[name])
    model.thresholds = [None] * len(model.thresholds)
    shape = [int(d) for d in model.graph.tensors[model.input].shape]
    x = np.concatenate([xorshift_bytes(s, int(np.prod(shape))).view(np.int8).reshape(shape)
                        for s in SEEDS])
    return model, x, runs[f"cmsis_nn-O2/{name}"]["outputs_hex"]


@pytest.mark.skipif(not MODELS.is_dir() or not BASELINE.is_file(),
                    reason="../shared/models/mlperf_tiny or the TFLM baseline is absent")
@pytest.mark.parametrize("target,dsp", [(M55, True), (M55, False), (M33, True)],
                         ids=["m55-mve", "m55-portable", "m33-dsp"])
@pytest.mark.parametrize("name", sorted(FILES))
def test_mlperf_gives_tflm_bytes(name: str, target: str, dsp: bool) -> None:
    model, x, expected = mlperf_inputs(name)
    run = run_on_target(model, load_target(target), x, dsp=dsp)
    assert len(run.run.samples) == len(SEEDS)
    for seed, sample in zip(SEEDS, run.run.samples):
        assert sample.stage_outputs[-1][0].tobytes().hex() == expected[str(seed)], \
            f"{name} seed {seed} on {target} (dsp={dsp}): output differs from TFLM's"
    assert run.run.stack_bytes is not None and 0 < run.run.stack_bytes < 8192


# name, kernel (h, w), stride, padding, dilation, output channels, activation, bias kind
CONV_SPECS = [
    ("k3_s1_same", (3, 3), 1, "SAME", 1, 7, "RELU", "normal"),
    ("k3_s2_same", (3, 3), 2, "SAME", 1, 18, "RELU6", "normal"),
    ("k3_valid", (3, 3), 1, "VALID", 1, 5, "NONE", "normal"),  # LiteRT: conv needs a bias
    ("k1", (1, 1), 1, "VALID", 1, 33, "NONE", "normal"),
    ("k1_s2", (1, 1), 2, "SAME", 1, 1, "NONE", "normal"),
    ("k1x4", (1, 4), 1, "SAME", 1, 70, "RELU", "normal"),     # two channel blocks
    ("dil2", (3, 3), 1, "SAME", 2, 4, "NONE", "normal"),
    ("big", (3, 3), 1, "SAME", 1, 6, "NONE", "big"),
    ("left", (3, 3), 2, "SAME", 1, 3, "NONE", "left"),
]


def conv_graph(h: int, w: int, c: int, seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    tensors = {"x": TensorInfo("x", (1, h, w, c), "int8", q(IN_SCALE, IN_ZP))}
    constants: dict[str, np.ndarray] = {}
    const_quant: dict[str, QuantParams] = {}
    nodes, exits = [], []
    for name, (kh, kw), stride, padding, dil, oc, act, kind in CONV_SPECS:
        w_scales = [0.01 * (1 + (k % 5) / 4) for k in range(oc)]
        if kind == "left":   # one +-1 tap per channel: a sum is one input
            wt = np.zeros((oc, kh, kw, c), np.int8)
            wt[:, kh // 2, kw // 2, 0] = rng.choice([-1, 1], oc)
        else:
            wt = rng.integers(-127, 128, (oc, kh, kw, c)).astype(np.int8)
        constants[f"{name}/w"] = wt
        const_quant[f"{name}/w"] = q(w_scales, 0, 0)   # per output channel (OHWI)
        inputs = ["x", f"{name}/w", ""]
        if kind != "none":
            if kind == "big":
                bias = rng.choice([2**30 - 1, -2**30, 1_900_000_000, -1_900_000_000,
                                   1_073_000_000, 5], oc)
            else:
                bias = rng.integers(-3000, 3000, oc)
            constants[f"{name}/b"] = bias.astype(np.int32)
            const_quant[f"{name}/b"] = q([IN_SCALE * s for s in w_scales], 0)
            inputs[2] = f"{name}/b"
        taps = kh * kw * c
        factor = {"big": 2.0**24, "left": 0.9}.get(kind, 40.0 * np.sqrt(taps) * 1.5)
        out_q = q(IN_SCALE * 0.01 * factor, -5 if act != "NONE" else 3)
        oh, ow = same_or_valid(h, w, kh, kw, stride, padding, dil)
        if oh <= 0 or ow <= 0:
            continue
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


# (depth, units, per-channel scales, activation, bias kind)
FC_SPECS = [(5, 3, False, "NONE", "normal"), (16, 4, True, "RELU", "normal"),
            (40, 17, True, "NONE", "big"), (33, 16, False, "RELU6", "none"),
            (100, 35, False, "NONE", "left")]


def fc_graph(seed: int) -> Graph:
    """One FULLY_CONNECTED per spec, each on a slice of the same input row."""
    rng = np.random.default_rng(seed)
    depth_all = max(d for d, *_ in FC_SPECS)
    tensors = {"x": TensorInfo("x", (1, depth_all), "int8", q(IN_SCALE, IN_ZP))}
    constants: dict[str, np.ndarray] = {}
    const_quant: dict[str, QuantParams] = {}
    nodes, exits = [], []
    for k, (depth, units, per_channel, act, kind) in enumerate(FC_SPECS):
        name = f"fc{k}"
        src = f"{name}/in"
        tensors[src] = TensorInfo(src, (1, depth), "int8", q(IN_SCALE, IN_ZP))
        constants[f"{src}/begin"] = np.zeros(2, np.int32)
        constants[f"{src}/size"] = np.array([1, depth], np.int32)
        nodes.append(Node(src, "SLICE", ["x", f"{src}/begin", f"{src}/size"], [src], {}))
        w_scales = [0.01 * (1 + (j % 5) / 4) for j in range(units)] if per_channel else [0.01]
        if kind == "left":
            wt = (np.eye(units, depth, dtype=np.int8) * rng.choice([-1, 1], (units, 1)))
        else:
            wt = rng.integers(-127, 128, (units, depth))
        constants[f"{name}/w"] = wt.astype(np.int8)
        const_quant[f"{name}/w"] = q(w_scales, 0, 0 if per_channel else None)
        inputs = [src, f"{name}/w", ""]
        if kind != "none":
            bias = (rng.choice([2**30 - 1, -2**30, 1_900_000_000, -1_900_000_000, 5], units)
                    if kind == "big" else rng.integers(-3000, 3000, units))
            constants[f"{name}/b"] = bias.astype(np.int32)
            bscales = [IN_SCALE * s for s in w_scales] if per_channel else [IN_SCALE * 0.01]
            const_quant[f"{name}/b"] = q(bscales, 0)
            inputs[2] = f"{name}/b"
        factor = {"big": 2.0**24, "left": 0.9}.get(kind, 40.0 * np.sqrt(depth) * 1.5)
        tensors[name] = TensorInfo(name, (1, units), "int8",
                                   q(IN_SCALE * 0.01 * factor, -4 if act != "NONE" else 2))
        nodes.append(Node(name, "FULLY_CONNECTED", inputs, [name],
                          {"activation": act, "keep_num_dims": False}))
        exits.append((depth * units, name))
    return Graph("fc", [tensors["x"]], [e for _, e in sorted(exits)], nodes, constants,
                 tensors, 13, 8, "tflite", const_quant)


def assert_c_equals_executor(tmp_path: Path, graph: Graph, x: np.ndarray, target: str,
                             dsp: bool) -> None:
    path = tmp_path / f"{graph.name}.tflite"
    write_tflite(graph, path)
    device_compare.assert_c_equals_executor(path, graph, x, target, dsp)


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 5, 1), (4, 4, 5), (5, 6, 16), (6, 5, 17),
                                   (3, 3, 40)], ids=lambda s: "x".join(map(str, s)))
def test_conv_mve_equals_the_reference(tmp_path: Path, shape: tuple[int, int, int]) -> None:
    h, w, c = shape
    graph = conv_graph(h, w, c, seed=h * 100 + w * 10 + c)
    assert_c_equals_executor(tmp_path, graph, int8_inputs(shape, c), M55, True)


@pytest.mark.parametrize("shape", DW_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_depthwise_mve_equals_the_reference(tmp_path: Path, shape: tuple[int, int, int]) -> None:
    h, w, c = shape
    graph = dw_graph(h, w, c, seed=h * 100 + w * 10 + c)
    assert_c_equals_executor(tmp_path, graph, int8_inputs(shape, c), M55, True)


def test_depthwise_mve_saturated_sums(tmp_path: Path) -> None:
    """Output scales 1000x too fine: requantized sums far beyond 16 bits, which the MVE
    depthwise narrows with saturation before its clamp (RELU6 and NONE ranges)."""
    import dataclasses

    graph = dw_graph(5, 6, 12, seed=7)
    for name in ("s2_same", "s2_same_exit", "k5", "k5_exit", "k1x3", "k1x3_exit"):
        info = graph.tensors[name]
        quant = dataclasses.replace(info.quant, scale=tuple(v / 1000 for v in info.quant.scale))
        graph.tensors[name] = dataclasses.replace(info, quant=quant)
    x = int8_inputs((5, 6, 12), 9, count=6)
    expected = execute(graph, {"x": x})
    assert {-128, 127} <= set(np.unique(expected["k1x3_exit"]).tolist())   # NONE
    assert {-5, 127} <= set(np.unique(expected["k5_exit"]).tolist())   # RELU
    assert_c_equals_executor(tmp_path, graph, x, M55, True)


@pytest.mark.parametrize("target,dsp", [(M55, True), (M33, True)], ids=["m55-mve", "m33-dsp"])
def test_fully_connected_equals_the_reference(tmp_path: Path, target: str, dsp: bool) -> None:
    graph = fc_graph(seed=3)
    x = int8_inputs((graph.tensors["x"].shape[1],), 4, count=20)
    expected = execute(graph, {"x": x})
    assert len(np.unique(expected["fc4"])) > 10 and len(np.unique(expected["fc0"])) > 2
    assert_c_equals_executor(tmp_path, graph, x, target, dsp)


def test_per_op_profile_on_m55(tmp_path: Path) -> None:
    """Per-op instructions on the M55 (fractional ticks x 31.25) add up to the stage."""
    from eedge.profiling.per_op import build_op_report, profile_ops

    graph = conv_graph(6, 5, 17, seed=1)
    path = tmp_path / "conv.tflite"
    write_tflite(graph, path)
    model = load_codegen_model(path)
    profile = profile_ops(model, load_target(M55), int8_inputs((6, 5, 17), 1)[:1], dsp=True)
    assert profile.unit == "instructions" and profile.environment["qemu_machine"] == "mps3-an547"
    convs = [v for lb, v in zip(profile.labels, profile.values) if lb.op == "CONV_2D"]
    assert len(convs) == len(CONV_SPECS) and all(v > 0 for v in convs)
    report = build_op_report(profile)
    assert report["stages"]
    assert profile.stage_totals
    for stage, stage_total in profile.stage_totals.items():
        ops = sum(v for lb, v in zip(profile.labels, profile.values) if lb.stage == stage)
        assert 0.5 * stage_total <= ops <= stage_total + 2 * 31.25 * len(profile.labels)


def test_m55_project_links_vectors_into_itcm(tmp_path: Path) -> None:
    graph = fc_graph(seed=1)
    path = tmp_path / "fc.tflite"
    write_tflite(graph, path)
    project = generate_project(load_codegen_model(path), load_target(M55), tmp_path / "p",
                               np.zeros((1, graph.tensors["x"].shape[1]), np.int8))
    ld = (project.path / "port" / "link.ld").read_text()
    assert "VECTORS (rx) : ORIGIN = 0x10000000" in ld and "ORIGIN = 0x11000000" in ld
    assert "ORIGIN = 0x31000000" in ld
