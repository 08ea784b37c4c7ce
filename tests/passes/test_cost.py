"""MAC and parameter accounting against hand-computed values."""

from __future__ import annotations

from zoo import onnx_conv_model, onnx_two_exit_mlp

from eedge.frontends.onnx_frontend import onnx_to_graph
from eedge.passes.cost import node_macs, parameter_bytes, total_macs
from eedge.passes.partition import partition


def test_gemm_macs_and_params() -> None:
    graph = onnx_to_graph(onnx_two_exit_mlp())
    macs = {n.name: node_macs(graph, n) for n in graph.nodes}
    assert macs == {"fc0": 16 * 32, "act0": 0, "exit0_fc": 32 * 4, "fc1": 32 * 32, "act1": 0,
                    "exit1_fc": 32 * 4}
    part = partition(graph)
    assert total_macs(graph, part.stages[0].nodes) == 16 * 32 + 32 * 4
    assert parameter_bytes(graph, part.stages[0].nodes) == 4 * (32 * 16 + 32 + 4 * 32 + 4)


def test_conv_macs_count_groups() -> None:
    graph = onnx_to_graph(onnx_conv_model())
    macs = {n.name: node_macs(graph, n) for n in graph.nodes}
    # 3x3 conv 3->8 on 8x8 (same padding): 8*8*8 outputs * 3*3*3 taps
    assert macs["conv"] == 8 * 8 * 8 * 27
    # depthwise 3x3 on 8 channels: 8*8*8 outputs * 1*3*3 taps
    assert macs["dw"] == 8 * 8 * 8 * 9
