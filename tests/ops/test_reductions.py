"""MEAN, SUM and REDUCE_MAX over any axes, on every path (eedge.ops.reductions).

ONNX ReduceMean/ReduceSum/ReduceMax (axes as attribute and as opset-18
input), GlobalAveragePool and GlobalMaxPool are lowered and compared with
ONNX Runtime; the float .tflite runs in LiteRT; the int8 reference is
compared with TFLite Micro (the oracle: its MEAN and SUM take one general
path, QuantizedMeanOrSum, for every axis set; its REDUCE_MAX needs equal
input and output quantization) and with LiteRT BUILTIN_REF (equal for MEAN
and REDUCE_MAX; its int8 SUM is wrong, see test_litert_builtin_ref); the
generated C runs on the host and in QEMU (Cortex-M4, DSP path on and off).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import flatbuffers
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from device_compare import assert_c_equals_reference

from eedge.backends.onnx_writer import serialize
from eedge.backends.tflite_writer import graph_to_tflite
from eedge.codegen.device_run import run_on_target
from eedge.codegen.inputs import device_samples
from eedge.codegen.model_source import load_codegen_model
from eedge.errors import ModelError, UnsupportedOpError
from eedge.export import export_onnx
from eedge.frontends.onnx_frontend import onnx_to_graph
from eedge.frontends.tflite_frontend import read_tflite_bytes
from eedge.ir.graph import Graph
from eedge.ir.layout import to_channels_last
from eedge.ops import registry
from eedge.ops.reductions import canonical_dims
from eedge.passes.lower_tflite import lower_to_tflite
from eedge.reference.executor import execute
from eedge.runtime.interpreters import LiteRTModel, TFLMModel
from eedge.targets import load_target
from eedge.tflite_schema import schema as S

Quant = tuple[float, int]
N_INPUTS = 200


Spec = tuple[str, list[int], bool, Quant]
"""(op, axes, keep_dims, output quantization) of one reduction."""


def reduce_tflite(in_shape: tuple[int, ...], qi: Quant, specs: list[Spec]) -> bytes:
    """x -> one int8 reduction per spec -> RESHAPE to (1, F) -> one output each.

    Written with the schema bindings (a foreign file, not eedge's writer). The
    RESHAPE makes each output a (batch, classes) exit; with several specs the
    C runtime runs each reduction as its own stage, so QEMU counts its
    instructions alone.
    """
    model = S.ModelT()
    model.version = 3
    model.buffers = [S.BufferT()]
    model.operatorCodes, codes = [], {}
    tensors: list[S.TensorT] = []

    def opcode(builtin: str, version: int) -> int:
        if builtin not in codes:
            code = S.OperatorCodeT()
            code.builtinCode = code.deprecatedBuiltinCode = getattr(S.BuiltinOperator, builtin)
            code.version = version
            model.operatorCodes.append(code)
            codes[builtin] = len(model.operatorCodes) - 1
        return codes[builtin]

    def tensor(name: str, shape: list[int], q: Quant | None, value: np.ndarray | None = None
               ) -> int:
        t = S.TensorT()
        t.name, t.shape, t.buffer = name, list(shape), 0
        t.type = S.TensorType.INT8 if value is None else S.TensorType.INT32
        if q is not None:
            t.quantization = S.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = [q[0]], [q[1]]
        if value is not None:
            buf = S.BufferT()
            buf.data = list(value.tobytes())
            model.buffers.append(buf)
            t.buffer = len(model.buffers) - 1
        tensors.append(t)
        return len(tensors) - 1

    x = tensor("x", list(in_shape), qi)
    operators, outputs = [], []
    rank = len(in_shape)
    for k, (op, axes, keep, qo) in enumerate(specs):
        reduced = {a % rank for a in axes}
        z_shape = ([1 if i in reduced else d for i, d in enumerate(in_shape)] if keep else
                   [d for i, d in enumerate(in_shape) if i not in reduced])
        flat = [1, int(np.prod(z_shape[1:], dtype=np.int64))]
        axes_t = tensor(f"axes{k}", [len(axes)], None, np.array(axes, np.int32))
        z = tensor(f"z{k}", z_shape, qo)
        shape_t = tensor(f"shape{k}", [2], None, np.array(flat, np.int32))
        out = tensor(f"out{k}", flat, qo)
        reduce_op = S.OperatorT()
        reduce_op.opcodeIndex = opcode(op, 2)
        reduce_op.inputs, reduce_op.outputs = [x, axes_t], [z]
        reduce_op.builtinOptionsType = S.BuiltinOptions.ReducerOptions
        reduce_op.builtinOptions = S.ReducerOptionsT()
        reduce_op.builtinOptions.keepDims = keep
        reshape = S.OperatorT()
        reshape.opcodeIndex = opcode("RESHAPE", 1)
        reshape.inputs, reshape.outputs = [z, shape_t], [out]
        reshape.builtinOptionsType = S.BuiltinOptions.ReshapeOptions
        reshape.builtinOptions = S.ReshapeOptionsT()
        reshape.builtinOptions.newShape = flat
        operators += [reduce_op, reshape]
        outputs.append(out)
    graph = S.SubGraphT()
    graph.name, graph.tensors, graph.inputs, graph.outputs = "main", tensors, [x], outputs
    graph.operators = operators
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def int8_inputs(shape: tuple[int, ...], count: int = N_INPUTS, seed: int = 0) -> np.ndarray:
    """Random bytes, plus all -128 and all 127 samples (the sums' extremes)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (count,) + shape[1:], dtype=np.int8)
    x[0], x[1] = -128, 127
    return x


def reference(data: bytes, x: np.ndarray, k: int = 0) -> np.ndarray:
    graph, _ = read_tflite_bytes(data)
    return execute(graph, {"x": x})[f"out{k}"]


# -- lowering vs ONNX Runtime ------------------------------------------------------
LAYOUTS = {4: "NCHW", 3: "NCL"}


def reduce_onnx(op: str, shape: tuple[int, ...], axes: list[int] | None, keep: int,
                opset: int) -> onnx.ModelProto:
    """x -> op -> Flatten -> MatMul -> y: the exit is 2-D and the MatMul reads the flattened
    reduction in ONNX order, so a lowering that leaves its bytes in another order fails."""
    inits, inputs, attrs = [], ["x"], {}
    if not op.startswith("Global"):
        attrs["keepdims"] = keep
        axes_input = opset >= 18 or (op == "ReduceSum" and opset >= 13)
        if axes_input:
            inits.append(numpy_helper.from_array(np.array(axes, np.int64), "axes"))
            inputs.append("axes")
        else:
            attrs["axes"] = axes
    else:
        axes, keep = list(range(2, len(shape))), 1
    dims = ["N", *shape[1:]]
    reduced = {a % len(shape) for a in axes} or set(range(len(shape)))  # no axes: all
    out = ([1 if i in reduced else d for i, d in enumerate(dims)] if keep else
           [d for i, d in enumerate(dims) if i not in reduced])
    features = int(np.prod(out[1:]))
    w = np.random.default_rng(1).standard_normal((features, 3)).astype(np.float32)
    inits.append(numpy_helper.from_array(w, "w"))
    nodes = [helper.make_node(op, inputs, ["r"], name="r", **attrs),
             helper.make_node("Flatten", ["r"], ["f"], name="flat", axis=1),
             helper.make_node("MatMul", ["f", "w"], ["y"], name="fc")]
    graph = helper.make_graph(
        nodes, "reduce", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def lowered_vs_onnxruntime(model: onnx.ModelProto, shape: tuple[int, ...]) -> Graph:
    lowered = lower_to_tflite(onnx_to_graph(model))
    x = np.random.default_rng(2).standard_normal((3,) + shape[1:]).astype(np.float32)
    expected = ort.InferenceSession(serialize(model)).run(None, {"x": x})[0]
    got = execute(lowered, {"x": to_channels_last(x, LAYOUTS.get(len(shape)))})[lowered.exits[0]]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    return lowered


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 6), (2, 7)])
def test_every_axes_and_keepdims_combination_lowers_exactly(op: str,
                                                            shape: tuple[int, ...]) -> None:
    """All non-batch axis sets x keepdims x (attribute axes, opset-18 input axes)."""
    rank = len(shape)
    combos = [axes for n in range(1, rank) for axes in itertools.combinations(range(1, rank), n)]
    for i, (axes, keep) in enumerate(itertools.product(combos, (0, 1))):
        opset = (13, 18)[(i + i // 2) % 2]   # both forms of the axes, with either keepdims
        signed = [a - rank for a in axes] if i % 3 == 0 else list(axes)   # negative axes too
        lowered_vs_onnxruntime(reduce_onnx(op, shape, signed, keep, opset), shape)


def ops_of(graph: Graph) -> list[str]:
    return [n.op_type for n in graph.nodes]


@pytest.mark.parametrize("axes, keep, expected", [
    ([2, 3], 0, ["MEAN", "RESHAPE", "FULLY_CONNECTED"]),        # torch x.mean((2, 3))
    ([1], 1, ["MEAN", "RESHAPE", "FULLY_CONNECTED"]),           # x.mean(1, keepdim=True)
    ([3], 0, ["MEAN", "RESHAPE", "RESHAPE", "FULLY_CONNECTED"]),  # W dropped: (N,C,H) is N1HC
    ([1], 0, ["MEAN", "TRANSPOSE", "RESHAPE", "FULLY_CONNECTED"]),  # C dropped: (N,H,W) is N1WH
])
def test_dropped_axes_get_the_layout_of_the_lowered_output(axes: list[int], keep: int,
                                                           expected: list[str]) -> None:
    lowered = lowered_vs_onnxruntime(reduce_onnx("ReduceMean", (2, 3, 4, 5), axes, keep, 18),
                                     (2, 3, 4, 5))
    assert ops_of(lowered) == expected


@pytest.mark.parametrize("op, builtin", [("GlobalMaxPool", "REDUCE_MAX"),
                                         ("GlobalAveragePool", "MEAN")])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 6)])
def test_global_pools(op: str, builtin: str, shape: tuple[int, ...]) -> None:
    lowered = lowered_vs_onnxruntime(reduce_onnx(op, shape, None, 1, 13), shape)
    node = lowered.nodes[0]
    assert node.op_type == builtin and node.attrs["keep_dims"] == 1


@pytest.mark.parametrize("axes", [[0, 1], []])
def test_reductions_over_the_batch_are_refused(axes: list[int]) -> None:
    """Exits route samples along the batch: the import refuses before the lowering would."""
    with pytest.raises((ModelError, UnsupportedOpError), match="batch"):
        lower_to_tflite(onnx_to_graph(reduce_onnx("ReduceMax", (2, 3, 4, 5), axes, 1, 18)))


def test_noop_with_empty_axes_is_an_identity() -> None:
    model = reduce_onnx("ReduceSum", (2, 7), [1], 1, 18)
    node = model.graph.node[0]
    del node.input[1]
    node.attribute.append(helper.make_attribute("noop_with_empty_axes", 1))
    model.graph.node[2].CopyFrom(helper.make_node("Identity", ["f"], ["y"], name="fc"))
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                 ["N", 7]))
    lowered = lowered_vs_onnxruntime(model, (2, 7))
    assert not {"SUM", "MEAN"} & set(ops_of(lowered))


# -- float .tflite in LiteRT ---------------------------------------------------------
def test_float_tflite_runs_in_litert_like_the_float_kernels() -> None:
    shape = (2, 3, 4, 5)
    for op, axes, keep in [("ReduceSum", [1], 1), ("ReduceMax", [2, 3], 0),
                           ("ReduceMean", [3], 0), ("ReduceMax", [1], 0)]:
        lowered = lower_to_tflite(onnx_to_graph(reduce_onnx(op, shape, axes, keep, 18)))
        data = graph_to_tflite(lowered, range(len(lowered.nodes)), ["x"], lowered.exits)
        x = np.random.default_rng(3).standard_normal((4, 4, 5, 3)).astype(np.float32)
        ours = execute(lowered, {"x": x})[lowered.exits[0]]
        litert = LiteRTModel(data, reference=True).run([x])[0]
        np.testing.assert_allclose(litert.reshape(ours.shape), ours, rtol=1e-5, atol=1e-5)


# -- int8 reference vs TFLite Micro (and LiteRT BUILTIN_REF) --------------------------
INT8_CASES = [  # (input shape, axes, keep_dims): the C kernel's paths and TFLite's shapes
    ((1, 5, 5, 8), [1, 2], True),    # squeeze-excite global pool
    ((1, 5, 5, 8), [2, 1], False),   # torch x.mean((2, 3)), axes out of order
    ((1, 4, 6, 8), [3], True),       # over channels (last axis)
    ((1, 4, 6, 8), [2], False),      # over W only
    ((1, 4, 6, 8), [1, 3], True),    # two separate axis groups
    ((1, 1, 10, 6), [2], True),      # over the tokens/L of a 3-D (N, 1, L, C) tensor
    ((1, 12, 6), [1], False),        # a 3-D TFLite tensor
    ((1, 16), [-1], True),           # 2-D, negative axis
    ((1, 20, 20, 6), [1, 2], True),  # 400 positions, 6 channels: DSP lane flush and tail
]


def count_of(shape: tuple[int, ...], axes: list[int]) -> int:
    return int(np.prod([shape[a % len(shape)] for a in set(a % len(shape) for a in axes)]))


def scale_sets(op: str, shape: tuple[int, ...], axes: list[int]) -> list[tuple[Quant, Quant]]:
    """Input/output quantizations: equal, and out scale != in scale both ways (MEAN, SUM).

    Random int8 inputs' sums spread about 74 * sqrt(count) input steps and
    their means 74 / sqrt(count): output scales follow, so most outputs are
    not saturated and the requantization really is exercised.
    """
    qi = (0.05, -3)
    if op == "REDUCE_MAX":
        return [(qi, qi), ((0.021, 17), (0.021, 17))]
    spread = np.sqrt(count_of(shape, axes))
    factor = [1.0, 1.75 / spread, 0.6 / spread] if op == "MEAN" else [1.0, 1.75 * spread,
                                                                      0.7 * spread]
    return [(qi, (qi[0] * f, z)) for f, z in zip(factor, (-3, 9, -40))]


def tflm(data: bytes, x: np.ndarray) -> np.ndarray:
    return TFLMModel(data, 1).run([x])[0]


@pytest.mark.parametrize("op", ["MEAN", "SUM", "REDUCE_MAX"])
@pytest.mark.parametrize("shape, axes, keep", INT8_CASES)
def test_int8_reference_equals_tflite_micro(op: str, shape: tuple[int, ...], axes: list[int],
                                            keep: bool) -> None:
    x = int8_inputs(shape)
    for qi, qo in scale_sets(op, shape, axes):
        data = reduce_tflite(shape, qi, [(op, axes, keep, qo)])
        ours = reference(data, x)
        expected = tflm(data, x).reshape(ours.shape)
        assert np.array_equal(ours, expected), (f"{qi} -> {qo}: "
                                                f"{int((ours != expected).sum())} bytes differ")
        saturated = np.isin(ours[2:], (-128, 127)).mean()
        assert saturated < 0.5 or qo == qi, f"{qi} -> {qo}: {saturated:.0%} saturated"
        assert len(np.unique(ours)) > 2


def exact_sum(x: np.ndarray, qi: Quant, qo: Quant, axes: list[int]) -> np.ndarray:
    real = ((x.astype(np.float64) - qi[1]) * qi[0]).sum(axis=tuple(axes))
    return real / qo[0] + qo[1]


def test_litert_builtin_ref() -> None:
    """MEAN and REDUCE_MAX: LiteRT BUILTIN_REF gives TFLM's bytes too.

    int8 SUM: LiteRT BUILTIN_REF (ai-edge-litert 2.3) gives other bytes on
    nearly every output (mostly -1 whatever the input), far from the exact
    sum, while TFLM (and eedge) are within one step of it: TFLM is followed,
    as DESIGN.md's rule says (TFLM is the oracle unless it has the bug).
    """
    shape, axes = (1, 4, 6, 8), [1, 2]
    x = int8_inputs(shape)
    for op in ("MEAN", "REDUCE_MAX"):
        for qi, qo in scale_sets(op, shape, axes):
            data = reduce_tflite(shape, qi, [(op, axes, True, qo)])
            ours = reference(data, x)
            litert = LiteRTModel(data, reference=True).run([x])[0].reshape(ours.shape)
            assert np.array_equal(ours, litert), f"{op} {qi} -> {qo}"
    qi, qo = scale_sets("SUM", shape, axes)[1]
    data = reduce_tflite(shape, qi, [("SUM", axes, False, qo)])
    ours = reference(data, x).astype(np.float64).reshape(len(x), -1)
    inside = np.abs(exact_sum(x, qi, qo, axes).reshape(ours.shape)) < 127 - abs(qo[1])
    exact = exact_sum(x, qi, qo, axes).reshape(ours.shape)
    assert np.abs(ours - exact)[inside].max() <= 1.0
    litert = LiteRTModel(data, reference=True).run([x])[0].reshape(ours.shape)
    if not np.array_equal(litert, ours):   # a fixed LiteRT would simply agree
        assert np.abs(litert - exact)[inside].mean() > 5 * np.abs(ours - exact)[inside].mean()


def test_reduce_max_with_two_quantizations_is_refused() -> None:
    """TFLM's REDUCE_MAX refuses int8 input and output scales that differ; so does the reader."""
    data = reduce_tflite((1, 4, 6, 8), (0.05, -3), [("REDUCE_MAX", [1, 2], True, (0.1, -3))])
    with pytest.raises(ModelError, match="REDUCE_MAX .* quantization"):
        read_tflite_bytes(data)


def test_reduce_max_shares_quantization_and_sum_observes_its_own() -> None:
    assert registry.builtin("REDUCE_MAX").quant == "shared"
    assert registry.builtin("SUM").quant == "observed"


def test_writer_and_reader_round_trip() -> None:
    """eedge's writer re-emits a foreign file's reductions; it reads back equal and runs alike."""
    shape = (1, 4, 6, 8)
    specs: list[Spec] = [("MEAN", [1, 2], True, (0.03, 4)), ("SUM", [3], False, (0.4, -7)),
                         ("REDUCE_MAX", [2], False, (0.05, -3))]
    graph, outputs = read_tflite_bytes(reduce_tflite(shape, (0.05, -3), specs))
    written = graph_to_tflite(graph, range(len(graph.nodes)), ["x"], outputs)
    again, _ = read_tflite_bytes(written)
    for a, b in zip(graph.nodes, again.nodes):
        assert (a.op_type, a.attrs) == (b.op_type, b.attrs)
        assert np.array_equal(graph.constants[a.inputs[1]], again.constants[b.inputs[1]])
    x = int8_inputs(shape, 50)
    env = execute(again, {"x": x})
    for k, tensor in enumerate(outputs):
        expected = TFLMModel(written, len(outputs)).run([x])[k]
        assert np.array_equal(env[tensor], expected.reshape(env[tensor].shape))


# -- C runtime ---------------------------------------------------------------------------
def test_canonical_dims_merge_axes_the_kernel_sees_as_one() -> None:
    assert canonical_dims([1, 5, 5, 8], [1, 2]) == ([1, 1, 25, 8], [0, 0, 1, 0])
    assert canonical_dims([1, 1, 7, 8], [2]) == ([1, 1, 7, 8], [0, 0, 1, 0])
    assert canonical_dims([1, 4, 6, 8], [-1]) == ([1, 1, 24, 8], [0, 0, 0, 1])
    assert canonical_dims([1, 4, 6, 8], [1, 3]) == ([1, 4, 6, 8], [0, 1, 0, 1])
    assert canonical_dims([1, 12, 6], [1]) == ([1, 1, 12, 6], [0, 0, 1, 0])
    assert canonical_dims([1, 2, 3, 4, 5], [1, 2]) == ([1, 1, 6, 20], [0, 0, 1, 0])  # 5-D
    with pytest.raises(UnsupportedOpError, match="four alternating"):
        canonical_dims([2, 2, 2, 2, 2], [1, 3])


C_SHAPE = (1, 8, 40, 14)   # 320 positions (> 256: the DSP lanes flush), 14 = 3 * 4 + 2 channels
C_AXES = [([1, 2], True), ([3], True), ([2], False), ([1, 3], True), ([2, 3], False)]


def c_model(tmp_path: Path) -> Path:
    """One input, 15 reductions (MEAN, SUM, MAX over five axis patterns): one stage each."""
    qi = (0.05, -3)
    specs: list[Spec] = []
    for axes, keep in C_AXES:
        spread = np.sqrt(count_of(C_SHAPE, axes))
        specs += [("MEAN", axes, keep, (qi[0] * 1.75 / spread, 5)),
                  ("SUM", axes, keep, (qi[0] * 1.75 * spread, -2)),
                  ("REDUCE_MAX", axes, keep, qi)]
    path = tmp_path / "reductions.tflite"
    path.write_bytes(reduce_tflite(C_SHAPE, qi, specs))
    return path


def assert_device_matches(path: Path, x: np.ndarray, target: str, dsp: bool | None = None
                          ) -> dict:  # type: ignore[type-arg]
    return assert_c_equals_reference(load_codegen_model(path), x, target, dsp)


def test_host_c_build_is_bit_exact(tmp_path: Path) -> None:
    assert_device_matches(c_model(tmp_path), int8_inputs(C_SHAPE), "host")


def test_qemu_cortex_m4_is_bit_exact_with_and_without_dsp(tmp_path: Path) -> None:
    """Both paths give the reference's bytes; the DSP one pays on the H,W and last-axis sums.

    Measured (instructions per input element, from the difference of two input
    sizes): H,W mean/sum 3.0 portable, 1.28 DSP (eedge_mean_hw_s8 before: 6.0);
    last-axis mean/sum 3.0 and 1.25; max 5.0 and 1.5 (H,W), 5.0 and 1.25 (last).
    """
    path, x = c_model(tmp_path), int8_inputs(C_SHAPE, 3)
    summaries = {dsp: assert_device_matches(path, x, "qemu-cortex-m4", dsp)
                 for dsp in (True, False)}
    assert summaries[True]["dsp"] and not summaries[False]["dsp"]
    dsp, portable = (summaries[k]["stage_instructions_mean"] for k in (True, False))
    # MEAN, SUM, MAX over H,W: the DSP path saves over one instruction per input element
    # (stage counts also hold the exit's score, the same in both builds)
    elements = int(np.prod(C_SHAPE))
    for stage in (0, 1, 2):
        saved = (portable[stage] - dsp[stage]) / elements
        assert saved > 1.0, f"stage {stage}: {dsp[stage]} vs {portable[stage]} instructions"


# -- end to end from torch ---------------------------------------------------------------
class TwoExitReductions(torch.nn.Module):
    """Exit 0 after x.amax((2, 3)); exit 1 reads a channel mean, a max pool and a sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.pool = torch.nn.AdaptiveMaxPool2d(1)
        self.fc0 = torch.nn.Linear(8, 10)
        self.fc_mean = torch.nn.Linear(64, 10)
        self.fc_max = torch.nn.Linear(16, 10)
        self.fc_sum = torch.nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.conv1(x))
        exit0 = self.fc0(h.amax((2, 3)))
        g = torch.relu(self.conv2(h))
        mean = g.mean(1, keepdim=True).flatten(1)
        peak = self.pool(g).flatten(1)
        total = g.sum((2, 3))
        return exit0, self.fc_mean(mean) + self.fc_max(peak) + self.fc_sum(total)


def test_torch_model_with_reductions_exports_int8_and_runs_in_c(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TwoExitReductions().eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.randn(1, 1, 8, 8),), str(path))
    onnx_ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"ReduceMax", "ReduceMean", "ReduceSum"} <= onnx_ops
    calibration = np.random.default_rng(0).standard_normal((64, 1, 8, 8)).astype(np.float32)
    result = export_onnx(path, tmp_path / "bundle", int8=True, calibration=calibration,
                         force=True)
    report = result.bundle.manifest["verification"]
    assert report["onnx"]["max_abs_diff"] <= report["onnx"]["tolerance"]
    assert report["tflite_int8"]["reference_vs_tflm"]["identical"]
    assert report["tflite_int8"]["staged_vs_monolithic"]["identical"]
    graph, _ = read_tflite_bytes((result.bundle.path / "model.int8.tflite").read_bytes())
    assert {"REDUCE_MAX", "MEAN", "SUM"} <= set(ops_of(graph))
    x = np.random.default_rng(5).standard_normal((50, 1, 8, 8)).astype(np.float32)
    assert_bundle_runs_bit_exactly_on_the_host(result.bundle.path, x)


def assert_bundle_runs_bit_exactly_on_the_host(bundle: Path, x: np.ndarray) -> None:
    """Every output of every stage of the host C build equals the int8 reference's."""
    codegen = load_codegen_model(bundle)
    run = run_on_target(codegen, load_target("host"), x)
    shape = tuple(int(d) for d in codegen.graph.tensors[codegen.input].shape)
    samples = device_samples(x, shape, codegen.input_quant.scale[0],
                             codegen.input_quant.zero_point[0], codegen.input_layout)
    env = execute(codegen.graph, {codegen.input: samples.reshape((len(x),) + shape[1:])})
    for n, sample in enumerate(run.run.samples):
        for stage, outputs in zip(codegen.stages, sample.stage_outputs):
            for name, got in zip(stage.outputs, outputs):
                assert np.array_equal(got, env[name][n].reshape(-1)), (n, name)


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "tflite" / "reduce_minmax.tflite"


@pytest.mark.skipif(not FIXTURE.is_file(), reason="the reduce_minmax.tflite fixture is absent")
def test_tensorflow_converter_reductions_equal_tflite_micro() -> None:
    """TFLiteConverter's SUM and MEAN over a scalar axis -1 and REDUCE_MAX without keep_dims."""
    data = FIXTURE.read_bytes()
    graph, outputs = read_tflite_bytes(data)
    assert {"SUM", "MEAN", "REDUCE_MAX"} <= set(ops_of(graph))
    x = int8_inputs(tuple(int(d) for d in graph.inputs[0].shape))
    ours = execute(graph, {graph.inputs[0].name: x})[outputs[0]]
    assert np.array_equal(ours, tflm(data, x).reshape(ours.shape))


def test_channel_mean_without_keepdims_exports_int8_and_runs_in_c(tmp_path: Path) -> None:
    """torch's x.mean(1) of NCHW: MEAN then TRANSPOSE, through PTQ, TFLM and the C runtime."""
    model = reduce_onnx("ReduceMean", (1, 6, 4, 5), [1], 0, 18)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    calibration = np.random.default_rng(0).standard_normal((32, 6, 4, 5)).astype(np.float32)
    result = export_onnx(path, tmp_path / "bundle", int8=True, calibration=calibration,
                         force=True)
    assert result.bundle.manifest["verification"]["tflite_int8"]["reference_vs_tflm"]["identical"]
    assert ops_of(load_codegen_model(result.bundle.path).graph)[:2] == ["MEAN", "TRANSPOSE"]
    x = np.random.default_rng(6).standard_normal((50, 6, 4, 5)).astype(np.float32)
    assert_bundle_runs_bit_exactly_on_the_host(result.bundle.path, x)
