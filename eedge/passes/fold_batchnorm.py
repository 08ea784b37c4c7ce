"""Fold inference-mode BatchNormalization into the convolution before it.

y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta is a per-output-
channel affine map, so it becomes part of the conv's weights and bias
(whatever the conv's rank: Conv1d weights are (O, I, k), Conv2d (O, I, kh, kw)).
Quantizing the folded weights (not the conv and the BN separately) is what
TFLite does and keeps the int8 model one op per layer.
"""

from __future__ import annotations

import numpy as np

from eedge.ir.graph import Graph, Node


def fold_batchnorm(graph: Graph) -> Graph:
    """Return a graph in which every BN that directly follows a Conv is folded."""
    consumers = graph.consumers()
    constants = dict(graph.constants)
    nodes = list(graph.nodes)
    removed: set[int] = set()
    for i, node in enumerate(nodes):
        if node.op_type != "BatchNormalization" or not node.inputs[0]:
            continue
        conv_idx = graph.producer_index(node.inputs[0])
        if conv_idx is None or nodes[conv_idx].op_type != "Conv" or \
                len(consumers.get(node.inputs[0], [])) != 1 or node.inputs[0] in graph.exits:
            continue
        params = [graph.constants.get(t) for t in node.inputs[1:5]]
        conv = nodes[conv_idx]
        weight = graph.constants.get(conv.inputs[1])
        if any(p is None for p in params) or weight is None:
            continue
        gamma, beta, mean, var = (np.asarray(p, dtype=np.float64) for p in params)
        eps = float(node.attrs.get("epsilon", 1e-5))
        factor = gamma / np.sqrt(var + eps)
        bias = (np.asarray(graph.constants[conv.inputs[2]], np.float64)
                if len(conv.inputs) > 2 and conv.inputs[2] else np.zeros(weight.shape[0]))
        w_name, b_name = f"{conv.name}/folded_weight", f"{conv.name}/folded_bias"
        constants[w_name] = (weight.astype(np.float64) *
                             factor.reshape((-1,) + (1,) * (weight.ndim - 1))
                             ).astype(weight.dtype)
        constants[b_name] = ((bias - mean) * factor + beta).astype(weight.dtype)
        nodes[conv_idx] = Node(conv.name, "Conv", [conv.inputs[0], w_name, b_name],
                               [node.outputs[0]], dict(conv.attrs))
        removed.add(i)
    kept = [n for i, n in enumerate(nodes) if i not in removed]
    used = {t for n in kept for t in n.inputs}
    return Graph(name=graph.name, inputs=graph.inputs, exits=graph.exits, nodes=kept,
                 constants={k: v for k, v in constants.items() if k in used},
                 tensors=graph.tensors, opset=graph.opset, ir_version=graph.ir_version,
                 dialect=graph.dialect)
