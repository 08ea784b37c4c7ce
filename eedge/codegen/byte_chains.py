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
from eedge.ops.registry import Kernel
from eedge.reference.float_kernels import FLOAT_KERNELS
from eedge.reference.int8_kernels import INT8_KERNELS

LUT_OP = "EEDGE_LUT"
"""The code generator's own node: ``attrs["table"]`` maps each input byte (uint8 order)."""

BYTE_OPS = frozenset({"RELU", "RELU6", "RELU_N1_TO_1", "QUANTIZE", "DEQUANTIZE", "LOGISTIC",
                      "TANH", "HARD_SWISH", "LEAKY_RELU", "ELU", "GELU", "RSQRT", "PRELU",
                      "ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM"})
"""Operators whose output element depends on one input element when every other input is a
one-element constant (DEQUANTIZE and the float forms included: a float island between a
DEQUANTIZE and a QUANTIZE, as TensorFlow's converter leaves around ops it cannot
quantize, is a byte-to-byte function too)."""

EVERY_BYTE = np.arange(-128, 128, dtype=np.int8)


def _kernel(node: Node, g: Graph) -> Kernel | None:
    """The reference kernel the executor would run for ``node`` (int8 or float table)."""
    quantized = node.op_type == "DEQUANTIZE" or g.tensors[node.outputs[0]].dtype == "int8"
    kernel = (INT8_KERNELS if quantized else FLOAT_KERNELS).get(node.op_type)
    registered = registry.builtin(node.op_type)
    if kernel is None and registered is not None:
        kernel = registered.int8_kernel if quantized else registered.float_kernel
    return kernel


def apply_elementwise(node: Node, g: Graph, values: np.ndarray) -> np.ndarray | None:
    """``node`` applied to ``values`` (its one activation input, element by element), or None
    when the node is not such a function: another operator, two activation inputs, a
    constant with more than one element, or a change in the number of elements."""
    if node.op_type == LUT_OP:
        return np.asarray(node.attrs["table"], np.int8)[values.astype(np.int8).view(np.uint8)]
    if node.op_type not in BYTE_OPS or len(node.outputs) != 1:
        return None
    activations = g.activation_inputs(node)
    if len(activations) != 1 or any(t in g.constants and g.constants[t].size != 1
                                    for t in node.inputs if t):
        return None
    x, out = g.tensors[activations[0]], g.tensors[node.outputs[0]]
    kernel = _kernel(node, g)
    if kernel is None or x.elements_per_sample() != out.elements_per_sample():
        return None
    shaped = values.reshape((1,) * (len(x.shape) - 1) + (values.size,))
    args = [shaped if t == x.name else (g.constants[t] if t else None) for t in node.inputs]
    result = np.asarray(kernel(node, g, args)).reshape(-1)
    return result if result.size == values.size else None


def byte_table(node: Node, g: Graph) -> np.ndarray | None:
    """The 256 output bytes of an int8 -> int8 ``node`` indexed by its input byte as uint8."""
    activations = g.activation_inputs(node)
    if node.op_type != LUT_OP and (len(activations) != 1 or len(node.outputs) != 1 or
                                   g.tensors[activations[0]].dtype != "int8" or
                                   g.tensors[node.outputs[0]].dtype != "int8"):
        return None
    values = apply_elementwise(node, g, EVERY_BYTE)
    return None if values is None else _uint8_order(values.astype(np.int8))


def _uint8_order(values: np.ndarray) -> np.ndarray:
    """Values listed for int8 inputs -128..127, reordered for uint8 indexing (0..255)."""
    return np.concatenate([values[128:], values[:128]])


def fuse_byte_chains(model: CodegenModel) -> CodegenModel:
    """A copy of ``model`` whose byte-to-byte chains are :data:`LUT_OP` nodes.

    A chain starts at an int8 tensor and may pass through float tensors; it becomes
    one table at each int8 tensor it reaches. Float tensors no int8 end absorbs are
    left in place (the code generator then refuses them).
    """
    g = model.graph
    kept = {model.input} | {t for stage in model.stages for t in stage.outputs}
    consumers = g.consumers()
    nodes: dict[int, Node | None] = {}
    # chain end tensor -> (int8 source tensor, values per source byte, member nodes, names)
    chain_end: dict[str, tuple[str, np.ndarray, list[int], list[str]]] = {}
    for stage in model.stages:
        for i in stage.nodes:
            node = g.nodes[i]
            inputs = g.activation_inputs(node)
            if len(inputs) != 1 or len(node.outputs) != 1:
                continue
            previous = chain_end.get(inputs[0])
            if previous is not None and (inputs[0] in kept or consumers.get(inputs[0]) != [i]
                                         or previous[2][-1] not in stage.nodes):
                previous = None
            if previous is None and g.tensors[inputs[0]].dtype != "int8":
                continue
            source, values, members, names = previous or (inputs[0], EVERY_BYTE, [], [])
            result = apply_elementwise(node, g, values)
            if result is None:
                continue
            members, names = members + [i], names + [node.name]
            out = node.outputs[0]
            if g.tensors[out].dtype == "int8":
                result = result.astype(np.int8)
                for m in members[:-1]:
                    nodes[m] = None
                nodes[i] = Node(node.name, LUT_OP, [source], [out],
                                {"table": _uint8_order(result), "fused": names})
            chain_end[out] = (source, result, members, names)
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

