"""Constants with equal bytes are stored once: in the .tflite files and in the C.

An unrolled GRU/LSTM (eedge.frontends.onnx_recurrent) gives each time step its own
FULLY_CONNECTED with its own copy of the recurrent weights R. Per-channel weight
quantization depends only on the weights, so every copy quantizes to the same bytes:
the TFLite writer points them at one buffer (TFLite Micro and LiteRT accept shared
buffers; export verifies the files against both) and the code generator emits one
array. Biases are shared only where their int32 bytes are equal (their scale follows
each step's input), which is exact by construction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from eedge.codegen.device_run import run_on_target
from eedge.codegen.inputs import device_samples
from eedge.codegen.model_source import load_codegen_model
from eedge.codegen.project import generate_project
from eedge.export import export_onnx
from eedge.reference.executor import execute
from eedge.runtime.interpreters import TFLMModel
from eedge.targets import load_target
from eedge.tflite_schema import schema as S

STEPS, FEATURES, HIDDEN, CLASSES = 6, 4, 8, 3


def gru_model() -> onnx.ModelProto:
    """x (N, T, F) -> GRU -> last state -> Gemm -> logits."""
    rng = np.random.default_rng(5)
    inits = [numpy_helper.from_array(rng.normal(0, 0.4, a).astype(np.float32), n) for n, a in
             (("W", (1, 3 * HIDDEN, FEATURES)), ("R", (1, 3 * HIDDEN, HIDDEN)),
              ("B", (1, 6 * HIDDEN)), ("head_w", (CLASSES, HIDDEN)), ("head_b", (CLASSES,)))]
    inits.append(numpy_helper.from_array(np.array([-1, HIDDEN], np.int64), "flat"))
    # time major with linear_before_reset, as torch exports nn.GRU(batch_first=True)
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             helper.make_node("GRU", ["xt", "W", "R", "B"], ["", "h"], hidden_size=HIDDEN,
                              linear_before_reset=1),
             helper.make_node("Reshape", ["h", "flat"], ["h2"]),
             helper.make_node("Gemm", ["h2", "head_w", "head_b"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "gru", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                     ["N", STEPS, FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_unrolled_recurrent_weights_are_stored_once(tmp_path: Path) -> None:
    source = tmp_path / "gru.onnx"
    onnx.save(gru_model(), source)
    rng = np.random.default_rng(1)
    bundle = export_onnx(source, tmp_path / "bundle", int8=True, force=True,
                         calibration=rng.normal(0, 1, (64, STEPS, FEATURES)).astype(np.float32)
                         ).bundle
    data = (bundle.path / "stage0.int8.tflite").read_bytes()
    model = S.ModelT.InitFromObj(S.Model.GetRootAsModel(data, 0))
    tensors = model.subgraphs[0].tensors
    recurrent = [t for t in tensors if t.shape is not None and list(t.shape) ==
                 [3 * HIDDEN, HIDDEN] and t.buffer > 0]
    # steps 1.. multiply the state by R (step 0's state is zero and folds away)
    assert len(recurrent) >= STEPS - 1
    assert len({t.buffer for t in recurrent}) == 1
    x = rng.normal(0, 1, (40, STEPS, FEATURES)).astype(np.float32)
    codegen = load_codegen_model(bundle.path)
    project = generate_project(codegen, load_target("host"), tmp_path / "c")
    shape = [3 * HIDDEN, HIDDEN]
    constants = [n for n, v in codegen.graph.constants.items() if list(v.shape) == shape]
    assert len(constants) >= STEPS - 1
    c_source = (tmp_path / "c" / "model_data.c").read_text()
    # one-row FULLY_CONNECTED weights are stored packed, 4 bytes a word (fully_connected.c)
    assert c_source.count(f"[{3 * HIDDEN * HIDDEN // 4}] EEDGE_ALIGNED") == 1
    repeated = sum(v.nbytes for v in codegen.graph.constants.values())
    assert project.weight_bytes < repeated - (len(constants) - 1) * 3 * HIDDEN * HIDDEN
    # the files run on TFLite Micro as the reference computes them, and so does the C
    run = run_on_target(codegen, load_target("host"), x)
    info = codegen.graph.tensors[codegen.input]
    q = device_samples(x, tuple(int(d) for d in info.shape), codegen.input_quant.scale[0],
                       codegen.input_quant.zero_point[0], codegen.input_layout)
    q = q.reshape([len(x)] + [int(d) for d in info.shape[1:]])
    expected = execute(codegen.graph, {codegen.input: q})[codegen.stages[-1].outputs[0]]
    device = np.stack([s.stage_outputs[-1][0] for s in run.run.samples])
    assert np.array_equal(device, expected.reshape(device.shape))
    tflm = TFLMModel(data, 1).run([q])[0]
    assert np.array_equal(tflm.reshape(device.shape), device)
