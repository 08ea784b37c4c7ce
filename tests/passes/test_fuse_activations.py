"""ReLU/ReLU6 after SUB and TRANSPOSE_CONV fuse into them, as TFLite's converter writes it.

TFLite Micro applies SUB's and TRANSPOSE_CONV's fused activation; export verifies the
int8 stages against it, and the host C build must equal the reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from eedge.codegen.device_run import run_on_target
from eedge.codegen.model_source import load_codegen_model
from eedge.export import export_onnx
from eedge.reference.executor import execute
from eedge.reference.int8_kernels import quantize_input
from eedge.targets import load_target


def sub_and_deconv() -> onnx.ModelProto:
    """x[N,4,4,4] -> Sub(0.5) -> Relu -> ConvTranspose(k2 s2) -> Clip(0, 6) -> Gemm."""
    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "half"),
             numpy_helper.from_array(rng.standard_normal((4, 3, 2, 2)).astype(np.float32), "wt"),
             numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "bt"),
             numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
             numpy_helper.from_array(rng.standard_normal((5, 192)).astype(np.float32) * 0.1,
                                     "wf")]
    nodes = [helper.make_node("Sub", ["x", "half"], ["s"], name="sub"),
             helper.make_node("Relu", ["s"], ["r"], name="relu"),
             helper.make_node("ConvTranspose", ["r", "wt", "bt"], ["d"], name="deconv",
                              kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Clip", ["d", "lo", "hi"], ["c"], name="relu6"),
             helper.make_node("Flatten", ["c"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "wf"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "fused", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_relus_fuse_into_sub_and_transpose_conv(tmp_path: Path) -> None:
    onnx.save(sub_and_deconv(), tmp_path / "m.onnx")
    calibration = np.random.default_rng(0).uniform(-2, 2, (64, 4, 4, 4)).astype(np.float32)
    result = export_onnx(tmp_path / "m.onnx", tmp_path / "b", int8=True,
                         calibration=calibration, force=True)
    report = result.bundle.manifest["verification"]["tflite_int8"]
    assert report["reference_vs_tflm"]["identical"] and report["staged_vs_monolithic"]["identical"]
    model = load_codegen_model(tmp_path / "b")
    ops = {n.op_type: n.attrs.get("activation") for n in model.graph.nodes}
    assert "RELU" not in ops and "RELU6" not in ops
    assert ops["SUB"] == "RELU" and ops["TRANSPOSE_CONV"] == "RELU6"
    x = np.random.default_rng(1).uniform(-2, 2, (100, 4, 4, 4)).astype(np.float32)
    run = run_on_target(model, load_target("host"), x)
    env = execute(model.graph, {model.input: quantize_input(x.transpose(0, 2, 3, 1),
                                                           model.input_quant)})
    name = model.stages[0].outputs[0]
    device = np.stack([s.stage_outputs[0][0] for s in run.run.samples])
    assert np.array_equal(device.reshape(env[name].shape), env[name])
