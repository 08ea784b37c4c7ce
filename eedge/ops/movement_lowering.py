"""ONNX Slice, Split, Transpose and torch.stack lowered to TFLite builtins; layouts beyond 4-D.

The lowerer stores a 4-D NCHW activation as NHWC and a 3-D (N, C, L) one as
(N, 1, L, C). A tensor's *layout* says which ONNX axis each lowered axis
holds: (0, 2, 3, 1) for 4-D, the identity for 2-D. Tensors of rank 5 get one
too, recorded in the lowerer's ``layout`` table, so that ShuffleNet's channel
shuffle as torch exports it,

    Reshape (N, C, H, W) -> (N, g, C/g, H, W); Transpose (0, 2, 1, 3, 4); Reshape -> (N, C, H, W)

lowers without a single byte moving at the reshapes: the 5-D tensors are
stored (N, H, W, g, C/g) and (N, H, W, C/g, g) (layout (0, 3, 4, 1, 2)), so
the first reshape splits NHWC's channel axis in place, the transpose swaps
the last two axes (TRANSPOSE (0, 1, 2, 4, 3)), and the last reshape merges
them back -- exactly the NHWC form of the shuffle. A 5-D tensor gets that
layout only when every ONNX reader of it is one of the ops here (reshape,
transpose, slice, split), which all honour layouts; otherwise it stays in
ONNX order, which every other op assumes for ranks other than 3 and 4.

torch.stack exports one Unsqueeze per input and a Concat along the new axis:
that becomes one PACK of the 4-D inputs, its axis placed where the 5-D
result gets a layout that keeps later reshapes free. torch.unbind (Split,
then Squeeze of each part) is not turned into UNPACK: its 3-D parts would be
(N, C, L) tensors, which eedge stores as (N, 1, L, C), not UNPACK's order.

Whether a reshape moves bytes is decided by comparing, for both tensors, the
ONNX (row-major) index of the element at each lowered position; when no
layout makes them equal the reshape becomes TRANSPOSE to ONNX order, RESHAPE,
TRANSPOSE back.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from eedge.ir.graph import Dim, Node, TensorInfo
from eedge.ops.registry import Lowering, register_lowering
from eedge.passes.layout_classes import (FREE, PLAIN_LAYOUTS, default_layout, leading_axis,
                                         plain_layout)
from eedge.passes.lower_tflite import Lowerer, nchw_view

NHWC = (0, 2, 3, 1)
CHANNEL_SPLIT = (0, 3, 4, 1, 2)
"""Layout of a 5-D tensor splitting NCHW's channels: (N, H, W, a, b) for ONNX (N, a, b, H, W)."""
LAYOUT_AWARE = frozenset({"Reshape", "Transpose", "Slice", "Split", "Flatten", "Squeeze",
                          "Unsqueeze", "Gather"})
"""ONNX readers that honour a rank-5 tensor's layout (Concat only as torch.stack's PACK)."""


def layout_of(lw: Lowerer, lowered: str, rank: int) -> tuple[int, ...]:
    """The layout of a lowered tensor whose ONNX form has ``rank`` axes."""
    return lw.layout_of(lowered, rank)


def batch_axis(shape: Sequence[Dim]) -> int | None:
    """The ONNX axis holding the batch: the symbolic one (transformers move it).

    None for a fixed-shape tensor: a model whose batch could not be made
    symbolic runs with exactly its exported shapes, so no axis is special.
    """
    return next((i for i, d in enumerate(shape) if isinstance(d, str)), None)


def view_axis(axis: int, rank: int) -> int:
    """ONNX axis ``axis`` as an axis of the lowerer's view (3-D read as (N, C, 1, L))."""
    return (0, 1, 3)[axis] if rank == 3 else axis


def _view(shape: Sequence[Dim]) -> tuple[int, ...]:
    """The ONNX shape as the lowerer sees it (3-D as NCHW with unit H), batch as 1."""
    return tuple(int(d) if isinstance(d, int) else 1 for d in nchw_view(shape))


def lowered_shape(shape: Sequence[Dim], layout: Sequence[int]) -> tuple[Dim, ...]:
    view = nchw_view(shape)
    return tuple(view[a] for a in layout)


def element_order(shape: Sequence[Dim], layout: Sequence[int]) -> np.ndarray:
    """For each lowered position (one sample), the ONNX row-major index of its element.

    The batch counts as 1 wherever it sits (lowered graphs run one sample),
    so a layout may move it: attention's (3, N, h, T, d) tensors do.
    """
    dims = _view(shape)
    index = np.arange(math.prod(dims)).reshape(dims)
    return index.transpose(list(layout)).ravel()


def _define(lw: Lowerer, name: str, shape: Sequence[Dim], layout: Sequence[int]) -> None:
    lw.tensors[name] = TensorInfo(name, lowered_shape(shape, layout), "float32")
    if tuple(layout) != default_layout(len(shape)):
        lw.layout[name] = tuple(layout)


def _custom_layout_ok(lw: Lowerer, tensor: str) -> bool:
    """Whether every ONNX reader of ``tensor`` honours a non-default layout."""
    readers = lw.readers.get(tensor, [])
    return tensor not in lw.src.exits and all(
        lw.src.nodes[i].op_type in LAYOUT_AWARE for i in readers)


def leads_with_batch(shape: Sequence[Dim], layout: Sequence[int]) -> bool:
    """Whether ``layout`` stores the batch first (a unit axis, for a fixed-shape tensor)."""
    view = nchw_view(shape)
    if any(isinstance(d, str) for d in view):
        return layout[0] == leading_axis(shape)
    return view[layout[0]] == 1 or layout[0] == leading_axis(shape)


def _only_products_read(lw: Lowerer, tensor: str) -> bool:
    """Whether every reader is a MatMul of two activations (BATCH_MATMUL reads either
    operand stored with its last two axes swapped, through adj_x / adj_y)."""
    readers = lw.readers.get(tensor, [])
    return bool(readers) and tensor not in lw.src.exits and all(
        lw.src.nodes[i].op_type == "MatMul" and
        not any(t in lw.src.constants for t in lw.src.nodes[i].inputs) for i in readers)


def _candidates(lw: Lowerer, tensor: str, rank: int) -> list[tuple[int, ...]]:
    """Layouts a new rank-``rank`` tensor may take, preferred first (all store the batch first)."""
    shape = lw.src_shape(tensor)
    free = _custom_layout_ok(lw, tensor) and (rank == 5 or lw.classes.get(tensor) == FREE)
    if rank in PLAIN_LAYOUTS and not free:
        if _only_products_read(lw, tensor):  # K^T: stored as K, read with adj_y
            plain = plain_layout(shape)
            return [plain, plain[:-2] + (plain[-1], plain[-2])]
        return [lw.class_layout(tensor, rank)]
    if rank not in PLAIN_LAYOUTS and not free:
        return [plain_layout(shape) if rank == 5 else default_layout(rank)]
    preferred = [default_layout(rank) if rank in PLAIN_LAYOUTS else CHANNEL_SPLIT,
                 plain_layout(shape)]
    every = itertools.permutations(range(len(nchw_view(shape))))
    ordered = preferred + [p for p in every if p not in preferred]
    return [p for p in ordered if leads_with_batch(shape, p)] or [plain_layout(shape)]


def _node(lw: Lowerer, name: str, op: str, inputs: list[str], outputs: list[str],
          **attrs: object) -> None:
    taken = {n.name for n in lw.nodes}
    unique = name if name not in taken else f"{name}/{op.lower()}"
    k = 1
    while unique in taken:
        unique, k = f"{name}/{op.lower()}{k}", k + 1
    lw.nodes.append(Node(unique, op, inputs, outputs, dict(attrs)))


def batch_kept(dims: Sequence[int], perm: Sequence[int]) -> list[int]:
    """``perm``, or one moving the same bytes that leaves axis 0 (the batch) first.

    Permutations differing only in where unit axes go move no byte
    differently; lowered graphs keep the batch at axis 0, so among them the
    one that keeps axis 0 first is written.
    """
    perm = list(perm)
    if perm[0] == 0:
        return perm
    index = np.arange(math.prod(dims)).reshape(dims)
    wanted = index.transpose(perm)
    for p in itertools.permutations(range(len(perm))):
        if p[0] == 0 and index.transpose(p).shape == wanted.shape and \
                np.array_equal(index.transpose(p), wanted):
            return list(p)
    return perm


def _transpose(lw: Lowerer, node: Node, x: str, perm: Sequence[int], out: str) -> None:
    perm = batch_kept(_view(lw.tensors[x].shape), perm)
    if perm[0] != 0:
        raise lw.unsupported(node, "it would move the batch off the first axis")
    const = lw.const(f"{out}/perm", np.array(perm, np.int32))
    _node(lw, node.name, "TRANSPOSE", [x, const], [out])


def _reshape_to(lw: Lowerer, node: Node, x: str, out: str) -> None:
    lowered = [int(d) if isinstance(d, int) else -1 for d in lw.tensors[out].shape]
    if -1 not in lowered:  # a fixed batch: still written as "any" like the symbolic one
        lowered[0] = -1
    shape = lw.const(f"{out}/shape", np.array(lowered, np.int32))
    _node(lw, node.name, "RESHAPE", [x, shape], [out])


def _source(lw: Lowerer, node: Node) -> tuple[str, tuple[int, ...]]:
    """The lowered input of ``node`` and its layout; flattened channels-first tensors refused."""
    x = lw.name(node.inputs[0])
    if x in lw.perm:
        raise lw.unsupported(node, "its input is a flattened channels-first tensor")
    return x, layout_of(lw, x, len(lw.src_shape(node.inputs[0])))


# -- Reshape with a rank-5 side -------------------------------------------------------------
def needs_layouts(lw: Lowerer, node: Node) -> bool:
    """Whether a Reshape/Squeeze/Unsqueeze is this module's (a rank-5 tensor on either side)."""
    ranks = (len(lw.src_shape(node.inputs[0])), len(lw.src_shape(node.outputs[0])))
    out = node.outputs[0]
    return max(ranks) > 4 or lw.name(node.inputs[0]) in lw.layout or (
        ranks[1] in PLAIN_LAYOUTS and _candidates(lw, out, ranks[1]) != [default_layout(ranks[1])])


def lower_reshape(lw: Lowerer, node: Node) -> None:
    """A reshape from or to rank 5: free when some layout of the output keeps the bytes."""
    if _stacking_concat(lw, node) is not None:  # torch.stack: the Concat emits one PACK
        lw.alias[node.outputs[0]] = lw.name(node.inputs[0])
        return
    x, in_layout = _source(lw, node)
    reshape_lowered(lw, node, x, lw.src_shape(node.inputs[0]), in_layout, node.outputs[0])


def _column_permutation(order: np.ndarray, out_shape: Sequence[Dim]) -> np.ndarray | None:
    """For a reshape into 2-D, the one column order every row has (a fully connected layer's
    weights can absorb it); None when rows differ or the result is not 2-D."""
    if len(out_shape) != 2:
        return None
    cols = _view(out_shape)[1]
    rows = order.reshape(-1, cols)
    perm = rows[0] - rows[0].min()
    if not np.array_equal(rows, np.arange(len(rows))[:, None] * cols + perm[None, :]):
        return None
    return perm


def reshape_lowered(lw: Lowerer, node: Node, x: str, in_shape: Sequence[Dim],
                    in_layout: Sequence[int], out: str) -> None:
    """Lowered ``x`` (ONNX shape ``in_shape`` stored in ``in_layout``) reshaped into ``out``.

    Free (a RESHAPE, an alias in C) when some layout ``out`` may take keeps
    the bytes; otherwise through ONNX order with TRANSPOSEs.
    """
    out_shape = lw.src_shape(out)
    order = element_order(in_shape, in_layout)
    for layout in _candidates(lw, out, len(out_shape)):
        if np.array_equal(element_order(out_shape, layout), order):
            _define(lw, out, out_shape, layout)
            _reshape_to(lw, node, x, out)
            return
    columns = _column_permutation(order, out_shape)
    if columns is not None:  # a flatten: the consumer's weights absorb the order
        _define(lw, out, out_shape, default_layout(len(out_shape)))
        lw.perm[out] = columns
        _reshape_to(lw, node, x, out)
        return
    # bytes move: go through ONNX order (identity layouts) and back, skipping identities
    in_view, out_view = nchw_view(in_shape), nchw_view(out_shape)
    identity_in, identity_out = tuple(range(len(in_view))), tuple(range(len(out_view)))
    onnx_in = x
    if not np.array_equal(order, element_order(in_shape, identity_in)):
        onnx_in = f"{out}/onnx_order"
        lw.tensors[onnx_in] = TensorInfo(onnx_in, tuple(in_view), "float32")
        _transpose(lw, node, x, [in_layout.index(a) for a in identity_in], onnx_in)
    layout = _candidates(lw, out, len(out_shape))[0]
    if np.array_equal(element_order(out_shape, layout), element_order(out_shape, identity_out)):
        _define(lw, out, out_shape, layout)
        _reshape_to(lw, node, onnx_in, out)
        return
    onnx_out = f"{out}/reshaped"
    lw.tensors[onnx_out] = TensorInfo(onnx_out, tuple(out_view), "float32")
    _reshape_to(lw, node, onnx_in, onnx_out)
    _define(lw, out, out_shape, layout)
    _transpose(lw, node, onnx_out, list(layout), out)


# -- torch.stack: Unsqueeze on every input, Concat along the new axis -> PACK -----------------
def _unsqueeze_axis(lw: Lowerer, node: Node) -> int | None:
    """The one axis an Unsqueeze inserts (of its rank-5 output), or None."""
    if node.op_type != "Unsqueeze":
        return None
    if len(node.inputs) > 1 and node.inputs[1]:
        if node.inputs[1] not in lw.src.constants:
            return None
        axes = [int(a) for a in np.asarray(lw.src.constants[node.inputs[1]]).reshape(-1)]
    else:
        axes = [int(a) for a in node.attrs.get("axes", [])]
    return axes[0] % 5 if len(axes) == 1 else None


def _stack_inputs(lw: Lowerer, concat: Node) -> list[Node] | None:
    """The Unsqueeze nodes a Concat stacks (torch.stack of 4-D tensors), or None."""
    out_shape = lw.src_shape(concat.outputs[0])
    if concat.op_type != "Concat" or len(out_shape) != 5:
        return None
    axis = int(concat.attrs.get("axis", 0)) % 5
    consumers = lw.readers
    members = []
    for t in concat.inputs:
        index = lw.src.producer_index(t)
        node = lw.src.nodes[index] if index is not None else None
        if node is None or _unsqueeze_axis(lw, node) != axis or consumers.get(t) != \
                [lw.src.nodes.index(concat)] or len(lw.src_shape(node.inputs[0])) != 4:
            return None
        members.append(node)
    if axis == 0 or not _custom_layout_ok(lw, concat.outputs[0]):
        return None
    return members


def _stacking_concat(lw: Lowerer, node: Node) -> Node | None:
    """The Concat that stacks this Unsqueeze's output with the others', or None."""
    readers = lw.readers.get(node.outputs[0], [])
    if node.op_type != "Unsqueeze" or len(readers) != 1:
        return None
    concat = lw.src.nodes[readers[0]]
    return concat if _stack_inputs(lw, concat) is not None else None


def lower_stack(lw: Lowerer, node: Node) -> bool:
    """Lower a Concat of Unsqueezes (torch.stack) as one PACK; False when it is not one.

    The stacked 4-D tensors are NHWC; the new ONNX axis goes where it makes the
    5-D result's layout the channel-split one when it can (stacking along or
    after the channels, then merging into channels, moves no byte).
    """
    members = _stack_inputs(lw, node)
    if members is None:
        return False
    axis = int(node.attrs.get("axis", 0)) % 5
    shift = [i if i < axis else i + 1 for i in range(4)]
    nhwc = [shift[i] for i in NHWC]
    out = node.outputs[0]
    options = []
    for j in range(1, 5):
        layout = tuple(nhwc[:j] + [axis] + nhwc[j:])
        options.append(((_reshapes_moving(lw, out, layout), layout != CHANNEL_SPLIT, -j),
                        j, layout))
    _, j, layout = min(options)
    _define(lw, out, lw.src_shape(out), layout)
    inputs = [lw.name(m.inputs[0]) for m in members]
    _node(lw, node.name, "PACK", inputs, [out], values_count=len(inputs), axis=j)
    return True


# -- Transpose ------------------------------------------------------------------------------
def _view_perm(perm: Sequence[int], rank: int) -> list[int]:
    """An ONNX permutation of a 3-D tensor as one of its (N, C, 1, L) view."""
    if rank != 3:
        return list(perm)
    to_view = {0: 0, 1: 1, 2: 3}
    mapped = [to_view[p] for p in perm]
    return [mapped[0], mapped[1], 2, mapped[2]]


def _reshapes_moving(lw: Lowerer, tensor: str, layout: Sequence[int]) -> int:
    """How many reshapes reading ``tensor`` into rank <= 4 would move bytes with ``layout``.

    A transpose picks its output layout by this first (ShuffleNet's shuffle:
    the reshape after it must be free), and by whether it is free itself second.
    """
    shape = lw.src_shape(tensor)
    moving = 0
    for i in lw.readers.get(tensor, []):
        reader = lw.src.nodes[i]
        out_shape = lw.src_shape(reader.outputs[0])
        if reader.op_type in ("Reshape", "Flatten", "Squeeze", "Unsqueeze") and \
                2 < len(out_shape) <= 4:
            target = lw.class_layout(reader.outputs[0], len(out_shape))
            moving += not np.array_equal(element_order(shape, layout),
                                         element_order(out_shape, target))
    return moving


def lower_transpose(lw: Lowerer, node: Node) -> None:
    x, in_layout = _source(lw, node)
    rank = len(lw.src_shape(node.inputs[0]))
    out = node.outputs[0]
    out_shape = lw.src_shape(out)
    perm = [int(p) for p in node.attrs.get("perm", list(range(rank))[::-1])]
    view_perm = _view_perm(perm, rank)
    in_shape = lw.src_shape(node.inputs[0])
    onnx_index = np.arange(math.prod(_view(in_shape))).reshape(_view(in_shape))
    stored = onnx_index.transpose(in_layout)          # input element at each lowered position
    options = []
    for layout in _candidates(lw, out, rank):
        wanted = onnx_index.transpose(view_perm).transpose(layout)
        moves = not np.array_equal(stored.ravel(), wanted.ravel())
        options.append(((_reshapes_moving(lw, out, layout), moves), layout, wanted))
    (_, moves), layout, wanted = min(options, key=lambda o: o[0])
    lowered = [in_layout.index(view_perm[a]) for a in layout]
    if len(lowered) > 5:
        raise lw.unsupported(node, f"a {len(lowered)}-D transpose (TFLM: at most 5-D)")
    if not moves and tuple(layout) == tuple(in_layout):
        lw.alias[out] = x
        return
    _define(lw, out, out_shape, layout)
    if not moves:  # same bytes under another layout: a reshape (an alias in the C runtime)
        _reshape_to(lw, node, x, out)
        return
    _transpose(lw, node, x, lowered, out)


# -- Slice ----------------------------------------------------------------------------------
def _slice_inputs(lw: Lowerer, node: Node) -> tuple[list[int], list[int], list[int], list[int]]:
    rank = len(lw.src_shape(node.inputs[0]))
    if len(node.inputs) == 1:  # opset 1: attributes
        starts, ends = list(node.attrs["starts"]), list(node.attrs["ends"])
        axes = list(node.attrs.get("axes", range(len(starts))))
        return starts, ends, axes, [1] * len(starts)
    starts = lw.const_of(node, 1, "starts").reshape(-1).tolist()
    ends = lw.const_of(node, 2, "ends").reshape(-1).tolist()
    axes = (lw.const_of(node, 3, "axes").reshape(-1).tolist()
            if len(node.inputs) > 3 and node.inputs[3] else list(range(len(starts))))
    steps = (lw.const_of(node, 4, "steps").reshape(-1).tolist()
             if len(node.inputs) > 4 and node.inputs[4] else [1] * len(starts))
    return starts, ends, [int(a) % rank for a in axes], steps


def _clamp(value: int, size: int) -> int:
    value = value + size if value < 0 else value
    return max(0, min(size, value))


def lower_slice(lw: Lowerer, node: Node) -> None:
    x, layout = _source(lw, node)
    in_shape = lw.src_shape(node.inputs[0])
    view = nchw_view(in_shape)
    to_view = {0: 0, 1: 1, 2: 3} if len(in_shape) == 3 else {a: a for a in range(len(view))}
    sliced: set[int] = set()
    begin, count, steps = [0] * len(view), [int(d) if isinstance(d, int) else -1 for d in view], \
        [1] * len(view)
    for start, end, axis, step in zip(*_slice_inputs(lw, node)):
        if step <= 0:
            raise lw.unsupported(node, f"step {step} (only positive steps)")
        if axis == batch_axis(in_shape):
            raise lw.unsupported(node, "slicing the batch axis")
        size = int(in_shape[axis])
        first, stop = _clamp(int(start), size), _clamp(int(end), size)
        n = max(0, -(-(stop - first) // int(step)))
        if n == 0:
            raise lw.unsupported(node, f"an empty slice of axis {axis}")
        a = to_view[axis]
        begin[a], count[a], steps[a] = first, n, int(step)
        sliced.add(a)
    out = node.outputs[0]
    _define(lw, out, lw.src_shape(out), layout)
    lowered = [layout[i] for i in range(len(layout))]
    b = [begin[a] for a in lowered]
    # axes taken whole are "to the end": the batch (symbolic) and, as before, the first
    c = [-1 if a not in sliced and (j == 0 or count[a] < 0) else count[a]
         for j, a in enumerate(lowered)]
    s = [steps[a] for a in lowered]
    if all(v == 1 for v in s):
        _node(lw, node.name, "SLICE", [x, lw.const(f"{out}/begin", np.array(b, np.int32)),
                                       lw.const(f"{out}/size", np.array(c, np.int32))], [out])
        return
    if len(s) > 4:
        raise lw.unsupported(node, "a strided 5-D slice (TFLM's STRIDED_SLICE is at most 4-D)")
    e = [bi + ci * si if ci > 0 else 0 for bi, ci, si in zip(b, c, s)]
    whole = sum(1 << j for j, ci in enumerate(c) if ci < 0)  # axes taken whole (the batch)
    _node(lw, node.name, "STRIDED_SLICE",
          [x, lw.const(f"{out}/begin", np.array(b, np.int32)),
           lw.const(f"{out}/end", np.array(e, np.int32)),
           lw.const(f"{out}/strides", np.array(s, np.int32))], [out],
          begin_mask=whole, end_mask=whole, shrink_axis_mask=0)


# -- Split ----------------------------------------------------------------------------------
def split_sizes(lw: Lowerer, node: Node) -> list[int]:
    """ONNX Split's part sizes: the ``split`` input or attribute, else equal (opset 18 rounding)."""
    axis = int(node.attrs.get("axis", 0)) % len(lw.src_shape(node.inputs[0]))
    size = int(lw.src_shape(node.inputs[0])[axis])
    if len(node.inputs) > 1 and node.inputs[1]:
        return [int(v) for v in lw.const_of(node, 1, "split sizes").reshape(-1)]
    if "split" in node.attrs:
        return [int(v) for v in node.attrs["split"]]
    n = len(node.outputs)
    part = -(-size // n)
    return [part] * (n - 1) + [size - part * (n - 1)]


def lower_split(lw: Lowerer, node: Node) -> None:
    x, layout = _source(lw, node)
    in_shape = lw.src_shape(node.inputs[0])
    axis = int(node.attrs.get("axis", 0)) % len(in_shape)
    if axis == batch_axis(in_shape):
        raise lw.unsupported(node, "splitting the batch axis")
    sizes = split_sizes(lw, node)
    if len(sizes) != len(node.outputs) or sum(sizes) != int(in_shape[axis]) or min(sizes) < 1:
        raise lw.unsupported(node, f"sizes {sizes} do not split axis {axis} of {list(in_shape)}")
    lowered_axis = layout.index(view_axis(axis, len(in_shape)))
    for out in node.outputs:
        _define(lw, out, lw.src_shape(out), layout)
    axis_const = lw.const(f"{node.name}/axis", np.array(lowered_axis, np.int32))
    if len(set(sizes)) == 1:
        _node(lw, node.name, "SPLIT", [axis_const, x], list(node.outputs),
              num_splits=len(sizes))
    else:
        sizes_const = lw.const(f"{node.name}/sizes", np.array(sizes, np.int32))
        _node(lw, node.name, "SPLIT_V", [x, sizes_const, axis_const], list(node.outputs),
              num_splits=len(sizes))


register_lowering(Lowering("Slice", "slice with constant starts/ends/axes and positive steps",
                           lower_slice, ("SLICE", "STRIDED_SLICE")))
register_lowering(Lowering("Split", "split into equal or given parts", lower_split,
                           ("SPLIT", "SPLIT_V")))
register_lowering(Lowering("Transpose", "transpose (batch axis fixed; channel shuffle)",
                           lower_transpose, ("TRANSPOSE",)))
