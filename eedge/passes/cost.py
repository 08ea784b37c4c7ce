"""Static cost of nodes and stages: multiply-accumulates and parameter bytes.

MACs are counted per sample (the batch dimension excluded) and only for
operators that multiply weights by activations (ONNX Conv/ConvTranspose/Gemm/
MatMul, TFLite CONV_2D/DEPTHWISE_CONV_2D/TRANSPOSE_CONV/FULLY_CONNECTED/
BATCH_MATMUL); that is the convention of
the early-exit literature (T-RECX, EERO) and what exit-rate savings are
reported in.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from eedge.ir.graph import Graph, Node


def node_macs(graph: Graph, node: Node) -> int:
    """Multiply-accumulates of one node for one sample."""
    out = graph.tensors.get(node.outputs[0]) if node.outputs else None
    if out is None:
        return 0
    out_elems = out.elements_per_sample()
    if node.op_type == "Conv":
        weight = graph.constants.get(node.inputs[1])
        if weight is None:
            return 0
        return out_elems * int(np.prod(weight.shape[1:]))
    if node.op_type == "Gemm":
        weight = graph.constants.get(node.inputs[1])
        if weight is None:
            return 0
        k = weight.shape[1] if node.attrs.get("transB", 0) else weight.shape[0]
        return out_elems * int(k)
    if node.op_type in ("CONV_2D", "FULLY_CONNECTED"):
        weight = graph.constants.get(node.inputs[1])
        return 0 if weight is None else out_elems * int(np.prod(weight.shape[1:]))
    if node.op_type == "DEPTHWISE_CONV_2D":
        weight = graph.constants.get(node.inputs[1])
        return 0 if weight is None else out_elems * int(np.prod(weight.shape[1:3]))
    if node.op_type in ("ConvTranspose", "TRANSPOSE_CONV"):
        # every input element meets each of its weights once: ONNX weights are
        # (Cin, Cout/group, k...), TFLite's (Cout, kh, kw, Cin) with the input third
        data = node.inputs[0] if node.op_type == "ConvTranspose" else node.inputs[2]
        weight = graph.constants.get(node.inputs[1])
        x = graph.tensors.get(data)
        if weight is None or x is None:
            return 0
        per_input = weight.shape[1:] if node.op_type == "ConvTranspose" else weight.shape[:3]
        return x.elements_per_sample() * int(np.prod(per_input))
    if node.op_type == "BATCH_MATMUL":   # products of two activations, like ONNX MatMul's
        left = graph.tensors.get(node.inputs[0])
        if left is None or len(left.shape) < 2:
            return 0
        return out_elems * int(left.shape[-2] if node.attrs.get("adj_x") else left.shape[-1])
    if node.op_type == "MatMul":
        left = graph.tensors.get(node.inputs[0])
        if left is None or not left.shape:
            return 0
        return out_elems * int(left.shape[-1])
    return 0


def total_macs(graph: Graph, node_indices: Iterable[int]) -> int:
    return sum(node_macs(graph, graph.nodes[i]) for i in node_indices)


def parameter_bytes(graph: Graph, node_indices: Iterable[int]) -> int:
    """Bytes of the constants the nodes read (each counted once)."""
    names = graph.constants_of(list(node_indices))
    return int(sum(graph.constants[n].nbytes for n in names))
