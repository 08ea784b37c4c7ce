"""The int8 claims, on 200 random inputs per stage and six architectures (one 1-D).

* eedge's reference executor == TFLite Micro on every output of every stage;
* == LiteRT's reference kernels on every tensor that no FULLY_CONNECTED
  feeds (LiteRT's reference FC requantizes in double precision: within 1);
* the staged int8 cascade == the monolithic int8 model at every exit.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import exported_onnx
from zoo import example_input

from eedge.backends.tflite_writer import graph_to_tflite
from eedge.frontends.onnx_frontend import onnx_to_graph
from eedge.ir.graph import Graph
from eedge.ir.layout import CHANNELS_FIRST, to_channels_last
from eedge.passes.lower_tflite import lower_to_tflite
from eedge.passes.partition import partition
from eedge.passes.quantize import observe_ranges, quantize_graph
from eedge.reference.executor import execute
from eedge.reference.int8_kernels import quantize_input
from eedge.runtime.interpreters import LiteRTModel, TFLMModel, litert_interpreter

SAMPLES = 200
ARCHITECTURES = ["sequential", "residual", "branchy", "depthwise", "audio1d", "digits"]


def int8_graph(name: str) -> tuple[Graph, np.ndarray]:
    if name == "digits":
        import torch

        from eedge.examples.digits_model import build_model
        from eedge.frontends.torch_frontend import torch_to_onnx

        torch.manual_seed(0)
        model = torch_to_onnx(build_model(), np.random.default_rng(0).random(
            (2, 1, 8, 8)).astype(np.float32))
        x = np.random.default_rng(1).random((SAMPLES, 1, 8, 8)).astype(np.float32)
    else:
        model = exported_onnx(name)
        x = example_input(seed=9, batch=SAMPLES, name=name)
    lowered = lower_to_tflite(onnx_to_graph(model))
    nhwc = to_channels_last(x, CHANNELS_FIRST[x.ndim])
    ranges = observe_ranges(lowered, [{"input": nhwc[:64]}])
    quantized = quantize_graph(lowered, ranges)
    return quantized, quantize_input(nhwc, quantized.inputs[0].quant)


@pytest.fixture(scope="module", params=ARCHITECTURES)
def case(request: pytest.FixtureRequest) -> tuple[Graph, np.ndarray]:
    return int8_graph(request.param)


def test_every_stage_matches_tflite_micro(case: tuple[Graph, np.ndarray]) -> None:
    graph, xq = case
    env = execute(graph, {"input": xq})
    part = partition(graph)
    for stage in part.stages:
        data = graph_to_tflite(graph, stage.nodes, stage.inputs, stage.outputs)
        tflm = TFLMModel(data, len(stage.outputs)).run([env[t] for t in stage.inputs])
        for name, theirs in zip(stage.outputs, tflm):
            assert np.array_equal(env[name], theirs.reshape(env[name].shape)), \
                f"{stage.name} {name}"


def _fed_by_fully_connected(graph: Graph) -> set[str]:
    tainted: set[str] = set()
    for node in graph.nodes:
        if node.op_type == "FULLY_CONNECTED" or any(t in tainted for t in node.inputs):
            tainted.add(node.outputs[0])
    return tainted


def test_litert_reference_kernels_match_except_fully_connected(
        case: tuple[Graph, np.ndarray]) -> None:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    graph, xq = case
    data = graph_to_tflite(graph, range(len(graph.nodes)), ["input"], graph.exits)
    litert_interpreter(data)  # loads cleanly
    interp = Interpreter(model_content=data, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interp.allocate_tensors()
    index = {d["name"]: d["index"] for d in interp.get_tensor_details()}
    env = execute(graph, {"input": xq})
    fc_fed = _fed_by_fully_connected(graph)
    exact = within_one = 0
    for i in range(SAMPLES):
        interp.set_tensor(interp.get_input_details()[0]["index"], xq[i:i + 1])
        interp.invoke()
        for node in graph.nodes:
            name = node.outputs[0]
            ours, theirs = env[name][i:i + 1], interp.get_tensor(index[name])
            if name in fc_fed:
                assert np.max(np.abs(ours.astype(int) - theirs.astype(int))) <= 1, name
                within_one += 1
            else:
                assert np.array_equal(ours, theirs), f"{node.op_type} {name} sample {i}"
                exact += 1
    assert exact > 0


def test_staged_int8_equals_monolithic_at_every_exit(case: tuple[Graph, np.ndarray]) -> None:
    graph, xq = case
    whole = LiteRTModel(graph_to_tflite(graph, range(len(graph.nodes)), ["input"],
                                        graph.exits)).run([xq])
    store = {"input": xq}
    exits = {}
    for stage in partition(graph).stages:
        runner = LiteRTModel(graph_to_tflite(graph, stage.nodes, stage.inputs, stage.outputs))
        store.update(zip(stage.outputs, runner.run([store[t] for t in stage.inputs])))
        if stage.exit_index is not None:
            exits[stage.exit_index] = store[stage.outputs[0]]
    for k, expected in enumerate(whole):
        assert np.array_equal(exits[k], expected), f"exit {k}"
