"""HardSigmoid and Swish on the int8 and C paths: they lower to MUL/ADD with scalar constants
(and RELU6, LOGISTIC), so they need ADD and MUL to broadcast a constant in int8 and in C (the
binary family's kernels).

Three exits: HardSigmoid with torch's alpha 1/6 (ADD(3) + RELU6, then MUL(1/6)), with ONNX's
default alpha 0.2 (MUL(1.2) first), and Swish with alpha 1.702 (MUL, LOGISTIC, MUL).
export_onnx verifies eedge's int8 reference against TFLite Micro on every stage; the host C
build must equal the reference.
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


def broadcasting_activations() -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((5, 36)).astype(np.float32) * 0.3, w)
             for w in ("w0", "w1", "w2")]
    nodes = []
    for k, (op, attrs) in enumerate((("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
                                     ("HardSigmoid", {}), ("Swish", {"alpha": 1.702}))):
        nodes += [helper.make_node(op, ["x"], [f"h{k}"], name=f"act{k}", **attrs),
                  helper.make_node("Flatten", [f"h{k}"], [f"f{k}"], name=f"flat{k}"),
                  helper.make_node("Gemm", [f"f{k}", f"w{k}"], [f"y{k}"], name=f"fc{k}",
                                   transB=1)]
    graph = helper.make_graph(
        nodes, "hard_sigmoids",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 3, 3])],
        [helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, ["N", 5]) for k in range(3)],
        initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 24)])   # Swish: 24
    m.ir_version = 10
    return m


def test_hard_sigmoid_and_swish_export_int8_and_run_bit_exact_in_c(tmp_path: Path) -> None:
    path = tmp_path / "hs.onnx"
    onnx.save(broadcasting_activations(), path)
    calibration = np.random.default_rng(0).uniform(-6, 6, (64, 4, 3, 3)).astype(np.float32)
    export_onnx(path, tmp_path / "b", int8=True, calibration=calibration, force=True)

    m = load_codegen_model(tmp_path / "b")
    ops = sorted(n.op_type for n in m.graph.nodes)
    assert ops.count("MUL") == 5 and ops.count("ADD") == 2 and ops.count("LOGISTIC") == 1
    x = np.random.default_rng(1).uniform(-6, 6, (8, 4, 3, 3)).astype(np.float32)
    run = run_on_target(m, load_target("host"), x)
    env = execute(m.graph, {m.input: quantize_input(x.transpose(0, 2, 3, 1), m.input_quant)})
    for k, stage in enumerate(m.stages):
        device = np.stack([s.stage_outputs[k][0] for s in run.run.samples])
        expected = env[stage.outputs[0]]
        assert np.array_equal(device.reshape(expected.shape), expected)
