"""Transformer operators lowered to TFLite builtins: MatMul, LayerNormalization, Gather.

Token tensors (N, T, D) and attention heads (N, h, T, d) are *plain*
tensors (:mod:`eedge.passes.layout_classes`): stored in ONNX order, a 3-D
one as (N, 1, T, D). On them

- a MatMul by a constant matrix (``nn.Linear`` on tokens) is one
  FULLY_CONNECTED with ``keep_num_dims`` over the last axis, a following
  bias Add folded into it;
- a MatMul of two activations (attention's Q·Kᵀ and P·V) is BATCH_MATMUL; an
  operand stored with its last two axes swapped (K's transpose is usually
  free: the transpose only relabels the axes) is read with ``adj_x``/``adj_y``;
- LayerNormalization is what TFLite's converter writes for it: MEAN,
  SUB, SQUARED_DIFFERENCE, MEAN, ADD ε, RSQRT, MUL, then MUL γ and ADD β;
- Gather of one constant index (``x[:, 0]``, a class token) is SLICE
  plus a reshape that is free in the C runtime.

Operands in another layout (a convolution's channels-last tensor feeding a
Linear) are transposed into ONNX order first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eedge.ir.graph import Dim, Node, TensorInfo
from eedge.ops.movement_lowering import (_node, _source, _transpose, batch_axis, element_order,
                                         lowered_shape, reshape_lowered, view_axis)
from eedge.ops.registry import Lowering, register_lowering
from eedge.passes.layout_classes import PLAIN_LAYOUTS, plain_layout
from eedge.passes.lower_tflite import Lowerer, nchw_view

F32 = np.float32


def _view_axes(rank: int) -> list[int]:
    """The view axes (3-D read as (N, C, 1, L)) of ONNX axes 0..rank-1."""
    return [view_axis(a, rank) for a in range(rank)]


def in_onnx_order(lw: Lowerer, node: Node, src: str) -> str:
    """The lowered ``src`` stored in ONNX order (plain layout), transposed there if needed."""
    x = lw.name(src)
    if x in lw.perm:
        raise lw.unsupported(node, f"{src!r} is a flattened channels-first tensor")
    shape = lw.src_shape(src)
    rank = len(shape)
    if rank not in PLAIN_LAYOUTS:
        return x
    layout, plain = lw.layout_of(x, rank), plain_layout(shape)
    if np.array_equal(element_order(shape, layout), element_order(shape, plain)):
        return x
    converted = f"{x}/onnx_order"
    if converted not in lw.tensors:
        lw.tensors[converted] = TensorInfo(converted, lowered_shape(shape, plain), "float32")
        lw.layout[converted] = plain
        _transpose(lw, node, x, [layout.index(a) for a in plain], converted)
    return converted


def plain_target(lw: Lowerer, node: Node, out: str) -> str:
    """Where a product writes ``out`` (defined by the caller): ``out`` itself when it is
    stored in ONNX order; otherwise a plain temporary that :func:`finish_plain` transposes
    into ``out`` (a Linear whose output meets channels-last operators, e.g. a residual
    Add with a channels-last input)."""
    shape = lw.src_shape(out)
    rank = len(shape)
    layout = lw.layout_of(out, rank)
    if rank not in PLAIN_LAYOUTS or np.array_equal(element_order(shape, layout),
                                                   element_order(shape, plain_layout(shape))):
        return out
    temp = f"{out}/onnx_order"
    lw.tensors[temp] = TensorInfo(temp, lowered_shape(shape, plain_layout(shape)), "float32")
    lw.layout[temp] = plain_layout(shape)
    return temp


def finish_plain(lw: Lowerer, node: Node, written: str, out: str) -> None:
    """Transpose a plain temporary from :func:`plain_target` into ``out``'s layout."""
    if written == out:
        return
    rank = len(lw.src_shape(out))
    src, dst = lw.layout_of(written, rank), lw.layout_of(out, rank)
    _transpose(lw, node, written, [src.index(a) for a in dst], out)


# -- MatMul ----------------------------------------------------------------------------------
def _bias_add(lw: Lowerer, node: Node, units: int) -> tuple[Node, np.ndarray] | None:
    """The Add of a per-output constant that is the only reader of a MatMul (nn.Linear's bias)."""
    readers = lw.readers.get(node.outputs[0], [])
    if len(readers) != 1 or node.outputs[0] in lw.src.exits:
        return None
    add = lw.src.nodes[readers[0]]
    if add.op_type != "Add" or len(add.inputs) != 2:
        return None
    other = add.inputs[1] if add.inputs[0] == node.outputs[0] else add.inputs[0]
    if other not in lw.src.constants:
        return None
    bias = np.asarray(lw.src.constants[other], F32)
    if bias.size != units or (bias.ndim and bias.shape[-1] != units):
        return None
    if len(lw.src_shape(add.outputs[0])) != len(lw.src_shape(node.outputs[0])):
        return None
    return add, bias.reshape(-1)


def lower_linear(lw: Lowerer, node: Node, weight: np.ndarray) -> None:
    """x (..., K) @ W (K, U) on a 3-D/4-D x: FULLY_CONNECTED keep_num_dims (+ bias Add)."""
    x = in_onnx_order(lw, node, node.inputs[0])
    units = int(weight.shape[1])
    out, bias = node.outputs[0], np.zeros(units, F32)
    folded = _bias_add(lw, node, units)
    if folded is not None:
        add, bias = folded
        lw.absorbed.add(id(add))
        out = add.outputs[0]
    lw.define(out, lw.src_shape(out))
    target = plain_target(lw, node, out)
    w = lw.const(f"{node.name}/weights", np.ascontiguousarray(weight.T, F32))
    b = lw.const(f"{node.name}/bias", bias)
    lw.emit("FULLY_CONNECTED", node, [x, w, b], target, activation="NONE", keep_num_dims=True)
    finish_plain(lw, node, target, out)


def _operand(lw: Lowerer, node: Node, src: str) -> tuple[str, bool]:
    """A BATCH_MATMUL operand and whether it is stored transposed (its adj flag).

    Its leading axes must be stored in ONNX order and its last two as the
    last two lowered axes, in either order; otherwise it is transposed.
    """
    x = lw.name(src)
    rank = len(lw.src_shape(src))
    if x in lw.perm or rank not in PLAIN_LAYOUTS:
        return in_onnx_order(lw, node, src), False
    layout = list(lw.layout_of(x, rank))
    view = _view_axes(rank)
    lead = [a for a in layout[:-2] if not (rank == 3 and a == 2)]
    if lead == view[:-2]:
        if layout[-2:] == view[-2:]:
            return x, False
        if layout[-2:] == view[-2:][::-1]:
            return x, True
    return in_onnx_order(lw, node, src), False


def lower_batch_matmul(lw: Lowerer, node: Node) -> None:
    """Two activations multiplied (attention): BATCH_MATMUL with adj flags for free transposes."""
    a_rank, b_rank = (len(lw.src_shape(t)) for t in node.inputs[:2])
    if a_rank != b_rank or a_rank not in PLAIN_LAYOUTS:
        raise lw.unsupported(node, f"a product of {a_rank}-D and {b_rank}-D activations "
                                   "(only two 3-D or two 4-D tensors)")
    a, adj_x = _operand(lw, node, node.inputs[0])
    b, adj_y = _operand(lw, node, node.inputs[1])
    out = node.outputs[0]
    lw.define(out, lw.src_shape(out))
    target = plain_target(lw, node, out)
    lw.emit("BATCH_MATMUL", node, [a, b], target, adj_x=adj_x, adj_y=adj_y)
    finish_plain(lw, node, target, out)


# -- LayerNormalization ----------------------------------------------------------------------
def _lowered_constant(lw: Lowerer, value: np.ndarray, rank: int, layout: Sequence[int]
                      ) -> np.ndarray:
    full = np.asarray(value, F32).reshape((1,) * (rank - np.ndim(value)) + np.shape(value))
    return lw.to_lowered(full, layout) if rank in PLAIN_LAYOUTS else full


def lower_layer_norm(lw: Lowerer, node: Node) -> None:
    """LayerNormalization as TFLite's converter writes it (eight elementwise/reduce builtins)."""
    src, out = node.inputs[0], node.outputs[0]
    if len(node.outputs) > 1 and any(node.outputs[1:]):
        raise lw.unsupported(node, "its mean / inverse-deviation outputs are used (training "
                                   "outputs; export the model in eval mode)")
    x = lw.name(src)
    if x in lw.perm:
        raise lw.unsupported(node, "its input is a flattened channels-first tensor")
    rank = len(lw.src_shape(src))
    first = int(node.attrs.get("axis", -1)) % rank
    batch = batch_axis(lw.src_shape(src))
    if batch is not None and first <= batch:
        raise lw.unsupported(node, f"normalizing from axis {first} includes the batch")
    eps = float(node.attrs.get("epsilon", 1e-5))
    axes = sorted(lw.lowered_axis(x, a, rank) for a in range(first, rank))
    layout = lw.layout_of(x, rank)
    scale = lw.const_of(node, 1, "scale")
    bias = (lw.const_of(node, 2, "bias") if len(node.inputs) > 2 and node.inputs[2]
            else None)
    lw.define(out, lw.src_shape(out))
    x_shape = lw.tensors[x].shape
    reduced: tuple[Dim, ...] = tuple(1 if i in axes else d for i, d in enumerate(x_shape))
    base = f"{out}/layernorm"

    def tensor(name: str, shape: tuple[Dim, ...]) -> str:
        full = f"{base}/{name}"
        lw.tensors[full] = TensorInfo(full, shape, "float32")
        return full

    axes_const = lw.const(f"{base}/axes", np.array(axes, np.int32))
    mean = tensor("mean", reduced)
    _node(lw, f"{node.name}/mean", "MEAN", [x, axes_const], [mean], keep_dims=1)
    centered = tensor("centered", x_shape)
    _node(lw, f"{node.name}/center", "SUB", [x, mean], [centered], activation="NONE")
    squared = tensor("squared", x_shape)
    _node(lw, f"{node.name}/square", "SQUARED_DIFFERENCE", [x, mean], [squared])
    variance = tensor("variance", reduced)
    _node(lw, f"{node.name}/variance", "MEAN", [squared, axes_const], [variance], keep_dims=1)
    shifted = tensor("variance_eps", reduced)
    _node(lw, f"{node.name}/epsilon", "ADD",
          [variance, lw.const(f"{base}/epsilon", np.array(eps, F32))], [shifted],
          activation="NONE")
    inv_std = tensor("inv_std", reduced)
    _node(lw, f"{node.name}/rsqrt", "RSQRT", [shifted], [inv_std])
    gamma = _lowered_constant(lw, scale, rank, layout)
    beta = None if bias is None else _lowered_constant(lw, bias, rank, layout)
    use_gamma = not np.all(gamma == 1.0)
    use_beta = beta is not None and bool(np.any(beta != 0.0))
    steps: list[tuple[str, str, np.ndarray | None]] = [("normalize", "MUL", None)]
    if use_gamma:
        steps.append(("scale", "MUL", gamma))
    if use_beta:
        steps.append(("shift", "ADD", beta))
    current = centered
    for i, (name, op, constant) in enumerate(steps):
        target = out if i == len(steps) - 1 else tensor(name, x_shape)
        other = inv_std if constant is None else lw.const(f"{base}/{name}_value", constant)
        _node(lw, f"{node.name}/{name}", op, [current, other], [target], activation="NONE")
        current = target


# -- Gather ----------------------------------------------------------------------------------
def lower_gather(lw: Lowerer, node: Node) -> None:
    """x[..., k, ...] for one constant k: SLICE, then a reshape dropping the axis (free)."""
    x, layout = _source(lw, node)
    in_shape = lw.src_shape(node.inputs[0])
    rank = len(in_shape)
    index = lw.const_of(node, 1, "index")
    if index.size != 1 or index.ndim > 1:
        raise lw.unsupported(node, f"{index.size} indices of shape {list(index.shape)} (only "
                                   "one constant index, as in x[:, k])")
    axis = int(node.attrs.get("axis", 0)) % rank
    if axis == batch_axis(in_shape):
        raise lw.unsupported(node, "gathering along the batch axis")
    size = int(in_shape[axis])
    k = int(index.reshape(-1)[0])
    if not -size <= k < size:
        raise lw.unsupported(node, f"index {k} is out of range for an axis of {size}")
    k %= size
    view = nchw_view(in_shape)
    begin = [0] * len(view)
    count = [int(d) if isinstance(d, int) else -1 for d in view]
    begin[view_axis(axis, rank)], count[view_axis(axis, rank)] = k, 1
    sliced_shape = list(in_shape)
    sliced_shape[axis] = 1
    out = node.outputs[0]
    sliced = f"{out}/slice"
    lw.tensors[sliced] = TensorInfo(sliced, lowered_shape(sliced_shape, layout), "float32")
    if tuple(layout) != lw.layout_of(sliced, rank):
        lw.layout[sliced] = tuple(layout)
    _node(lw, node.name, "SLICE",
          [x, lw.const(f"{sliced}/begin", np.array([begin[a] for a in layout], np.int32)),
           lw.const(f"{sliced}/size", np.array([count[a] for a in layout], np.int32))],
          [sliced])
    reshape_lowered(lw, node, sliced, tuple(sliced_shape), layout, out)


register_lowering(Lowering("LayerNormalization", "layer norm over the last axes (eps, γ, β)",
                           lower_layer_norm, ("MEAN", "SUB", "SQUARED_DIFFERENCE", "ADD",
                                              "RSQRT", "MUL")))
register_lowering(Lowering("Gather", "one constant index along a non-batch axis (x[:, k])",
                           lower_gather, ("SLICE", "RESHAPE")))
