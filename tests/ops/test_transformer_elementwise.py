"""GELU, RSQRT and SQUARED_DIFFERENCE (a transformer's GELU and LayerNorm) on every path.

int8 oracles: tflite-micro for RSQRT and SQUARED_DIFFERENCE (LiteRT BUILTIN_REF
agrees on every case here). tflite-micro has no GELU kernel at all (its op
resolver refuses the file, test below), so LiteRT decides GELU: its reference
and default kernels fill the same float32 table (``LUTPopulate`` with
``GeluTransform``, erfc form, or the tanh form). RSQRT's int8 kernel fails in
TFLM on inputs below the zero point; eedge maps them to 127 (the zero input's
byte), so only bytes at or above the zero point are compared.
Float: eedge's kernels against LiteRT; the ONNX Gelu (both ``approximate``
values) lowered to GELU against ONNX Runtime. Writer -> reader keeps the graph.
C: host (ASan + UBSan build) and QEMU Cortex-M4 (DSP on and off) equal the
reference; the QEMU run also measures SQUARED_DIFFERENCE's instructions per
element. End to end: a torch model with nn.GELU (both forms) exports int8, its
verification passes (GELU nodes against LiteRT) and its C build matches.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from test_activations import onnx_model, rewritten
from test_activations_models import Act, every_byte, model
from test_binary import single_op_tflite

from eedge.backends.onnx_writer import serialize
from eedge.backends.tflite_writer import graph_to_tflite
from eedge.codegen.byte_chains import BYTE_OPS, LUT_OP, fuse_byte_chains
from eedge.codegen.device_run import run_on_target
from eedge.codegen.inputs import device_samples
from eedge.codegen.model_source import CodegenModel, CodegenStage, load_codegen_model
from eedge.codegen.project import generate_project
from eedge.codegen.toolchain import build, run_host
from eedge.errors import BundleError, ModelError, ToolchainError, UnsupportedOpError
from eedge.export import export_onnx
from eedge.frontends.onnx_frontend import onnx_to_graph
from eedge.frontends.tflite_frontend import read_tflite_bytes
from eedge.ir.graph import Graph, Node, QuantParams, TensorInfo
from eedge.ir.layout import to_channels_last
from eedge.ops import registry
from eedge.ops.binary import _quant_fields, broadcast_loops
from eedge.passes.lower_tflite import lower_to_tflite
from eedge.reference.executor import execute
from eedge.reference.fixedpoint import inv_sqrt_quantized_multiplier_exp
from eedge.runtime.interpreters import LiteRTModel, TFLMModel
from eedge.targets import load_target

F32 = np.float32
SHAPE = (1, 4, 8, 8)   # 256 elements: one sample holds every int8 value
HAVE_QEMU = shutil.which("qemu-system-arm") is not None and \
    shutil.which("arm-none-eabi-gcc") is not None


def ours(data: bytes, *xs: np.ndarray) -> np.ndarray:
    graph, outputs = read_tflite_bytes(data)
    return execute(graph, dict(zip([t.name for t in graph.inputs], xs)))[outputs[0]]


def gelu(out_q: tuple[float, int], approximate: bool, source: int = 0) -> Act:
    return Act("GELU", out_q, source=source, extra={"approximate": approximate})


# -- GELU ----------------------------------------------------------------------------------

GELU_SCALES = [((0.05, 3), (0.04, -100)), ((0.1, -20), (0.07, -120)), ((0.02, 60), (0.011, -90)),
               ((1 / 16, 0), (1 / 32, -5)), ((0.25, -128), (0.1, -128)), ((0.0123, 100), (0.01, 0))]


@pytest.mark.parametrize("approximate", [False, True], ids=["erf", "tanh"])
def test_gelu_int8_equals_litert_on_every_byte(approximate: bool) -> None:
    """Six scale sets x every byte, and random samples; LiteRT's reference and default kernels
    agree with each other and with eedge. The scales 1/16 -> 1/32 are one where the older
    erf-in-double form of GeluTransform gives other bytes (eedge follows LiteRT 2.x)."""
    x = every_byte(SHAPE, extra=2, seed=3)
    for in_q, out_q in GELU_SCALES:
        data = model(SHAPE, in_q, [gelu(out_q, approximate)])
        got = ours(data, x)
        for reference in (True, False):
            litert = LiteRTModel(data, reference=reference).run([x])[0].reshape(got.shape)
            assert np.array_equal(got, litert), \
                f"{in_q}->{out_q}: {int((got != litert).sum())} bytes differ ({reference=})"
        assert len(np.unique(got[0])) > 8


def test_tflite_micro_has_no_gelu_kernel() -> None:
    """Why LiteRT is GELU's oracle: TFLM's resolver has no GELU registration."""
    data = model(SHAPE, (0.05, 3), [gelu((0.04, -100), False)])
    with pytest.raises(BundleError, match="TFLite Micro cannot load"):
        TFLMModel(data, 1).run([every_byte(SHAPE, extra=0)])


# -- RSQRT ---------------------------------------------------------------------------------

RSQRT_SCALES = [((0.01, -128), (0.05, -128)), ((0.2, -128), (0.02, -100)),
                ((0.0005, -128), (0.5, -128)), ((0.03, -60), (0.04, 0)),
                ((1 / 64, -100), (1 / 32, -128)), ((0.5, 0), (0.01, -128))]


def valid_rsqrt_inputs(zero_point: int, extra: int, seed: int) -> np.ndarray:
    """Every byte at or above the zero point once, then random ones (TFLM refuses below)."""
    first = np.arange(zero_point, 128, dtype=np.int8)
    rest = np.random.default_rng(seed).integers(zero_point, 128, (extra, first.size), np.int8)
    return np.concatenate([first[None], rest])


@pytest.mark.parametrize("case", range(len(RSQRT_SCALES)))
def test_rsqrt_int8_equals_tflite_micro_and_litert(case: int) -> None:
    in_q, out_q = RSQRT_SCALES[case]
    x = valid_rsqrt_inputs(in_q[1], 2, case)
    shape = (1, x.shape[1])
    data = model(shape, in_q, [Act("RSQRT", out_q)])
    got = ours(data, x)
    tflm = TFLMModel(data, 1).run([x])[0].reshape(got.shape)
    assert np.array_equal(got, tflm), f"{int((got != tflm).sum())} bytes differ from TFLM"
    litert = LiteRTModel(data, reference=True).run([x])[0].reshape(got.shape)
    assert np.array_equal(got, litert)
    assert got[0, 0] == 127 and len(np.unique(got[0])) > 8   # the zero point: largest output


def test_inv_sqrt_multiplier_is_one_over_sqrt_to_q31_precision() -> None:
    """fixedpoint.inv_sqrt_quantized_multiplier_exp: 0 and 1 give (INT32_MAX, 0); elsewhere
    multiplier * 2^shift / 2^31 is 1/sqrt(x) within Newton's precision, over int32 inputs
    (the normalisation by 4 above 2^29 included); shifts are never positive."""
    x = np.concatenate([np.arange(2, 4096), np.geomspace(4096, 2**31 - 1, 2000).astype(np.int64)])
    m, shift = inv_sqrt_quantized_multiplier_exp(x)
    assert np.all(shift <= 0) and np.all((m > 0) & (m < 2**31))
    np.testing.assert_allclose(m * np.exp2(shift) / 2**31 * np.sqrt(x), 1.0, atol=2e-6)
    m0, s0 = inv_sqrt_quantized_multiplier_exp(np.array([0, 1]))
    assert m0.tolist() == [2**31 - 1] * 2 and s0.tolist() == [0, 0]


def test_rsqrt_below_the_zero_point_fails_in_tflm_and_is_127_in_eedge() -> None:
    in_q, out_q = (0.03, -60), (0.04, 0)
    data = model((1, 4), in_q, [Act("RSQRT", out_q)])
    x = np.array([[-61, -100, -128, 5]], np.int8)
    with pytest.raises(Exception, match="(?i)invoke|rsqrt|failed"):
        TFLMModel(data, 1).run([x])
    assert np.array_equal(ours(data, x)[0, :3], [127, 127, 127])


def test_rsqrt_refuses_scales_whose_shift_leaves_the_int32() -> None:
    with pytest.raises(ModelError, match="RSQRT .*rescaling shift"):
        read_tflite_bytes(model((1, 4), (1e4, -128), [Act("RSQRT", (1e4, 0))]))


@pytest.mark.parametrize("in_q,out_q", [((0.0177, -128), (0.00312, -128)),
                                        ((0.0174, -100), (0.00361, -128)),
                                        ((1e-4, -128), (5e-7, -128))])
def test_rsqrt_with_a_positive_rescaling_shift_equals_tflite_micro(
        in_q: tuple[float, int], out_q: tuple[float, int]) -> None:
    """A LayerNorm's variance -> 1/std (a trained ViT's scales: shift 12; and shift 28): Eval
    left-shifts the 1/sqrt value, which TFLM does in an int32 without overflow."""
    data = model((1, 128 - in_q[1]), in_q, [Act("RSQRT", out_q)])
    x = np.arange(in_q[1], 128, dtype=np.int8)[None]
    assert np.array_equal(ours(data, x), TFLMModel(data, 1).run([x])[0].reshape(x.shape))


# -- SQUARED_DIFFERENCE ----------------------------------------------------------------------

SQD_CASES = [  # (shape a, shape b, qa, qb, qo)
    ((1, 16, 16), (1, 16, 16), (0.05, 3), (0.04, -10), (0.3, -128)),
    ((1, 10, 32), (1, 10, 1), (0.05, 0), (0.05, 2), (0.2, -128)),     # LayerNorm: x - mean
    ((2, 3, 5, 8), (2, 3, 5, 1), (0.1, -20), (0.03, 7), (0.5, -120)),
    ((1, 6, 8), (8,), (0.02, 60), (0.07, -5), (0.05, -100)),
    ((4, 1, 8), (1, 6, 1), (0.03, 10), (0.03, 10), (0.01, -128)),
    ((1, 5, 7), (), (0.06, -3), (0.2, 0), (0.9, -128)),
    ((3, 40), (3, 40), (1 / 16, 0), (1 / 32, 0), (1 / 8, -128)),
]


def run_exact_shapes(tflm: TFLMModel, litert: LiteRTModel, a: np.ndarray, b: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One invocation with inputs of the file's own shapes (no batch axis is sliced)."""
    tflm.interpreter.set_input(a, 0)
    tflm.interpreter.set_input(b, 1)
    tflm.interpreter.invoke()
    for detail, array in zip(litert.inputs, (a, b)):
        litert.interpreter.set_tensor(detail["index"], array)
    litert.interpreter.invoke()
    return (tflm.interpreter.get_output(0).copy(),
            litert.interpreter.get_tensor(litert.outputs[0]["index"]).copy())


@pytest.mark.parametrize("case", range(len(SQD_CASES)))
def test_squared_difference_int8_equals_tflite_micro_and_litert(case: int) -> None:
    """Random inputs, same and broadcast shapes (numpy rules, up to 4-D when they differ)."""
    shape_a, shape_b, qa, qb, qo = SQD_CASES[case]
    data = single_op_tflite("SQUARED_DIFFERENCE", shape_a, shape_b, qa, qb, qo)
    rng = np.random.default_rng(case)
    tflm, litert = TFLMModel(data, 1), LiteRTModel(data, reference=True)
    seen: set[int] = set()
    for _ in range(30):
        a = rng.integers(-128, 128, shape_a, np.int8)
        b = np.asarray(rng.integers(-128, 128, shape_b, np.int8))
        got = ours(data, a, b).reshape(-1)
        want, ref = run_exact_shapes(tflm, litert, a, b)
        assert np.array_equal(got, want.reshape(-1)), \
            f"{int((got != want.reshape(-1)).sum())} of {got.size} bytes differ from TFLM"
        assert np.array_equal(got, ref.reshape(-1)), "LiteRT BUILTIN_REF differs"
        seen |= set(got.tolist())
    assert len(seen) > 8


def test_squared_difference_every_input_pair_equals_tflite_micro() -> None:
    """All 65536 byte pairs at scales whose ratios are exact (ties decide the last bit)."""
    a = np.repeat(np.arange(-128, 128, dtype=np.int8), 256).reshape(1, 256, 256)
    b = np.tile(np.arange(-128, 128, dtype=np.int8), 256).reshape(1, 256, 256)
    for qa, qb, qo in (((1 / 16, 0), (1 / 64, 3), (1 / 4, -128)),
                       ((0.05, -7), (0.04, 9), (6 / 255, -128))):
        data = single_op_tflite("SQUARED_DIFFERENCE", a.shape, b.shape, qa, qb, qo)
        got = ours(data, a, b).reshape(-1)
        want, ref = run_exact_shapes(TFLMModel(data, 1), LiteRTModel(data), a, b)
        assert np.array_equal(got, want.reshape(-1)), \
            f"{int((got != want.reshape(-1)).sum())} pairs differ"
        assert np.array_equal(got, ref.reshape(-1))


def test_squared_difference_refuses_broadcasting_beyond_four_dimensions() -> None:
    with pytest.raises(ModelError, match="SQUARED_DIFFERENCE .*broadcasts up to 4"):
        read_tflite_bytes(single_op_tflite("SQUARED_DIFFERENCE", (1, 2, 3, 4, 5), (1, 2, 3, 4, 1),
                                           (0.1, 0), (0.1, 0), (0.1, 0)))


# -- float, writer, ONNX -----------------------------------------------------------------------

@pytest.mark.parametrize("act", [Act("GELU", extra={"approximate": False}),
                                 Act("GELU", extra={"approximate": True}), Act("RSQRT")],
                         ids=["gelu", "gelu_tanh", "rsqrt"])
def test_float_kernels_equal_litert(act: Act) -> None:
    data = model(SHAPE, (0.0, 0), [act], dtype="float32")
    rng = np.random.default_rng(4)
    x = rng.uniform(-6, 6, (3, *SHAPE[1:])).astype(F32)
    if act.op == "RSQRT":
        x = np.abs(x) + F32(1e-3)
    got = ours(data, x)
    for k in range(3):
        litert = LiteRTModel(data, reference=False).run([x[k:k + 1]])[0].reshape(1, -1)
        np.testing.assert_allclose(got[k:k + 1], litert, rtol=2e-6, atol=2e-6)


def float_sqd_graph(shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> Graph:
    out = tuple(int(d) for d in np.broadcast_shapes(shape_a, shape_b))
    t = {name: TensorInfo(name, shape, "float32", None)
         for name, shape in (("x", shape_a), ("y", shape_b), ("z", out))}
    return Graph("sqd", [t["x"], t["y"]], ["z"], [Node("sqd", "SQUARED_DIFFERENCE", ["x", "y"],
                                                       ["z"], {})], {}, t, 0, 0, "tflite")


def test_float_squared_difference_equals_litert_after_writer_round_trip() -> None:
    graph = float_sqd_graph((1, 7, 16), (1, 7, 1))
    data = graph_to_tflite(graph, range(1), ["x", "y"], ["z"])
    reread, outputs = read_tflite_bytes(data)
    assert [(n.op_type, n.attrs) for n in reread.nodes] == [("SQUARED_DIFFERENCE", {})]
    rng = np.random.default_rng(5)
    x, y = rng.normal(0, 3, (1, 7, 16)).astype(F32), rng.normal(0, 3, (1, 7, 1)).astype(F32)
    got = execute(reread, {"x": x, "y": y})[outputs[0]]
    np.testing.assert_array_equal(got, ((x - y) * (x - y)).astype(F32))
    litert = LiteRTModel(data, reference=True).run([x, y])[0]
    np.testing.assert_allclose(got, litert, rtol=1e-6)


def test_int8_writer_round_trip_keeps_the_graph() -> None:
    """GELU (tanh) -> GELU (erf) -> RSQRT reading the input: read, written by eedge, read
    again: same nodes, attrs, tensors; the rewritten file runs to the same bytes in LiteRT."""
    acts = [gelu((0.04, -100), True), gelu((0.03, -90), False, source=1),
            Act("RSQRT", (0.05, -128), source=0)]
    first, second, data, outputs2 = rewritten(model(SHAPE, (0.05, -128), acts, outputs=[2, 3]))
    assert [n.attrs for n in second.nodes[:3]] == [{"approximate": True},
                                                  {"approximate": False}, {}]
    assert second.tensors == first.tensors
    x = every_byte(SHAPE, extra=1)
    env = execute(second, {"x": x})
    interpreter = LiteRTModel(data, reference=True)
    for k, name in enumerate(outputs2):
        litert = np.concatenate([interpreter.run([x[i:i + 1]])[k] for i in range(len(x))])
        assert np.array_equal(env[name].reshape(litert.shape), litert), name


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_onnx_gelu_lowers_to_gelu_and_equals_onnxruntime(approximate: str) -> None:
    m = onnx_model("Gelu", (5, 4, 3, 3), {"approximate": approximate})
    m.opset_import[0].version, m.ir_version = 20, 9
    x = np.random.default_rng(6).uniform(-6, 6, (5, 4, 3, 3)).astype(F32)
    expected = ort.InferenceSession(serialize(m)).run(None, {"x": x})[0]
    lowered = lower_to_tflite(onnx_to_graph(m))
    gelus = [n for n in lowered.nodes if n.op_type == "GELU"]
    assert len(gelus) == 1 and gelus[0].attrs == {"approximate": approximate == "tanh"}
    got = execute(lowered, {"x": to_channels_last(x, "NCHW")})["y"]
    np.testing.assert_allclose(got, expected, atol=3e-6, rtol=1e-5)
    data = graph_to_tflite(lowered, range(len(lowered.nodes)), ["x"], ["y"])
    one = to_channels_last(x, "NCHW")[:1]
    np.testing.assert_allclose(LiteRTModel(data, reference=False).run([one])[0], got[:1],
                               atol=3e-6, rtol=1e-5)


def test_onnx_gelu_on_a_flattened_tensor_keeps_the_flatten_order() -> None:
    """Flatten then Gelu: the output carries the input's flatten permutation (channels-last
    storage of a channels-first flatten), so the Gemm after it reads the right columns."""
    m = onnx_model("Gelu", (2, 4, 3, 3), {"approximate": "none"}, flatten=True)
    m.opset_import[0].version, m.ir_version = 20, 9
    x = np.random.default_rng(7).uniform(-4, 4, (2, 4, 3, 3)).astype(F32)
    expected = ort.InferenceSession(serialize(m)).run(None, {"x": x})[0]
    got = execute(lower_to_tflite(onnx_to_graph(m)), {"x": to_channels_last(x, "NCHW")})["y"]
    np.testing.assert_allclose(got, expected, atol=3e-6, rtol=1e-5)


def test_rsqrt_then_gelu_fuse_into_one_table() -> None:
    """byte_chains: RSQRT -> GELU becomes one EEDGE_LUT equal to the two reference kernels."""
    t = {name: TensorInfo(name, (1, 256), "int8", Q((sc,), (zp,)))
         for name, sc, zp in (("x", 0.02, -128), ("r", 0.05, -128), ("g", 0.04, -120))}
    nodes = [Node("rsqrt", "RSQRT", ["x"], ["r"], {}),
             Node("gelu", "GELU", ["r"], ["g"], {"approximate": True})]
    graph = Graph("chain", [t["x"]], ["g"], nodes, {}, t, 0, 0, "tflite")
    m = CodegenModel("chain", graph, [CodegenStage(0, [0, 1], ["x"], ["g"], 0)], [None], "t",
                     None)
    fused = fuse_byte_chains(m).graph.nodes
    assert [(n.op_type, n.attrs["fused"]) for n in fused] == [(LUT_OP, ["rsqrt", "gelu"])]
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    want = execute(graph, {"x": x})["g"].reshape(-1)
    assert np.array_equal(np.asarray(fused[0].attrs["table"], np.int8)[x.view(np.uint8)][0], want)


def test_registry_and_byte_chains_know_the_new_ops() -> None:
    ops = registry.builtins()
    assert ops["GELU"].int8_version == 2 and ops["RSQRT"].int8_version == 2
    assert ops["SQUARED_DIFFERENCE"].int8_version == 2 and ops["SQUARED_DIFFERENCE"].dsp
    assert registry.lowerings()["Gelu"].builtins == ("GELU",)
    assert {"GELU", "RSQRT"} <= BYTE_OPS


# -- C: host and QEMU Cortex-M4 ----------------------------------------------------------------

Q = QuantParams
D = 64   # LayerNorm's row width in the measured model


def c_model() -> CodegenModel:
    """One stage per kernel path, on x (1, 64, 64) int8:

    0: GELU erf, 1: GELU tanh (tables); 2: mean = MEAN(x, -1, keepdims); 3: sq =
    SQUARED_DIFFERENCE(x, mean), LayerNorm's pattern (one value per row; 4096 elements, so
    the first operand's scaled values come from a table); 4: RSQRT(sq) (a table; sq's zero
    point is -128, so no byte lies below it); 5: SQUARED_DIFFERENCE(x, GELU(x)) (same
    shape, tables); 6: the same patterns below the table threshold: the row means (64 x 1)
    against a scalar constant (scaled once) and against their GELU (both scaled per element).
    """
    shape = (1, 64, D)
    t: dict[str, TensorInfo] = {}

    def tensor(name: str, shp: tuple[int, ...], q: tuple[float, int]) -> None:
        t[name] = TensorInfo(name, shp, "int8", Q((q[0],), (q[1],)))

    tensor("x", shape, (0.05, 2))
    for name, q in (("g_erf", (0.04, -100)), ("g_tanh", (0.045, -110)), ("sq", (0.5, -128)),
                    ("r", (0.03, -128)), ("sq_same", (0.4, -128))):
        tensor(name, shape, q)
    tensor("mean", (1, 64, 1), (0.01, 0))
    tensor("c", (1, 1, 1), (0.02, -128))
    tensor("g_mean", (1, 64, 1), (0.008, -60))
    tensor("sq_small", (1, 64, 1), (0.003, -128))
    tensor("sq_small2", (1, 64, 1), (0.002, -128))
    constants = {"axis": np.array([2], np.int32), "c": np.array([[[77]]], np.int8)}
    nodes = [Node("gelu_erf", "GELU", ["x"], ["g_erf"], {"approximate": False}),
             Node("gelu_tanh", "GELU", ["x"], ["g_tanh"], {"approximate": True}),
             Node("mean", "MEAN", ["x", "axis"], ["mean"], {"keep_dims": True}),
             Node("sqd", "SQUARED_DIFFERENCE", ["x", "mean"], ["sq"], {}),
             Node("rsqrt", "RSQRT", ["sq"], ["r"], {}),
             Node("sqd_same", "SQUARED_DIFFERENCE", ["x", "g_erf"], ["sq_same"], {}),
             Node("gelu_mean", "GELU", ["mean"], ["g_mean"], {"approximate": False}),
             Node("sqd_const", "SQUARED_DIFFERENCE", ["mean", "c"], ["sq_small"], {}),
             Node("sqd_small", "SQUARED_DIFFERENCE", ["mean", "g_mean"], ["sq_small2"], {})]
    graph = Graph("transformer_elementwise", [t["x"]], ["sq_small2"], nodes, constants, t, 0, 0,
                  "tflite")
    graph.const_quant = {"c": t["c"].quant}
    stages = [CodegenStage(0, [0], ["x"], ["g_erf"], None),
              CodegenStage(1, [1], ["x"], ["g_tanh"], None),
              CodegenStage(2, [2], ["x"], ["mean"], None),
              CodegenStage(3, [3], ["x", "mean"], ["sq"], None),
              CodegenStage(4, [4], ["sq"], ["r"], None),
              CodegenStage(5, [5], ["x", "g_erf"], ["sq_same"], None),
              CodegenStage(6, [6, 7, 8], ["mean"], ["sq_small", "sq_small2"], 0)]
    return CodegenModel("transformer_elementwise", graph, stages, [None], "test", None)


def c_inputs(n: int) -> np.ndarray:
    """Every byte in each row position, then random samples."""
    first = np.resize(np.arange(-128, 128, dtype=np.int8), (1, 64, D))
    rest = np.random.default_rng(8).integers(-128, 128, (n - 1, 64, D), dtype=np.int8)
    return np.concatenate([first, rest])


def device_equals_reference(m: CodegenModel, x: np.ndarray, run) -> None:
    env = execute(m.graph, {"x": x})
    for k, sample in enumerate(run.run.samples):
        for stage, outputs in zip(m.stages, sample.stage_outputs):
            for name, got in zip(stage.outputs, outputs):
                want = env[name][k].reshape(-1)
                assert np.array_equal(np.asarray(got).reshape(-1), want), \
                    f"sample {k}, {name}: {int((np.asarray(got).reshape(-1) != want).sum())} differ"


def test_c_model_reference_equals_litert() -> None:
    """The C test's model run by LiteRT BUILTIN_REF (TFLM cannot: GELU) gives the reference's
    bytes, so the C runtime below is compared with a checked reference."""
    m = c_model()
    g = m.graph
    outs = ["g_erf", "g_tanh", "sq", "r", "sq_same", "sq_small", "sq_small2"]
    data = graph_to_tflite(g, range(len(g.nodes)), ["x"], outs)
    x = c_inputs(2)
    env = execute(g, {"x": x})
    interpreter = LiteRTModel(data, reference=True)
    for k in range(len(x)):
        results = interpreter.run([x[k:k + 1]])
        for name, got in zip(outs, results):
            assert np.array_equal(got.reshape(-1), env[name][k].reshape(-1)), name


def test_c_host_build_under_sanitizers_equals_the_reference(tmp_path: Path) -> None:
    """ASan + UBSan host build (the Makefile's `sanitize`): no finding, the reference's bytes."""
    m = c_model()
    x = c_inputs(3)
    project = generate_project(m, load_target("host"), tmp_path / "host")
    try:
        run = run_host(project, build(project, sanitize=True).binary, x.reshape(len(x), -1))
    except ToolchainError as exc:   # a non-zero exit or a sanitizer report
        pytest.fail(f"sanitized build: {exc}")
    device_equals_reference(m, x, SimpleNamespace(run=run))


def test_c_refuses_an_output_scale_that_would_shift_the_square_left() -> None:
    """An output multiplier of 1 or more would shift the square (< 2^30) left: TFLM's int32
    arithmetic may overflow there, so the C emitter refuses it with the reason."""
    g = float_sqd_graph((1, 4, 8), (1, 4, 1))
    for name, q in (("x", (0.05, 0)), ("y", (0.05, 0)), ("z", (1e-7, -128))):
        g.tensors[name] = TensorInfo(name, g.tensors[name].shape, "int8", Q((q[0],), (q[1],)))
    with pytest.raises(UnsupportedOpError, match="SQUARED_DIFFERENCE .*larger output scale"):
        _quant_fields(g.nodes[0], g)


@pytest.mark.skipif(not HAVE_QEMU, reason="no Arm toolchain or QEMU")
@pytest.mark.parametrize("dsp", [False, True], ids=["portable", "dsp"])
def test_qemu_cortex_m4_equals_the_reference_and_counts_instructions(
        dsp: bool, capsys: pytest.CaptureFixture[str]) -> None:
    m = c_model()
    x = c_inputs(2)
    run = run_on_target(m, load_target("qemu-cortex-m4"), x, dsp=dsp)
    assert run.summary()["dsp"] is dsp
    device_equals_reference(m, x, run)
    ticks = run.mean_stage_ticks()
    per = run.instructions_per_tick
    elements = 64 * D
    figures = {"GELU (table)": ticks[0] * per / elements,
               "SQUARED_DIFFERENCE x - row mean": ticks[3] * per / elements,
               "SQUARED_DIFFERENCE same shape": ticks[5] * per / elements}
    with capsys.disabled():
        print(f"\nCortex-M4 ({'DSP' if dsp else 'portable'}) instructions per element: " +
              ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
    # measured 18.6 / 13.5 (x - row mean) and 20.6 / 15.5 (same shape), portable / DSP; the
    # first kernel (two-sided rounding, a second table for the row value) cost 30.0 / 20.4
    bound = 20.0 if not dsp else 15.0
    assert 0 < figures["SQUARED_DIFFERENCE x - row mean"] < bound, figures
    assert 0 < figures["SQUARED_DIFFERENCE same shape"] < bound + 1, figures
    assert broadcast_loops((1, 64, D), (1, 64, D), (1, 64, 1)) == [(64, D, 1), (D, 1, 0)]


# -- end to end: torch nn.GELU through PTQ, verification and the C runtime ---------------------

class GeluNet(nn.Module):
    """conv -> GELU (erf) -> exit 0; -> conv -> GELU (tanh) -> exit 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0, self.conv1 = nn.Conv2d(1, 6, 3, padding=1), nn.Conv2d(6, 8, 3, 2, 1)
        self.head0, self.head1 = nn.Linear(96, 4), nn.Linear(32, 4)
        self.gelu, self.gelu_tanh = nn.GELU(), nn.GELU(approximate="tanh")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.gelu(self.conv0(x))
        g = self.gelu_tanh(self.conv1(h))
        return self.head0(torch.flatten(h, 1)), self.head1(torch.flatten(g, 1))


def test_torch_gelu_exports_int8_verified_and_runs_in_c(tmp_path: Path) -> None:
    """torch.onnx.export writes Gelu (opset 20+); the int8 export verifies every stage (GELU
    nodes against LiteRT BUILTIN_REF, the rest against TFLM) and the C host build of the
    bundle gives the reference's bytes."""
    torch.manual_seed(0)
    path = tmp_path / "gelu.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(GeluNet().eval(), (torch.randn(1, 1, 4, 4),), str(path))
    gelus = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Gelu"]
    assert len(gelus) == 2
    calibration = np.random.default_rng(0).standard_normal((64, 1, 4, 4)).astype(F32)
    export_onnx(path, tmp_path / "bundle", int8=True, calibration=calibration, force=True)
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    stages = manifest["verification"]["tflite_int8"]["reference_vs_tflm"]["stages"]
    assert len(stages) == 2 and all(s["why"].startswith("TFLite Micro has no GELU kernel")
                                    for s in stages)
    m = load_codegen_model(tmp_path / "bundle")
    x = calibration[:4]
    run = run_on_target(m, load_target("host"), x)
    samples = device_samples(x, tuple(int(d) for d in m.graph.tensors[m.input].shape),
                             m.input_quant.scale[0], m.input_quant.zero_point[0], m.input_layout)
    env = execute(m.graph, {m.input: np.stack(samples).reshape(
        (-1,) + tuple(int(d) for d in m.graph.tensors[m.input].shape[1:]))})
    for k, sample in enumerate(run.run.samples):
        for stage, outputs in zip(m.stages, sample.stage_outputs):
            for name, got in zip(stage.outputs, outputs):
                assert np.array_equal(np.asarray(got).reshape(-1), env[name][k].reshape(-1))
