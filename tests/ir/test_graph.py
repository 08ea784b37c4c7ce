"""Graph queries the passes rely on."""

from __future__ import annotations

from zoo import onnx_two_exit_mlp

from eedge.frontends.onnx_frontend import onnx_to_graph


def test_ancestors_and_consumers() -> None:
    graph = onnx_to_graph(onnx_two_exit_mlp())
    names = {graph.nodes[i].name for i in graph.ancestors(["exit0"])}
    assert names == {"fc0", "act0", "exit0_fc"}
    consumers = graph.consumers()
    assert sorted(graph.nodes[i].name for i in consumers["h"]) == ["exit0_fc", "fc1"]
    assert graph.producer_index("x") is None and graph.producer_index("w0") is None
    assert graph.tensors["exit1"].bytes_per_sample() == 16
