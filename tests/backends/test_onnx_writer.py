"""Per-stage ONNX files: valid, self-contained, deterministic."""

from __future__ import annotations

import onnx
from conftest import exported_onnx

from eedge.backends.onnx_writer import serialize, subgraph_to_onnx
from eedge.frontends.onnx_frontend import onnx_to_graph
from eedge.passes.partition import partition


def test_stage_files_pass_the_checker_and_declare_io() -> None:
    graph = onnx_to_graph(exported_onnx("residual"))
    part = partition(graph)
    for stage in part.stages:
        model = subgraph_to_onnx(graph, stage.nodes, stage.inputs, stage.outputs, stage.name)
        onnx.checker.check_model(model, full_check=True)
        assert [i.name for i in model.graph.input] == stage.inputs
        assert [o.name for o in model.graph.output] == stage.outputs
        used = {i for n in model.graph.node for i in n.input}
        assert {i.name for i in model.graph.initializer} <= used, "unused weights copied"
        assert not model.metadata_props


def test_writer_is_deterministic() -> None:
    graph = onnx_to_graph(exported_onnx("branchy"))
    stage = partition(graph).stages[0]
    first = serialize(subgraph_to_onnx(graph, stage.nodes, stage.inputs, stage.outputs, "s"))
    second = serialize(subgraph_to_onnx(graph, stage.nodes, stage.inputs, stage.outputs, "s"))
    assert first == second
