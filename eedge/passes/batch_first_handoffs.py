"""Hand-offs of time-major tensors: transposed batch-first at the stage boundary.

torch's transformer and recurrent layers work on ``(T, N, D)`` tensors by
default (``batch_first=False``). A cascade passes on, after each exit, only
the rows that did not exit, selecting them along the hand-off's first axis;
so a tensor that crosses a stage boundary must lead with the batch. This
pass puts a Transpose to batch-first at the end of the producing stage and
the inverse Transpose at the start of the stage that reads it: the hand-off
is the batch-first tensor, the computation is unchanged. In the TFLite
dialect both transposes move no byte (lowered tensors keep the batch first
anyway) and become reshapes the C runtime aliases.

The partition keeps a ``.../batch_first`` Transpose in the stage of its
input's producer (:func:`eedge.passes.partition.partition`), where this pass
means it to run.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from eedge.ir.graph import Graph, Node, TensorInfo

BATCH_FIRST_SUFFIX = "/batch_first"
"""Name suffix of the Transposes this pass adds before a hand-off."""


def _batch_axis(graph: Graph, tensor: str) -> int | None:
    info = graph.tensors.get(tensor)
    if info is None:
        return None
    return next((i for i, d in enumerate(info.shape) if isinstance(d, str)), None)


def batch_first_handoffs(graph: Graph, reference: Graph | None = None) -> Graph:
    """``graph`` with every hand-off whose batch is not first transposed around its boundary.

    ``reference`` is the same graph with the batch followed through every node
    (``OnnxImport.lowering_graph``) when ``graph`` has a fixed batch of 1, so
    shapes alone do not say where the batch is. Returns ``graph`` itself when
    nothing needs it.
    """
    from eedge.passes.partition import stage_sets

    source = reference if reference is not None else graph
    stage_of = {n: k for k, nodes in enumerate(stage_sets(graph)) for n in nodes}
    crossing: dict[str, int] = {}
    for tensor, readers in graph.consumers().items():
        producer = graph.producer_index(tensor)
        if producer is None or producer not in stage_of:
            continue
        later = [r for r in readers if stage_of.get(r, -1) > stage_of[producer]]
        axis = _batch_axis(source, tensor)
        if later and axis not in (None, 0):
            crossing[tensor] = axis
    if not crossing:
        return graph
    nodes: list[Node] = []
    tensors = dict(graph.tensors)
    renamed: dict[tuple[int, str], str] = {}
    for i, node in enumerate(graph.nodes):
        for tensor in node.inputs:
            if tensor in crossing and stage_of.get(i, -1) > stage_of[graph.producer_index(tensor)]:
                renamed[(i, tensor)] = f"{tensor}/restored"
    for i, node in enumerate(graph.nodes):
        inputs = [renamed.get((i, t), t) for t in node.inputs]
        nodes.append(node if inputs == list(node.inputs) else replace(node, inputs=inputs))
        for out in node.outputs:
            if out not in crossing:
                continue
            axis = crossing[out]
            shape = graph.tensors[out].shape
            perm = [axis] + [a for a in range(len(shape)) if a != axis]
            inverse = [int(a) for a in np.argsort(perm)]
            moved, restored = f"{out}{BATCH_FIRST_SUFFIX}", f"{out}/restored"
            tensors[moved] = TensorInfo(moved, tuple(shape[a] for a in perm),
                                        graph.tensors[out].dtype)
            tensors[restored] = TensorInfo(restored, tuple(shape), graph.tensors[out].dtype)
            nodes.append(Node(moved, "Transpose", [out], [moved], {"perm": perm}))
            nodes.append(Node(restored, "Transpose", [moved], [restored], {"perm": inverse}))
    return Graph(name=graph.name, inputs=graph.inputs, exits=graph.exits, nodes=nodes,
                 constants=graph.constants, tensors=tensors, opset=graph.opset,
                 ir_version=graph.ir_version, dialect=graph.dialect,
                 const_quant=graph.const_quant)
