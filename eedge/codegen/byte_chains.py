"""Fuse chains of byte-to-byte int8 operators into one 256-byte table lookup.

Many int8 operators compute each output byte from one input byte alone:
activations (RELU, LOGISTIC, HARD_SWISH...), an int8 -> int8 QUANTIZE, and
ADD/SUB/MUL/MAXIMUM/MINIMUM with a one-element constant. TFLite's converters
express hard-sigmoid as three of them in a row (ADD 3, RELU6, MUL 1/6). Each
one alone is a function on 256 values, and so is any chain of them, so the
code generator evaluates the bit-exact reference kernels on every input byte,
composes the tables along the chain and emits one lookup: equal to running
the nodes one by one by construction, a few instructions per element instead
of a requantization per node, and no arena for the intermediate tensors.

Only tensors that nothing else reads are fused away: stage outputs (hand-offs
and exits, which the runtime and the test harness read) always stay.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from eedge.codegen.emit import EmitContext, Emitted, _operand, _size, int_array
from eedge.codegen.model_source import CodegenModel
from eedge.ir.graph import Graph, Node
from eedge.ops import registry
from eedge.reference.int8_kernels import INT8_KERNELS

LUT_OP = "EEDGE_LUT"
"""The code generator's own node: ``attrs["table"]`` maps each input byte (uint8 order)."""

BYTE_OPS = frozenset({"RELU", "RELU6", "RELU_N1_TO_1", "QUANTIZE", "LOGISTIC", "TANH",
                      "HARD_SWISH", "LEAKY_RELU", "ELU", "PRELU", "ADD", "SUB", "MUL",
                      "MAXIMUM", "MINIMUM"})
"""Operators whose output byte depends on one input byte when every other input is a
one-element constant."""


def byte_table(node: Node, g: Graph) -> np.ndarray | None:
    """The 256 output bytes of ``node`` indexed by its input byte as uint8, or None.

    None when the node is not a byte-to-byte function: another operator, two
    activation inputs, a constant with more than one element, or a shape change.
    """
    if node.op_type == LUT_OP:
        return np.asarray(node.attrs["table"], np.int8)
    if node.op_type not in BYTE_OPS or len(node.outputs) != 1:
        return None
    activations = g.activation_inputs(node)
    if len(activations) != 1 or any(t in g.constants and g.constants[t].size != 1
                                    for t in node.inputs if t):
        return None
    x, out = g.tensors[activations[0]], g.tensors[node.outputs[0]]
    if x.dtype != "int8" or out.dtype != "int8" or \
            x.elements_per_sample() != out.elements_per_sample():
        return None
    kernel = INT8_KERNELS.get(node.op_type)
    if kernel is None:
        registered = registry.builtin(node.op_type)
        kernel = registered.int8_kernel if registered is not None else None
    if kernel is None:
        return None
    every = np.arange(-128, 128, dtype=np.int8).reshape((1,) * (len(x.shape) - 1) + (256,))
    args = [every if t == x.name else (g.constants[t] if t else None) for t in node.inputs]
    values = np.asarray(kernel(node, g, args), np.int8).reshape(-1)
    if values.size != 256:
        return None
    return np.concatenate([values[128:], values[:128]])   # uint8 order: 0..127, -128..-1


def fuse_byte_chains(model: CodegenModel) -> CodegenModel:
    """A copy of ``model`` whose byte-to-byte nodes are :data:`LUT_OP` nodes, chains fused."""
    g = model.graph
    kept = {model.input} | {t for stage in model.stages for t in stage.outputs}
    consumers = g.consumers()
    nodes: dict[int, Node | None] = {}
    chain_end: dict[str, tuple[str, np.ndarray, int, list[str]]] = {}
    for stage in model.stages:
        for i in stage.nodes:
            node = g.nodes[i]
            table = byte_table(node, g)
            if table is None:
                continue
            source = g.activation_inputs(node)[0]
            names = [node.name]
            previous = chain_end.get(source)
            if previous is not None and source not in kept and consumers.get(source) == [i] \
                    and previous[2] in stage.nodes:
                source, first, index, earlier = previous
                table = table[first.view(np.uint8)]   # this node applied after the chain
                nodes[index] = None
                names = earlier + names
            nodes[i] = Node(node.name, LUT_OP, [source], list(node.outputs),
                            {"table": table, "fused": names})
            chain_end[node.outputs[0]] = (source, table, i, names)
    if not nodes:
        return model
    new_index: dict[int, int] = {}
    new_nodes: list[Node] = []
    for i, node in enumerate(g.nodes):
        replacement = nodes.get(i, node)
        if replacement is not None:
            new_index[i] = len(new_nodes)
            new_nodes.append(replacement)
    graph = Graph(name=g.name, inputs=list(g.inputs), exits=list(g.exits), nodes=new_nodes,
                  constants=g.constants, tensors=g.tensors, opset=g.opset,
                  ir_version=g.ir_version, dialect=g.dialect, const_quant=g.const_quant)
    stages = [dataclasses.replace(stage, nodes=[new_index[i] for i in stage.nodes
                                                if i in new_index])
              for stage in model.stages]
    return dataclasses.replace(model, graph=graph, stages=stages)


def emit_lut(ctx: EmitContext, node: Node) -> Emitted:
    """One table lookup (the activations family's ``eedge_lut_s8``; in place allowed)."""
    p = ctx.ident
    return Emitted([int_array(f"{p}_table", node.attrs["table"], "int8_t")],
                   f"eedge_lut_s8({p}_table, {_operand(ctx, node.inputs[0])}, "
                   f"{ctx.tensor_ref(node.outputs[0])}, {_size(ctx.graph, node.outputs[0])})")

