"""Fold inference-mode BatchNormalization into the layer before it.

y = gamma * (x - mean) / sqrt(var + eps) + beta is a per-channel affine
map, so after a convolution it becomes part of the conv's weights and bias
(whatever the conv's rank: Conv1d weights are (O, I, k), Conv2d (O, I, kh,
kw)), and after a fully connected Gemm part of its columns and bias.
Quantizing the folded weights (not the layer and the BN separately) is what
TFLite does and keeps the int8 model one op per layer. A BN that follows
neither (on a model's input, after a pool) stays; lowering makes it a 1x1
depthwise convolution with :func:`bn_affine`'s scale and shift.
"""

from __future__ import annotations

import numpy as np

from eedge.ir.graph import Graph, Node


def bn_affine(graph: Graph, node: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) per channel of an inference BN, or None if a parameter is not constant."""
    params = [graph.constants.get(t) for t in node.inputs[1:5]]
    if len(params) != 4 or any(p is None for p in params):
        return None
    gamma, beta, mean, var = (np.asarray(p, dtype=np.float64).reshape(-1) for p in params)
    scale = gamma / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
    return scale, beta - mean * scale


def _fold_into_conv(graph: Graph, conv: Node, scale: np.ndarray, shift: np.ndarray
                    ) -> dict[str, np.ndarray] | None:
    weight = graph.constants.get(conv.inputs[1])
    if weight is None:
        return None
    bias = (np.asarray(graph.constants[conv.inputs[2]], np.float64)
            if len(conv.inputs) > 2 and conv.inputs[2] else np.zeros(weight.shape[0]))
    folded = weight.astype(np.float64) * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    return {"weight": folded.astype(weight.dtype),
            "bias": (bias * scale + shift).astype(weight.dtype)}


def _fold_into_gemm(graph: Graph, gemm: Node, scale: np.ndarray, shift: np.ndarray
                    ) -> dict[str, np.ndarray] | None:
    weight = graph.constants.get(gemm.inputs[1])
    if weight is None or weight.ndim != 2 or gemm.attrs.get("transA", 0) or \
            gemm.attrs.get("alpha", 1.0) != 1.0 or gemm.attrs.get("beta", 1.0) != 1.0:
        return None
    trans_b = bool(gemm.attrs.get("transB", 0))
    outputs = weight.shape[0] if trans_b else weight.shape[1]
    if scale.size != outputs:
        return None
    bias = np.zeros(outputs)
    if len(gemm.inputs) > 2 and gemm.inputs[2]:
        c = graph.constants.get(gemm.inputs[2])
        if c is None or c.size not in (1, outputs):
            return None
        bias = np.broadcast_to(np.asarray(c, np.float64).reshape(-1), (outputs,))
    folded = weight.astype(np.float64) * (scale[:, None] if trans_b else scale[None, :])
    return {"weight": folded.astype(weight.dtype),
            "bias": (bias * scale + shift).astype(weight.dtype)}


_FOLDERS = {"Conv": _fold_into_conv, "Gemm": _fold_into_gemm}


def fold_batchnorm(graph: Graph) -> Graph:
    """Return a graph in which every BN that directly follows a Conv or Gemm is folded."""
    consumers = graph.consumers()
    constants = dict(graph.constants)
    nodes = list(graph.nodes)
    removed: set[int] = set()
    for i, node in enumerate(nodes):
        if node.op_type != "BatchNormalization" or not node.inputs[0] or len(node.outputs) != 1:
            continue
        idx = graph.producer_index(node.inputs[0])
        if idx is None or nodes[idx].op_type not in _FOLDERS or \
                len(consumers.get(node.inputs[0], [])) != 1 or node.inputs[0] in graph.exits:
            continue
        affine = bn_affine(graph, node)
        layer = nodes[idx]
        folded = _FOLDERS[layer.op_type](graph, layer, *affine) if affine else None
        if folded is None:
            continue
        w_name, b_name = f"{layer.name}/folded_weight", f"{layer.name}/folded_bias"
        constants[w_name], constants[b_name] = folded["weight"], folded["bias"]
        nodes[idx] = Node(layer.name, layer.op_type, [layer.inputs[0], w_name, b_name],
                          [node.outputs[0]], dict(layer.attrs))
        removed.add(i)
    kept = [n for i, n in enumerate(nodes) if i not in removed]
    used = {t for n in kept for t in n.inputs}
    return Graph(name=graph.name, inputs=graph.inputs, exits=graph.exits, nodes=kept,
                 constants={k: v for k, v in constants.items() if k in used},
                 tensors=graph.tensors, opset=graph.opset, ir_version=graph.ir_version,
                 dialect=graph.dialect)
