"""Run a TFLite-dialect graph (or some of its nodes) with the reference kernels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from eedge.errors import ModelError
from eedge.ir.graph import Graph
from eedge.ops import registry
from eedge.reference.float_kernels import FLOAT_KERNELS
from eedge.reference.int8_kernels import INT8_KERNELS


def is_quantized_node(graph: Graph, node_index: int) -> bool:
    node = graph.nodes[node_index]
    if node.op_type == "DEQUANTIZE":
        return True
    return graph.tensors[node.outputs[0]].dtype == "int8"


def execute(graph: Graph, feeds: Mapping[str, np.ndarray],
            node_indices: Iterable[int] | None = None) -> dict[str, np.ndarray]:
    """Evaluate nodes in order; returns every tensor computed (and the feeds)."""
    if graph.dialect != "tflite":
        raise ModelError("the reference executor runs TFLite-dialect graphs; lower first")
    env: dict[str, np.ndarray] = dict(feeds)
    order = sorted(node_indices) if node_indices is not None else range(len(graph.nodes))
    for i in order:
        node = graph.nodes[i]
        table = INT8_KERNELS if is_quantized_node(graph, i) else FLOAT_KERNELS
        kernel = table.get(node.op_type)
        if kernel is None and (op := registry.builtin(node.op_type)) is not None:
            kernel = op.int8_kernel if table is INT8_KERNELS else op.float_kernel
        if kernel is None:
            kind = "int8" if table is INT8_KERNELS else "float"
            raise ModelError(f"no {kind} reference kernel for {node.op_type} (node "
                             f"{node.name!r})")
        args = []
        for t in node.inputs:
            if not t:
                args.append(None)
            elif t in env:
                args.append(env[t])
            elif t in graph.constants:
                args.append(graph.constants[t])
            else:
                raise ModelError(f"node {node.name!r} reads {t!r}, which is not computed yet")
        result = kernel(node, graph, args)
        if isinstance(result, tuple):  # a multi-output op: one array per output
            if len(result) != len(node.outputs):
                raise ModelError(f"node {node.name!r} computed {len(result)} outputs but "
                                 f"declares {len(node.outputs)}")
            env.update(zip(node.outputs, result))
        else:
            env[node.outputs[0]] = result
    return env
