"""The activation family (LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, PRELU, ELU) on every path but C.

int8: eedge's reference equals tflite-micro (the oracle) on every int8 value
and random inputs for three scale/zero-point combinations per op, and LiteRT
BUILTIN_REF too, except ELU: LiteRT's reference resolver has no ELU at all,
and its default (optimized) ELU fills its table another way (measured: 10 of
256 bytes differ for scales 0.05/0.04), so TFLM alone decides ELU. And except
exact ties, where TFLM is followed: LEAKY_RELU's (TFLM computes its scale
ratios in double, LiteRT's reference kernel in float32; test below), and a
few of PRELU's and LOGISTIC's (input scale 1/128) found by the exact-ratio sweep.
Float: the lowered graph equals ONNX Runtime on the ONNX op, and the float
.tflite eedge writes runs in LiteRT to the float kernels' values. Reader:
writer -> reader gives the same graph back. C: test_activations_c.py.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_activations_models import LOGISTIC_Q, TANH_Q, Act, every_byte, model

from eedge.backends.onnx_writer import serialize
from eedge.backends.tflite_writer import graph_to_tflite
from eedge.errors import ModelError, UnsupportedOpError
from eedge.frontends.onnx_frontend import onnx_to_graph
from eedge.frontends.tflite_frontend import read_tflite_bytes
from eedge.ir.graph import Graph
from eedge.ir.layout import to_channels_last
from eedge.ops import registry
from eedge.ops.activations import alpha_period
from eedge.ops.activations_int8 import lookup_table, logistic_s8
from eedge.passes.lower_tflite import lower_to_tflite
from eedge.reference.executor import execute
from eedge.runtime.interpreters import LiteRTModel, TFLMModel, has_reference_kernels

SHAPE = (1, 4, 8, 8)          # 256 elements: one sample holds every int8 value
ALPHA8 = np.array([-100, -7, 0, 3, 50, 90, 127, -128], np.int8).reshape(1, 1, 8)
# (op, input quantization, activation); three scale/zero-point combinations per op
CASES = [
    ("LOGISTIC", (0.05, 3), Act("LOGISTIC", LOGISTIC_Q)),
    ("LOGISTIC", (0.2, -20), Act("LOGISTIC", LOGISTIC_Q)),
    ("LOGISTIC", (0.0123, 100), Act("LOGISTIC", LOGISTIC_Q)),
    ("TANH", (0.05, 3), Act("TANH", TANH_Q)),
    ("TANH", (0.013, -50), Act("TANH", TANH_Q)),
    ("TANH", (0.3, 0), Act("TANH", TANH_Q)),
    ("HARD_SWISH", (0.05, 3), Act("HARD_SWISH", (0.03, -100))),
    ("HARD_SWISH", (0.1, -20), Act("HARD_SWISH", (0.07, -120))),
    ("HARD_SWISH", (0.02, 60), Act("HARD_SWISH", (0.011, -90))),
    ("LEAKY_RELU", (0.05, 3), Act("LEAKY_RELU", (0.04, -10), alpha=0.1)),
    ("LEAKY_RELU", (0.1, -20), Act("LEAKY_RELU", (0.07, 20), alpha=0.01)),
    ("LEAKY_RELU", (0.02, 60), Act("LEAKY_RELU", (0.025, -50), alpha=-0.3)),
    ("PRELU", (0.05, 3), Act("PRELU", (0.04, -10), prelu=(ALPHA8, (0.01, -2)))),
    ("PRELU", (0.1, -20), Act("PRELU", (0.07, 5), prelu=(np.array([100], np.int8),
                                                         (0.002, -128)))),
    ("PRELU", (0.03, 10), Act("PRELU", (0.02, -30),
                              prelu=(np.arange(-16, 16, dtype=np.int8).reshape(4, 1, 8),
                                     (0.05, 0)))),
    ("ELU", (0.05, 3), Act("ELU", (0.04, 30))),
    ("ELU", (0.1, -20), Act("ELU", (0.07, -100))),
    ("ELU", (0.02, 60), Act("ELU", (0.02, 60))),
]


def ours(data: bytes, x: np.ndarray) -> np.ndarray:
    graph, outputs = read_tflite_bytes(data)
    return execute(graph, {"x": x})[outputs[0]]


@pytest.mark.parametrize("op,in_q,act", CASES, ids=[f"{c[0]}-{i % 3}" for i, c in enumerate(CASES)])
def test_int8_reference_equals_tflite_micro(op: str, in_q: tuple[float, int], act: Act) -> None:
    data = model(SHAPE, in_q, [act])
    x = every_byte(SHAPE, extra=3, seed=len(op))
    got = ours(data, x)
    tflm = TFLMModel(data, 1).run([x])[0].reshape(got.shape)
    assert np.array_equal(got, tflm), f"{int((got != tflm).sum())} of {got.size} bytes differ"
    assert len(np.unique(got[0])) > 8   # the op really maps the bytes (not a constant)
    if op == "ELU":   # no BUILTIN_REF kernel (test below): TFLM alone is the oracle
        return
    litert = LiteRTModel(data, reference=True).run([x])[0].reshape(got.shape)
    assert np.array_equal(got, litert), f"{int((got != litert).sum())} bytes differ from LiteRT"


@pytest.mark.parametrize("in_q,out_q", [((0.001, 30), (3.0, -20)), ((1e-6, 3), (1e-3, 0)),
                                         ((1.0, 0), (1 / 127, 0))])
def test_hard_swish_at_extreme_scale_ratios_equals_tflite_micro(in_q: tuple[float, int],
                                                               out_q: tuple[float, int]) -> None:
    """Output exponents beyond 15 make gemmlowp's int16 rounding shift return +-1 (its mask
    wraps); eedge does what TFLM does there instead of refusing or rounding."""
    data = model(SHAPE, in_q, [Act("HARD_SWISH", out_q)])
    x = every_byte(SHAPE, extra=1)
    got = ours(data, x)
    assert np.array_equal(got, TFLMModel(data, 1).run([x])[0].reshape(got.shape))


@pytest.mark.parametrize("act", [Act("LOGISTIC", LOGISTIC_Q), Act("TANH", TANH_Q)],
                         ids=["LOGISTIC", "TANH"])
@pytest.mark.parametrize("in_q", [(8.0, 3), (20.0, -5), (1e-8, 5)])
def test_logistic_and_tanh_at_extreme_input_scales_equal_tflite_micro(
        act: Act, in_q: tuple[float, int]) -> None:
    """From scale 8 the kernel's input radius is 0 (every input saturates); at 1e-8 the
    rescaling shift is near its end. Both as TFLM computes them."""
    data = model(SHAPE, in_q, [act])
    x = every_byte(SHAPE, extra=1)
    got = ours(data, x)
    assert np.array_equal(got, TFLMModel(data, 1).run([x])[0].reshape(got.shape))


def test_hard_swish_refuses_what_tflite_micro_refuses() -> None:
    """TFLM's Prepare fails when the input scale / 128 exceeds the output scale."""
    with pytest.raises(ModelError, match="HARD_SWISH .*below 128 x the output scale"):
        read_tflite_bytes(model(SHAPE, (1.0, 0), [Act("HARD_SWISH", (0.0055, 0))]))


@pytest.mark.parametrize("in_q,out_q,alpha", [((0.05, 3), (0.04, -10), 1.0),
                                               ((0.05, 3), (0.04, -10), -0.5),
                                               ((0.05, -20), (6 / 255, -128), 0.1)])
def test_leaky_relu_ties_follow_tflite_micro_not_litert(in_q: tuple[float, int],
                                                        out_q: tuple[float, int],
                                                        alpha: float) -> None:
    """Where the float32 and double scale ratios round to other multipliers, exact ties
    (-117.5) land on other bytes: tflite-micro (the oracle) uses the double ratios, LiteRT's
    reference kernel the float32 ones. eedge follows TFLM, and the case really differs."""
    data = model(SHAPE, in_q, [Act("LEAKY_RELU", out_q, alpha=alpha)])
    x = every_byte(SHAPE, extra=0)
    got = ours(data, x)
    assert np.array_equal(got, TFLMModel(data, 1).run([x])[0].reshape(got.shape))
    assert not np.array_equal(got, LiteRTModel(data, reference=True).run([x])[0].reshape(-1, 256))


TIE_SCALES = (0.05, 0.04, 0.03, 6 / 255, 1 / 128, 0.25)   # ratios that are exact: ties happen


def test_exact_scale_ratios_equal_tflite_micro_on_every_byte() -> None:
    """Scales whose ratios are exact make the last bit of every multiplier decide ties (the
    float32-vs-double question of each Prepare): 36 scale pairs x 2 zero points per op.
    A wider sweep (17 scales: 2958 files) also matched TFLM; LiteRT BUILTIN_REF differed on
    103 LEAKY_RELU, 104 PRELU and 2 LOGISTIC (input scale 1/128) of them."""
    x = every_byte(SHAPE, extra=0)
    alpha = np.array([-128, -64, -1, 0, 1, 37, 64, 127], np.int8).reshape(1, 1, 8)
    for s_in in TIE_SCALES:
        acts = [Act("LOGISTIC", LOGISTIC_Q), Act("TANH", TANH_Q)]
        for s_out in TIE_SCALES:
            acts += [Act("HARD_SWISH", (s_out, -100)), Act("ELU", (s_out, 20)),
                     Act("LEAKY_RELU", (s_out, -10), alpha=0.5),
                     Act("PRELU", (s_out, -10), prelu=(alpha, (s_out, 0)))]
        for zero in (-20, 3):
            for act in acts:
                data = model(SHAPE, (s_in, zero), [act])
                got = ours(data, x)
                tflm = TFLMModel(data, 1).run([x])[0].reshape(got.shape)
                assert np.array_equal(got, tflm), f"{act.op} {s_in} -> {act.out_q}, zp {zero}"


def test_litert_reference_resolver_has_no_elu() -> None:
    """Why ELU is checked against TFLM only (eedge's LiteRT loader falls back to the default
    kernels for such ops, whose ELU table differs from TFLM's in a few bytes)."""
    data = model(SHAPE, (0.05, 3), [Act("ELU", (0.04, 30))])
    assert not has_reference_kernels(data)
    assert has_reference_kernels(model(SHAPE, (0.05, 3), [Act("TANH", TANH_Q)]))
    x = every_byte(SHAPE, extra=0)
    fallback = LiteRTModel(data, reference=True).run([x])[0].reshape(1, -1)
    assert 0 < int((fallback != ours(data, x)).sum()) < 16


def test_lookup_table_is_the_kernel_on_every_byte() -> None:
    """The C runtime's table, indexed by the byte read as uint8, is the reference kernel."""
    graph, _ = read_tflite_bytes(model(SHAPE, (0.05, 3), [Act("LOGISTIC", LOGISTIC_Q)]))
    node = graph.nodes[0]
    table = lookup_table(logistic_s8, node, graph)
    every = np.arange(-128, 128, dtype=np.int8)
    assert np.array_equal(table[every.view(np.uint8)], logistic_s8(node, graph, [every]))


def test_alpha_period_repeats_alpha_along_the_output() -> None:
    alpha = np.arange(8).reshape(1, 1, 8)
    assert alpha_period([1, 4, 4, 8], alpha)[0] == 8
    period, expanded = alpha_period([1, 4, 3, 8], np.arange(4).reshape(4, 1, 1))
    assert period == 96 and np.array_equal(expanded, np.repeat(np.arange(4), 24))
    assert alpha_period([1, 2, 2, 3], np.array([5]))[0] == 1


def test_logistic_and_tanh_refuse_other_output_quantization() -> None:
    """TFLite's kernels write Q0.8 / Q0.7 whatever the file says: such a file is wrong."""
    for op, q in (("LOGISTIC", (1.0 / 256, 0)), ("TANH", (0.01, 0))):
        with pytest.raises(ModelError, match=f"{op} .*scale"):
            read_tflite_bytes(model(SHAPE, (0.05, 3), [Act(op, q)]))


def test_reader_refuses_broken_leaky_relu_and_prelu_files() -> None:
    with pytest.raises(ModelError, match="LEAKY_RELU alpha nan is not finite"):
        read_tflite_bytes(model(SHAPE, (0.05, 3), [Act("LEAKY_RELU", (0.04, 0),
                                                        alpha=float("nan"))]))
    bad_alpha = (np.zeros((1, 1, 3), np.int8), (0.01, 0))   # 3 does not broadcast against 8
    with pytest.raises(ModelError, match="PRELU .*does not broadcast"):
        read_tflite_bytes(model(SHAPE, (0.05, 3), [Act("PRELU", (0.04, 0), prelu=bad_alpha)]))
    float_alpha = (np.full((1, 1, 8), 0.25, np.float32), (0.01, 0))
    with pytest.raises(ModelError, match="PRELU .*needs an int8 alpha, not float32"):
        read_tflite_bytes(model(SHAPE, (0.05, 3), [Act("PRELU", (0.04, 0), prelu=float_alpha)]))


def rewritten(data: bytes) -> tuple[Graph, Graph, bytes, list[str]]:
    """Read a file, write it with eedge's writer, read that again: both graphs, the rewritten
    bytes and its outputs, after checking the graph came back with the same nodes."""
    first, outputs = read_tflite_bytes(data)
    again = graph_to_tflite(first, range(len(first.nodes)), [t.name for t in first.inputs],
                            outputs)
    second, outputs2 = read_tflite_bytes(again)
    assert outputs2 == outputs
    assert [(n.op_type, n.inputs, n.outputs, n.attrs) for n in second.nodes] == \
           [(n.op_type, n.inputs, n.outputs, n.attrs) for n in first.nodes]
    return first, second, again, outputs2


def test_writer_reader_round_trip_keeps_the_graph() -> None:
    acts = [Act("HARD_SWISH", (0.03, -100)), Act("LEAKY_RELU", (0.04, -10), alpha=0.25, source=1),
            Act("PRELU", (0.04, -3), prelu=(ALPHA8, (0.01, -2)), source=2),
            Act("ELU", (0.03, 20), source=3), Act("TANH", TANH_Q, source=4),
            Act("LOGISTIC", LOGISTIC_Q, source=5)]
    first, second, data, _outputs = rewritten(model(SHAPE, (0.05, 3), acts))
    assert second.nodes[1].attrs == {"alpha": pytest.approx(0.25)}
    assert second.tensors == first.tensors and second.const_quant == first.const_quant
    assert all(np.array_equal(second.constants[k], v) for k, v in first.constants.items())
    x = every_byte(SHAPE)
    assert np.array_equal(ours(data, x), TFLMModel(data, 1).run([x])[0].reshape(-1, 256))


# -- float path ------------------------------------------------------------------------------

def onnx_model(op: str, shape: tuple[int, ...], attrs: dict | None = None,
               slope: np.ndarray | None = None, flatten: bool = False) -> onnx.ModelProto:
    """x -> one ONNX activation -> Flatten -> Gemm -> y (an exit: 2-D logits), or x -> Flatten
    -> activation -> Gemm -> y when ``flatten``; SiLU is Sigmoid then Mul, as torch writes it."""
    width = int(np.prod(shape[1:]))
    weight = np.random.default_rng(7).standard_normal((5, width)).astype(np.float32) * 0.3
    inits = [numpy_helper.from_array(weight, "w")]
    nodes, src, act_out = [], "x", "a"
    out_shape: list = ["N", 5]
    if flatten:
        nodes.append(helper.make_node("Flatten", ["x"], ["f"], name="flat"))
        src, act_out = "f", "g"
    if op == "SiLU":
        nodes += [helper.make_node("Sigmoid", [src], ["s"], name="sig"),
                  helper.make_node("Mul", [src, "s"], [act_out], name="mul")]
    else:
        inputs = [src]
        if slope is not None:
            inits.append(numpy_helper.from_array(slope.astype(np.float32), "slope"))
            inputs.append("slope")
        nodes.append(helper.make_node(op, inputs, [act_out], name="act", **(attrs or {})))
    if not flatten:
        nodes.append(helper.make_node("Flatten", ["a"], ["g"], name="flat"))
    nodes.append(helper.make_node("Gemm", ["g", "w"], ["y"], name="fc", transB=1))
    graph = helper.make_graph(
        nodes, "act", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape[1:]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializer=inits)
    swish = op == "Swish"   # ONNX has it from opset 24 (IR version 10)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 24 if swish else 17)])
    m.ir_version = 10 if swish else 8
    return m


FLOAT_CASES = {
    "sigmoid": ("Sigmoid", {}, None, False, {"LOGISTIC"}),
    "tanh": ("Tanh", {}, None, False, {"TANH"}),
    "hardswish": ("HardSwish", {}, None, False, {"HARD_SWISH"}),
    "leaky": ("LeakyRelu", {"alpha": 0.1}, None, False, {"LEAKY_RELU"}),
    "prelu_channel": ("PRelu", {}, np.array([0.25, -0.5, 0.0, 1.5]).reshape(1, 4, 1, 1), False,
                      {"PRELU"}),
    "prelu_scalar": ("PRelu", {}, np.array([0.2]), False, {"PRELU"}),
    "prelu_flat": ("PRelu", {}, np.linspace(-1, 1, 36), True, {"PRELU"}),
    "elu": ("Elu", {"alpha": 1.0}, None, False, {"ELU"}),
    "hardsigmoid_torch": ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}, None, False,
                          {"ADD", "MUL"}),     # RELU6 is fused into the ADD
    "hardsigmoid_onnx": ("HardSigmoid", {}, None, False, {"ADD", "MUL"}),
    "silu": ("SiLU", {}, None, False, {"LOGISTIC", "MUL"}),
    "swish": ("Swish", {}, None, False, {"LOGISTIC", "MUL"}),
    "swish_alpha": ("Swish", {"alpha": 1.702}, None, False, {"LOGISTIC", "MUL"}),
}


@pytest.mark.parametrize("case", sorted(FLOAT_CASES))
def test_float_lowering_equals_onnxruntime(case: str) -> None:
    op, attrs, slope, flatten, builtins = FLOAT_CASES[case]
    shape = (5, 4, 3, 3)
    m = onnx_model(op, shape, attrs, slope, flatten)
    x = np.random.default_rng(1).uniform(-6, 6, shape).astype(np.float32)
    expected = ort.InferenceSession(serialize(m)).run(None, {"x": x})[0]
    lowered = lower_to_tflite(onnx_to_graph(m))
    assert {n.op_type for n in lowered.nodes} - {"RESHAPE", "FULLY_CONNECTED"} == builtins
    got = execute(lowered, {"x": to_channels_last(x, "NCHW")})["y"]
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=1e-6)

    # the float .tflite eedge writes computes the same in LiteRT (default kernels: ELU has
    # no BUILTIN_REF kernel)
    data = graph_to_tflite(lowered, range(len(lowered.nodes)), ["x"], ["y"])
    reread, _ = read_tflite_bytes(data)
    one = to_channels_last(x, "NCHW")[:1]
    litert = LiteRTModel(data, reference=False).run([one])[0]
    np.testing.assert_allclose(litert, execute(reread, {"x": one})["y"], atol=2e-6, rtol=1e-6)


def test_elu_with_another_alpha_is_refused_with_the_reason() -> None:
    with pytest.raises(UnsupportedOpError, match="Elu with alpha 0.5: TFLite's ELU is alpha 1"):
        lower_to_tflite(onnx_to_graph(onnx_model("Elu", (1, 4, 3, 3), {"alpha": 0.5})))


def test_registry_declares_every_activation_on_every_path() -> None:
    ops = registry.builtins()
    for name in ("LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU", "PRELU", "ELU"):
        op = ops[name]
        assert op.in_place and op.dsp
    lowerings = registry.lowerings()
    for onnx_op in ("Sigmoid", "Tanh", "HardSwish", "LeakyRelu", "PRelu", "Elu", "HardSigmoid",
                    "Swish"):
        assert set(lowerings[onnx_op].builtins) <= set(ops) | {"ADD", "MUL", "RELU6"}
