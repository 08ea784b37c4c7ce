"""Chains of byte-to-byte int8 nodes become one table lookup in the generated C.

HardSigmoid lowers to ADD(3) -> RELU6 -> MUL(1/6), as TFLite's converters write it;
a standalone ReLU requantizes. Each alone, and any chain of them, is a function of
one input byte: the code generator composes their tables. The generated C must
equal the reference executor, which runs the nodes one by one, on every input
byte; tensors the runtime reads (stage outputs) must never be fused away.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from eedge.codegen.byte_chains import LUT_OP, byte_table, fuse_byte_chains
from eedge.codegen.device_run import run_on_target
from eedge.codegen.model_source import load_codegen_model
from eedge.export import export_onnx
from eedge.reference.executor import execute
from eedge.reference.int8_kernels import quantize_input
from eedge.targets import load_target


def gated_model() -> onnx.ModelProto:
    """x -> Relu -> HardSigmoid -> [exit0: Gemm] ; -> Sub(0.25) -> Tanh -> [exit1: Gemm]."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 48)).astype(np.float32), w)
             for w in ("w0", "w1")]
    inits.append(numpy_helper.from_array(np.array(0.25, np.float32), "quarter"))
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("HardSigmoid", ["r"], ["h"], name="hsig", alpha=1 / 6, beta=0.5),
             helper.make_node("Flatten", ["h"], ["f0"], name="flat0"),
             helper.make_node("Gemm", ["f0", "w0"], ["y0"], name="fc0", transB=1),
             helper.make_node("Sub", ["h", "quarter"], ["s"], name="sub"),
             helper.make_node("Tanh", ["s"], ["t"], name="tanh"),
             helper.make_node("Flatten", ["t"], ["f1"], name="flat1"),
             helper.make_node("Gemm", ["f1", "w1"], ["y1"], name="fc1", transB=1)]
    graph = helper.make_graph(
        nodes, "gated", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, ["N", 4]) for k in range(2)],
        initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_chains_fuse_into_one_lookup_and_equal_the_reference(tmp_path: Path) -> None:
    onnx.save(gated_model(), tmp_path / "g.onnx")
    calibration = np.random.default_rng(0).uniform(-5, 5, (64, 3, 4, 4)).astype(np.float32)
    export_onnx(tmp_path / "g.onnx", tmp_path / "b", int8=True, calibration=calibration,
                force=True)
    model = load_codegen_model(tmp_path / "b")
    fused = fuse_byte_chains(model)
    luts = [n for n in fused.graph.nodes if n.op_type == LUT_OP]
    # stage 0: RELU, ADD (RELU6 fused into it), MUL in one table; stage 1: SUB, TANH in
    # another (the HardSigmoid output is a hand-off, so the chain stops there)
    assert [len(n.attrs["fused"]) for n in luts] == [3, 2]
    assert all(n.op_type not in ("RELU", "ADD", "RELU6", "MUL", "SUB", "TANH")
               for n in fused.graph.nodes)
    assert {t for s in fused.stages for t in s.outputs} == \
        {t for s in model.stages for t in s.outputs}

    x = np.random.default_rng(1).uniform(-5, 5, (256, 3, 4, 4)).astype(np.float32)
    run = run_on_target(model, load_target("host"), x)
    env = execute(model.graph, {model.input: quantize_input(x.transpose(0, 2, 3, 1),
                                                           model.input_quant)})
    for k, stage in enumerate(model.stages):
        for j, name in enumerate(stage.outputs):
            device = np.stack([s.stage_outputs[k][j] for s in run.run.samples])
            assert np.array_equal(device.reshape(env[name].shape), env[name]), name


def test_only_one_byte_functions_get_a_table(tmp_path: Path) -> None:
    onnx.save(gated_model(), tmp_path / "g.onnx")
    calibration = np.random.default_rng(0).uniform(-5, 5, (32, 3, 4, 4)).astype(np.float32)
    export_onnx(tmp_path / "g.onnx", tmp_path / "b", int8=True, calibration=calibration,
                force=True)
    g = load_codegen_model(tmp_path / "b").graph
    kinds = {n.op_type: byte_table(n, g) is not None for n in g.nodes}
    assert kinds["RELU"] and kinds["ADD"] and kinds["TANH"] and kinds["SUB"]
    assert not kinds["FULLY_CONNECTED"] and not kinds["RESHAPE"]


def test_a_float_island_that_never_returns_to_int8_is_refused(tmp_path: Path) -> None:
    """DEQUANTIZE -> LOGISTIC (float) as a stage's last op cannot be a table: one clear line."""
    import pytest

    from eedge.codegen.model_source import CodegenModel, CodegenStage
    from eedge.codegen.project import generate_project
    from eedge.errors import ModelError
    from eedge.ir.graph import Graph, Node, QuantParams, TensorInfo

    q = QuantParams((0.05,), (0,))
    tensors = {"x": TensorInfo("x", (1, 4), "int8", q), "f": TensorInfo("f", (1, 4), "float32"),
               "s": TensorInfo("s", (1, 4), "float32"), "y": TensorInfo("y", (1, 4), "int8", q)}
    nodes = [Node("deq", "DEQUANTIZE", ["x"], ["f"]), Node("sig", "LOGISTIC", ["f"], ["s"]),
             Node("pad", "RELU", ["x"], ["y"])]
    graph = Graph("island", [tensors["x"]], ["y"], nodes, {}, tensors, 0, 0, "tflite")
    model = CodegenModel("island", graph, [CodegenStage(0, [0, 1, 2], ["x"], ["y", "s"], 0)],
                         [None], "island.tflite", None)
    with pytest.raises(ModelError, match="tensor 'f' is float32: every activation must be int8"):
        generate_project(model, load_target("host"), tmp_path / "fw")
