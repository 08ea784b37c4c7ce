"""TFLite frontend: reads standard and hand-made files, verifies them, survives fuzzing."""

from __future__ import annotations

import time

import flatbuffers
import numpy as np
import pytest
from conftest import exported_onnx
from zoo import example_input

from eedge.backends.tflite_writer import graph_to_tflite
from eedge.errors import EedgeError, ModelError, UnsupportedOpError
from eedge.frontends.onnx_frontend import onnx_to_graph
from eedge.frontends.tflite_frontend import load_tflite, read_tflite_bytes
from eedge.passes.lower_tflite import lower_to_tflite
from eedge.passes.quantize import observe_ranges, quantize_graph
from eedge.reference.executor import execute
from eedge.reference.int8_kernels import quantize_input
from eedge.runtime.interpreters import LiteRTModel
from eedge.tflite_schema import schema as S


def _tensor(name: str, shape: list[int], ttype: int, buffer: int = 0,
            scale: list[float] | None = None, zero: list[int] | None = None,
            axis: int = 0) -> S.TensorT:
    t = S.TensorT()
    t.name, t.shape, t.type, t.buffer = name, shape, ttype, buffer
    if scale is not None:
        t.quantization = S.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = scale, zero
        t.quantization.quantizedDimension = axis
    return t


def hand_made_int8_model(fc_weights_transposed: bool = False, bias_scale: float | None = None,
                         op: int = S.BuiltinOperator.CONV_2D) -> bytes:
    """CONV_2D (2x2, 2 channels) -> RESHAPE -> FULLY_CONNECTED, written field by field."""
    rng = np.random.default_rng(3)
    conv_w = rng.integers(-127, 128, (2, 2, 2, 1), dtype=np.int8)
    conv_b = np.array([100, -50], np.int32)
    fc_w = rng.integers(-127, 128, (3, 18), dtype=np.int8)
    if fc_weights_transposed:
        fc_w = np.ascontiguousarray(fc_w.T)
    fc_b = np.array([7, -7, 0], np.int32)
    model = S.ModelT()
    model.version = 3
    buffers = [S.BufferT()]
    for arr in (conv_w, conv_b, fc_w, fc_b, np.array([1, 18], np.int32)):
        b = S.BufferT()
        b.data = np.frombuffer(arr.tobytes(), np.uint8)
        buffers.append(b)
    model.buffers = buffers
    codes = []
    for builtin in (op, S.BuiltinOperator.RESHAPE, S.BuiltinOperator.FULLY_CONNECTED):
        c = S.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = builtin, builtin, 1
        codes.append(c)
    model.operatorCodes = codes
    i8, i32 = S.TensorType.INT8, S.TensorType.INT32
    tensors = [
        _tensor("x", [1, 4, 4, 1], i8, 0, [0.02], [-3]),
        _tensor("conv_w", list(conv_w.shape), i8, 1, [0.01, 0.02], [0, 0], 0),
        _tensor("conv_b", [2], i32, 2, [0.02 * 0.01, 0.02 * 0.02], [0, 0]),
        _tensor("conv_out", [1, 3, 3, 2], i8, 0, [0.05], [5]),
        _tensor("flat", [1, 18], i8, 0, [0.05], [5]),
        _tensor("fc_w", list(fc_w.shape), i8, 3, [0.004], [0]),
        _tensor("fc_b", [3], i32, 4, [bias_scale or 0.05 * 0.004], [0]),
        _tensor("logits", [1, 3], i8, 0, [0.1], [-2]),
        _tensor("shape", [2], i32, 5),
    ]
    conv = S.OperatorT()
    conv.opcodeIndex, conv.inputs, conv.outputs = 0, [0, 1, 2], [3]
    conv.builtinOptionsType = S.BuiltinOptions.Conv2DOptions
    conv.builtinOptions = S.Conv2DOptionsT()
    conv.builtinOptions.padding = S.Padding.VALID
    conv.builtinOptions.strideH = conv.builtinOptions.strideW = 1
    conv.builtinOptions.fusedActivationFunction = S.ActivationFunctionType.RELU
    reshape = S.OperatorT()
    reshape.opcodeIndex, reshape.inputs, reshape.outputs = 1, [3, 8], [4]
    fc = S.OperatorT()
    fc.opcodeIndex, fc.inputs, fc.outputs = 2, [4, 5, 6], [7]
    fc.builtinOptionsType = S.BuiltinOptions.FullyConnectedOptions
    fc.builtinOptions = S.FullyConnectedOptionsT()
    graph = S.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs = tensors, [0], [7]
    graph.operators = [conv, reshape, fc]
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_hand_made_file_round_trips_exactly() -> None:
    data = hand_made_int8_model()
    graph, outputs = read_tflite_bytes(data)
    assert [n.op_type for n in graph.nodes] == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    assert graph.nodes[0].attrs["activation"] == "RELU"
    x = np.random.default_rng(0).integers(-128, 128, (50, 4, 4, 1), dtype=np.int8)
    ours = execute(graph, {"x": x})[outputs[0]]
    theirs = LiteRTModel(data).run([x])[0]
    assert np.array_equal(ours, theirs)  # FC here is short enough to round identically
    rewritten = graph_to_tflite(graph, range(len(graph.nodes)), ["x"], outputs)
    again, _ = read_tflite_bytes(rewritten)
    assert np.array_equal(execute(again, {"x": x})[outputs[0]], ours)


def test_own_files_round_trip_and_are_aligned() -> None:
    lowered = lower_to_tflite(onnx_to_graph(exported_onnx("residual")))
    nhwc = example_input(batch=32).transpose(0, 2, 3, 1)
    q = quantize_graph(lowered, observe_ranges(lowered, [{"input": nhwc}]))
    data = graph_to_tflite(q, range(len(q.nodes)), ["input"], q.exits)
    assert data[4:8] == b"TFL3"
    model = S.Model.GetRootAs(bytearray(data), 0)
    for i in range(1, model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.DataLength():
            offset = buffer._tab.Vector(buffer._tab.Offset(4))
            assert offset % 16 == 0, "constant data must be 16-byte aligned"
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        assert code.BuiltinCode() == code.DeprecatedBuiltinCode() or code.BuiltinCode() > 127
    graph, outputs = read_tflite_bytes(data)
    xq = quantize_input(nhwc, q.inputs[0].quant)
    a, b = execute(q, {"input": xq}), execute(graph, {"input": xq})
    for name in q.exits:
        assert np.array_equal(a[name], b[name])


@pytest.mark.parametrize("kwargs, message", [
    ({"fc_weights_transposed": True}, r"\[out, in\]"),
    ({"bias_scale": 0.5}, "bias scale"),
    ({"op": S.BuiltinOperator.LSH_PROJECTION}, "unsupported TFLite operator LSH_PROJECTION"),
])
def test_semantic_errors_runtimes_would_miss(kwargs: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        read_tflite_bytes(hand_made_int8_model(**kwargs))


def test_not_a_tflite_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelError, match="TFL3"):
        read_tflite_bytes(b"\x00" * 64)
    path = tmp_path / "m.tflite"
    path.write_bytes(hand_made_int8_model())
    with pytest.raises(ModelError, match=r"\(batch, classes\)"):
        load_tflite(path, exits=["conv_out"])
    with pytest.raises(ModelError, match="not tensors"):
        load_tflite(path, exits=["nope"])


def test_fuzzed_files_raise_eedge_errors_and_never_hang() -> None:
    """Truncations, byte flips and overwritten offsets: an error or a valid model."""
    base = bytearray(hand_made_int8_model())
    rng = np.random.default_rng(1234)
    cases: list[bytes] = [bytes(base[:n]) for n in range(0, len(base), 7)]
    for _ in range(2500):
        mutated = bytearray(base)
        kind = rng.integers(3)
        if kind == 0:
            for pos in rng.integers(0, len(mutated), rng.integers(1, 9)):
                mutated[pos] = int(rng.integers(256))
        elif kind == 1:
            pos = int(rng.integers(0, len(mutated) - 4))
            mutated[pos:pos + 4] = int(rng.integers(0, 2**32)).to_bytes(4, "little")
        else:
            pos = int(rng.integers(8, len(mutated) - 4)) & ~3
            mutated[pos:pos + 4] = int(rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, len(base)])
                                       ).to_bytes(4, "little")
        cases.append(bytes(mutated))
    slowest = 0.0
    parsed = 0
    for data in cases:
        start = time.perf_counter()
        try:
            read_tflite_bytes(data)
            parsed += 1
        except EedgeError:
            pass
        slowest = max(slowest, time.perf_counter() - start)
    assert slowest < 1.0, f"a malformed file took {slowest:.2f} s to reject"
    assert parsed < len(cases)


def test_unsupported_version(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    data = bytearray(hand_made_int8_model())
    model = S.Model.GetRootAs(data, 0)
    pos = model._tab.Offset(4)  # version field
    assert pos
    data[model._tab.Pos + pos] = 2
    with pytest.raises(UnsupportedOpError, match="schema version 2"):
        read_tflite_bytes(bytes(data))
