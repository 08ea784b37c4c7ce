"""Standalone RELU/RELU6/RELU_N1_TO_1 that change scale: each follows its right oracle bit for bit.

A TensorFlow-made int8 file may give a standalone ReLU an output scale of
its own, so the kernel requantizes. Which float type the scale ratio is
computed in decides the last bit of the Q31 multiplier, and that decides
ties: with scales 0.05 -> 6/255 the float32 ratio is exactly 2.125 while the
double ratio is a hair below, so inputs whose exact product ends in .5
round differently. Measured facts this test pins (see the kernel module):
TFLite Micro's RELU uses the double ratio; LiteRT's RELU, RELU6 and
RELU_N1_TO_1 use the float32 ratio; TFLM's RELU6 does not requantize at all
(its known bug) and TFLM has no RELU_N1_TO_1. So eedge's RELU must equal
TFLM, its RELU6 and RELU_N1_TO_1 LiteRT BUILTIN_REF, and the generated C
must equal eedge's reference byte for byte for all three.
"""

from __future__ import annotations

import json
from pathlib import Path

import flatbuffers
import numpy as np
import onnx
import pytest
from cli_runner import run_cli
from onnx import TensorProto, helper, numpy_helper

from eedge.codegen.device_run import run_on_target
from eedge.codegen.model_source import load_codegen_model
from eedge.frontends.tflite_frontend import read_tflite_bytes
from eedge.ir.bundle import load_bundle
from eedge.reference.executor import execute
from eedge.reference.fixedpoint import quantize_multiplier
from eedge.reference.int8_kernels import quant_of, relu_multiplier
from eedge.runtime.interpreters import LiteRTModel, TFLMModel
from eedge.runtime.stage_runners import ReferenceRunner
from eedge.targets import load_target
from eedge.tflite_schema import schema as S
from eedge.verify.tflm_exceptions import LITERT_REF, TFLM

F32 = np.float32
SHAPE = (1, 64)   # [batch, classes]: the export tests treat y as an exit
# (input scale, input zero point, output scale, output zero point)
TIE_SCALES = (0.05, -20, 6.0 / 255.0, -128)   # the float ratio is exactly 2.125
OTHER_SCALES = [(0.3, 5, 0.2, -3), (0.07, 0, 0.03, 10), (1 / 255, -128, 1 / 127, 0),
                (0.02, 7, 0.012, -60), (0.1, -5, 0.045, 2)]


def relu_model(op: str, s_in: float, z_in: int, s_out: float, z_out: int) -> bytes:
    """x -> one standalone activation op with its own output quantization -> y (int8).

    Written with the schema bindings as a converter would write it, not
    through eedge's writer, so the tests see a foreign file.
    """
    model = S.ModelT()
    model.version = 3
    model.buffers = [S.BufferT()]
    code = S.OperatorCodeT()
    builtin = getattr(S.BuiltinOperator, op)
    code.builtinCode = code.deprecatedBuiltinCode = builtin
    code.version = 1 if op == "RELU_N1_TO_1" else 2   # LiteRT knows RELU_N1_TO_1 v1 only
    model.operatorCodes = [code]
    tensors = []
    for name, scale, zero in (("x", s_in, z_in), ("y", s_out, z_out)):
        t = S.TensorT()
        t.name, t.shape, t.type, t.buffer = name, list(SHAPE), S.TensorType.INT8, 0
        t.quantization = S.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = [scale], [zero]
        tensors.append(t)
    op_t = S.OperatorT()
    op_t.opcodeIndex, op_t.inputs, op_t.outputs = 0, [0], [1]
    graph = S.SubGraphT()
    graph.name, graph.tensors, graph.inputs, graph.outputs = "main", tensors, [0], [1]
    graph.operators = [op_t]
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def inputs(count: int = 256, seed: int = 0) -> np.ndarray:
    """Every int8 value in the first four samples (every tie is hit), then random ones."""
    every = np.arange(-128, 128, dtype=np.int8).reshape((4,) + SHAPE[1:])
    rest = np.random.default_rng(seed).integers(-128, 128, (count - 4,) + SHAPE[1:],
                                                 dtype=np.int8)
    return np.concatenate([every, rest])


def float_and_double_multipliers(s_in: float, s_out: float) -> tuple[tuple[int, int], ...]:
    f_in, f_out = F32(s_in), F32(s_out)
    return (quantize_multiplier(float(F32(f_in / f_out))),
            quantize_multiplier(float(f_in) / float(f_out)))


def reference(data: bytes, x: np.ndarray) -> np.ndarray:
    graph, _ = read_tflite_bytes(data)
    return execute(graph, {"x": x})["y"]


def test_the_tie_scales_make_float_and_double_multipliers_differ() -> None:
    """Guards the other tests against passing vacuously: the two rules give other bytes."""
    s_in, _, s_out, _ = TIE_SCALES
    as_float, as_double = float_and_double_multipliers(s_in, s_out)
    assert as_float == (1140850688, 2) and as_double == (1140850683, 2)
    assert relu_multiplier("RELU", s_in, s_out) == as_double
    assert relu_multiplier("RELU6", s_in, s_out) == as_float
    assert relu_multiplier("RELU_N1_TO_1", s_in, s_out) == as_float


@pytest.mark.parametrize("scales", [TIE_SCALES, *OTHER_SCALES])
def test_relu_equals_tflm(scales: tuple[float, int, float, int]) -> None:
    data = relu_model("RELU", *scales)
    x = inputs()
    ours = reference(data, x)
    tflm = TFLMModel(data, 1).run([x])[0].reshape(ours.shape)
    assert np.array_equal(ours, tflm), f"{int((ours != tflm).sum())} bytes differ"
    if scales == TIE_SCALES:   # LiteRT's float ratio really is another answer here
        litert = LiteRTModel(data, reference=True).run([x])[0].reshape(ours.shape)
        assert not np.array_equal(litert, tflm)


@pytest.mark.parametrize("op", ["RELU6", "RELU_N1_TO_1"])
@pytest.mark.parametrize("scales", [TIE_SCALES, *OTHER_SCALES])
def test_relu6_and_relu_n1_to_1_equal_litert_ref(op: str,
                                                  scales: tuple[float, int, float, int]) -> None:
    """TFLM has no right answer here (RELU6 bug, no RELU_N1_TO_1): LiteRT's float rule holds."""
    data = relu_model(op, *scales)
    x = inputs()
    ours = reference(data, x)
    litert = LiteRTModel(data, reference=True).run([x])[0].reshape(ours.shape)
    assert np.array_equal(ours, litert), f"{int((ours != litert).sum())} bytes differ"


@pytest.mark.parametrize("op", ["RELU", "RELU6", "RELU_N1_TO_1"])
def test_host_c_build_equals_the_reference(op: str, tmp_path: Path) -> None:
    path = tmp_path / "x.tflite"
    path.write_bytes(relu_model(op, *TIE_SCALES))
    model = load_codegen_model(path)
    x = inputs(200, seed=3)
    run = run_on_target(model, load_target("host"), x)
    device = np.stack([s.stage_outputs[-1][0] for s in run.run.samples])
    expected = execute(model.graph, {model.input: x})["y"]
    assert np.array_equal(device, expected.reshape(device.shape))


def test_export_verifies_a_scale_changing_relu_against_tflm(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before the double ratio, export's own check called this valid file an eedge bug."""
    path = tmp_path / "x.tflite"
    path.write_bytes(relu_model("RELU", *TIE_SCALES))
    out = tmp_path / "b"
    code, _, stderr = run_cli(capsys, "export", str(path), "--out", str(out))
    assert code == 0, stderr
    report = json.loads((out / "manifest.json").read_text())["verification"]
    stages = report["tflite_int8"]["reference_vs_tflm"]["stages"]
    assert [s["reference"] for s in stages] == [TFLM]


def test_export_verifies_a_relu_n1_to_1_file_against_litert_ref(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """TFLite Micro has no RELU_N1_TO_1 kernel: the node is checked against LiteRT BUILTIN_REF.

    Before, export stopped with "TFLite Micro cannot load the model".
    """
    path = tmp_path / "x.tflite"
    path.write_bytes(relu_model("RELU_N1_TO_1", *TIE_SCALES))
    out = tmp_path / "b"
    code, stdout, stderr = run_cli(capsys, "export", str(path), "--out", str(out))
    assert code == 0, stderr
    assert "LiteRT BUILTIN_REF" in stdout
    report = json.loads((out / "manifest.json").read_text())["verification"]
    stage, = report["tflite_int8"]["reference_vs_tflm"]["stages"]
    assert stage["reference"] == LITERT_REF and "RELU_N1_TO_1" in stage["why"]


def _clip_mlp() -> onnx.ModelProto:
    """x -> Clip(-1, 1) -> exit 0; x -> Relu -> exit 1: both activations have nothing to fuse
    into, so they stay standalone, and their inputs' observed ranges differ from their outputs'."""
    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)
             for name, shape in (("w0", (4, 16)), ("b0", (4,)), ("w1", (8, 16)), ("b1", (8,)),
                                 ("w2", (4, 8)), ("b2", (4,)))]
    inits += [numpy_helper.from_array(np.array(v, np.float32), n)
              for n, v in (("lo", -1.0), ("hi", 1.0))]
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["h"], name="clip"),
             helper.make_node("Gemm", ["h", "w0", "b0"], ["exit0"], name="e0", transB=1),
             helper.make_node("Relu", ["x"], ["rx"], name="relu_x"),
             helper.make_node("Gemm", ["rx", "w1", "b1"], ["g1"], name="fc1", transB=1),
             helper.make_node("Relu", ["g1"], ["r1"], name="act1"),
             helper.make_node("Gemm", ["r1", "w2", "b2"], ["exit1"], name="e1", transB=1)]
    graph = helper.make_graph(
        nodes, "clip_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 4]) for n in ("exit0", "exit1")],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_eedge_made_standalone_relu_n1_to_1_exports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """eedge's own quantizer keeps one parameter set across a standalone activation (so the
    RELU ratio question never arises for eedge-made files); but TFLM has no RELU_N1_TO_1
    kernel, so `export --int8` failed on any model with a standalone Clip(-1, 1)."""
    onnx.save(_clip_mlp(), tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz",
             x=np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32) * 2)
    out = tmp_path / "b"
    code, _, stderr = run_cli(capsys, "export", str(tmp_path / "m.onnx"), "--out", str(out),
                              "--int8", "--calib", str(tmp_path / "calib.npz"))
    assert code == 0, stderr
    bundle = load_bundle(out)
    graphs = [ReferenceRunner.from_file(bundle.file(stage["files"]["tflite_int8"])).graph
              for stage in bundle.stages]
    standalone = [(g, n) for g in graphs for n in g.nodes
                  if n.op_type in ("RELU", "RELU_N1_TO_1")]
    assert sorted(n.op_type for _, n in standalone) == ["RELU", "RELU_N1_TO_1"]
    for graph, node in standalone:
        assert quant_of(graph, node.inputs[0]) == quant_of(graph, node.outputs[0])
