"""Partitioning: stages come from the graph, hand-offs and cuts are exact."""

from __future__ import annotations

import onnx
import pytest
from conftest import exported_onnx
from zoo import onnx_two_exit_mlp

from eedge.errors import ModelError
from eedge.frontends.onnx_frontend import onnx_to_graph
from eedge.ir.graph import Graph
from eedge.passes.partition import Partition, partition


def graph_of(name: str) -> Graph:
    model = onnx_two_exit_mlp() if name == "mlp" else exported_onnx(name)
    return onnx_to_graph(model, name=name)


def producer_stage(graph: Graph, part: Partition, tensor: str) -> int | None:
    idx = graph.producer_index(tensor)
    return None if idx is None else next(s.index for s in part.stages if idx in s.nodes)


def assert_well_formed(graph: Graph, part: Partition) -> None:
    """Invariants every partition must satisfy, whatever the model."""
    all_nodes = sorted(n for s in part.stages for n in s.nodes)
    assert all_nodes == sorted(set(all_nodes)), "a node is in two stages"
    graph_inputs = {t.name for t in graph.inputs}
    for stage in part.stages:
        for t in stage.inputs:
            origin = producer_stage(graph, part, t)
            assert t in graph_inputs or (origin is not None and origin < stage.index)
            if origin is not None:
                assert t in part.stages[origin].outputs, f"{t} is read but never handed off"
        if stage.exit_index is not None:
            assert stage.outputs[0] == graph.exits[stage.exit_index]


@pytest.mark.parametrize("name", ["sequential", "residual", "branchy", "depthwise", "audio1d",
                                  "mlp"])
def test_one_stage_per_exit_and_invariants(name: str) -> None:
    graph = graph_of(name)
    part = partition(graph)
    assert [s.exit_index for s in part.stages] == list(range(len(graph.exits)))
    assert part.dropped_nodes == []
    assert sorted(n for s in part.stages for n in s.nodes) == list(range(len(graph.nodes)))
    assert_well_formed(graph, part)


def test_sequential_hands_off_one_tensor_per_boundary() -> None:
    graph = graph_of("sequential")
    part = partition(graph)
    assert part.stages[0].inputs == ["input"]
    for prev, stage in zip(part.stages, part.stages[1:]):
        assert len(stage.inputs) == 1
        assert stage.inputs[0] in prev.outputs


def test_residual_skip_crosses_a_whole_stage() -> None:
    graph = graph_of("residual")
    part = partition(graph)
    last = part.stages[2]
    origins = sorted(producer_stage(graph, part, t) for t in last.inputs)
    assert origins == [0, 1], "stage 2 reads the skip from stage 0 and the main path from 1"
    skip = next(t for t in last.inputs if producer_stage(graph, part, t) == 0)
    assert skip in part.stages[0].outputs
    assert skip not in part.stages[1].outputs, "stage 1 does not forward the skip"
    assert skip in part.stages[1].inputs


def test_branchy_exit_head_stays_in_its_stage() -> None:
    graph = graph_of("branchy")
    part = partition(graph)
    ops0 = {graph.nodes[n].op_type for n in part.stages[0].nodes}
    assert {"MaxPool", "AveragePool", "Add"} <= ops0
    assert len(part.stages[1].inputs) == 1


def test_depthwise_convs_are_partitioned() -> None:
    graph = graph_of("depthwise")
    part = partition(graph)
    groups = [graph.nodes[n].attrs.get("group", 1) for s in part.stages for n in s.nodes
              if graph.nodes[n].op_type == "Conv"]
    assert 8 in groups and 16 in groups


def test_exits_out_of_depth_order_are_rejected() -> None:
    model = onnx_two_exit_mlp()
    outputs = list(model.graph.output)
    del model.graph.output[:]
    model.graph.output.extend(reversed(outputs))
    with pytest.raises(ModelError, match="earliest first"):
        partition(onnx_to_graph(model))


def test_nodes_feeding_no_exit_are_dropped() -> None:
    model = onnx_two_exit_mlp()
    model.graph.node.append(onnx.helper.make_node("Relu", ["h"], ["unused"], name="dead"))
    part = partition(onnx_to_graph(model))
    assert part.dropped_nodes == ["dead"]


def test_split_after_stage_index() -> None:
    graph = graph_of("residual")
    part = partition(graph, split_after=0)
    assert part.split is not None
    assert part.split.head_stages == [0] and part.split.tail_stages == [1, 2]
    assert [s.side for s in part.stages] == ["head", "tail", "tail"]
    assert part.split.cut_tensors == part.stages[1].inputs


def test_split_inside_a_stage_cuts_the_skip_too() -> None:
    graph = graph_of("residual")
    plain = partition(graph)
    conv = next(graph.nodes[n] for n in plain.stages[1].nodes
                if graph.nodes[n].op_type == "Conv")
    part = partition(graph, split_after=conv.outputs[0])
    assert_well_formed(graph, part)
    assert [(s.side, s.exit_index) for s in part.stages] == [
        ("head", 0), ("head", None), ("tail", 1), ("tail", 2)]
    skip = plain.stages[1].inputs[0]
    assert set(part.split.cut_tensors) == {conv.outputs[0], skip}


def test_split_at_a_tensor_keeps_early_exit_on_the_head() -> None:
    graph = graph_of("sequential")
    plain = partition(graph)
    handoff = plain.stages[0].outputs[1]
    part = partition(graph, split_after=handoff)
    assert part.split.head_stages == [0] and part.split.cut_tensors == [handoff]


@pytest.mark.parametrize("cut, message", [
    ("input", "model input"), ("no_such_tensor", "no such tensor"),
    ("exit2", "nothing for the tail"), (2, "pick 0..1"), (-1, "pick 0..1")])
def test_bad_split_points(cut: str | int, message: str) -> None:
    graph = graph_of("sequential")
    if cut == "exit2":
        cut = graph.exits[-1]
    with pytest.raises(ModelError, match=message):
        partition(graph, split_after=cut)


def test_split_at_a_constant_is_rejected() -> None:
    graph = graph_of("mlp")
    with pytest.raises(ModelError, match="constant"):
        partition(graph, split_after="w0")
