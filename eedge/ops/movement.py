"""Data movement builtins: TRANSPOSE, SLICE, STRIDED_SLICE, SPLIT, SPLIT_V, PACK, UNPACK,
SQUEEZE and EXPAND_DIMS, and the ONNX lowerings that produce them.

These ops only move bytes, so their int8 kernels are their float kernels and
every one of them is ``quant="shared"``: TFLM's kernels copy int8 bytes with
no requantization and never compare the input's and output's scales (read in
its ``transpose.cc``, ``strided_slice.cc``, ``slice.cc``, ``split*.cc``,
``pack.cc``, ``unpack.cc``, ``squeeze.cc``, ``expand_dims.cc``), so a file
whose output parameters differ from its input's would silently reinterpret
the values. PTQ gives them one parameter set, and the reader refuses files
that do not (through ``derived_multipliers``, the reader's per-op quant hook).

eedge keeps dimension 0 as the batch (the reference executor runs calibration
batches through the same graph), so these ops must leave axis 0 alone: the
reader refuses a transpose, slice, split, pack or squeeze that touches it.

TFLM's limits, read in its sources: TRANSPOSE and SLICE up to 5-D,
STRIDED_SLICE up to 4-D (and it ignores ``ellipsis_mask``/``new_axis_mask``
and ``offset``, which LiteRT honours: eedge refuses them rather than pick
one answer), SQUEEZE up to 8-D.

Every C kernel is one generic strided copy (``eedge_strided_copy_s8``, see
:mod:`eedge.ops.movement_copy`): a transpose, a slice, each output of a split
and each input of a pack is a 5-D loop nest over strides, simplified at code
generation time (unit dimensions dropped, contiguous ones merged, the loop
order with the longer inner run chosen). The ONNX lowerings live in
:mod:`eedge.ops.movement_lowering`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eedge.codegen.emit import EmitContext, Emitted, _dims, _operand
from eedge.errors import ModelError, UnsupportedOpError
from eedge.ir.graph import Graph, Node
from eedge.ops import movement_copy as copy
from eedge.ops.registry import Builtin, options_table, register_builtin
from eedge.tflite_schema import schema

Shape = tuple[int, ...]


def _err(message: str) -> ModelError:
    return ModelError(f"invalid TFLite model: {message}")


def _ints(node: Node, index: int, constants: dict[str, np.ndarray], what: str,
          int32: bool = True) -> list[int]:
    """Constant integer input ``index`` of ``node`` (TFLM needs these constant).

    TFLM reads TRANSPOSE's permutation, STRIDED_SLICE's indices and the axes
    as int32 data whatever their declared type (only SLICE switches on it), so
    an int64 one would be misread there: refused unless ``int32`` is False.
    """
    name = node.inputs[index] if len(node.inputs) > index else ""
    if not name or name not in constants:
        raise UnsupportedOpError(f"{node.name}: {node.op_type} needs a constant {what} "
                                 f"(input {index})")
    value = np.asarray(constants[name])
    if value.dtype.kind != "i" or (int32 and value.dtype != np.int32):
        raise _err(f"{node.name}: {what} {name!r} must be an int32 tensor, not {value.dtype} "
                   "(TFLite Micro reads it as int32)" if int32 else
                   f"{node.name}: {what} {name!r} must be an integer tensor, not {value.dtype}")
    return [int(v) for v in value.reshape(-1)]


def _axis(node: Node, axis: int, rank: int, allow_end: bool = False) -> int:
    """A non-batch axis in range; eedge keeps dimension 0 as the batch."""
    limit = rank + 1 if allow_end else rank
    if not -limit <= axis < limit:
        raise _err(f"{node.name}: {node.op_type} axis {axis} is out of range for rank {rank}")
    axis %= limit
    if axis == 0:
        raise UnsupportedOpError(f"{node.name}: {node.op_type} on axis 0; eedge keeps "
                                 "dimension 0 as the batch")
    return axis


def _declared(graph: Graph, name: str) -> Shape:
    if name in graph.constants:
        return tuple(graph.constants[name].shape)
    return tuple(int(d) if isinstance(d, int) else 1 for d in graph.tensors[name].shape)


def _shapes(graph: Graph, node: Node) -> list[Shape]:
    return [_declared(graph, t) for t in node.inputs if t]


def _check_shared(node: Node, graph: Graph) -> list[tuple[int, int]]:
    """The reader's quant check: a byte-moving op reads and writes one parameter set."""
    from eedge.reference.int8_kernels import quant_of

    reference = quant_of(graph, node.outputs[0])
    for t in graph.activation_inputs(node) + node.outputs[1:]:
        q = quant_of(graph, t)
        if (q.scale[0], q.zero_point[0]) != (reference.scale[0], reference.zero_point[0]):
            raise _err(f"{node.name}: {node.op_type} moves int8 bytes without requantizing; "
                       f"{t!r} and {node.outputs[0]!r} must have the same scale and zero point")
    return []


def _load(operator: Any, cls_name: str) -> Any | None:
    """The operator's options table as ``schema.<cls_name>T``, or None when absent."""
    raw = options_table(operator, cls_name)
    return None if raw is None else getattr(schema, f"{cls_name}T").InitFromObj(raw)


def _no_options(cls_name: str) -> Any:
    def write(attrs: dict[str, Any]) -> tuple[int, Any]:
        del attrs
        return getattr(schema.BuiltinOptions, cls_name), getattr(schema, f"{cls_name}T")()
    return write


def _read_none(operator: Any) -> dict[str, Any]:
    del operator
    return {}


# -- TRANSPOSE ---------------------------------------------------------------------------
def _transpose_perm(node: Node, shapes: list[Shape], constants: dict[str, np.ndarray]
                    ) -> list[int]:
    rank = len(shapes[0])
    perm = _ints(node, 1, constants, "permutation")
    if rank > 5:
        raise UnsupportedOpError(f"{node.name}: TRANSPOSE of a {rank}-D tensor; TFLM "
                                 "transposes at most 5-D")
    if sorted(perm) != list(range(rank)):
        raise _err(f"{node.name}: TRANSPOSE permutation {perm} is not one of {rank} axes")
    if perm[0] != 0:
        raise UnsupportedOpError(f"{node.name}: TRANSPOSE moves axis 0; eedge keeps dimension "
                                 "0 as the batch")
    return perm


def _transpose_shapes(node: Node, shapes: list[Shape], constants: dict[str, np.ndarray]
                      ) -> list[Shape]:
    perm = _transpose_perm(node, shapes, constants)
    return [tuple(shapes[0][p] for p in perm)]


def _transpose_kernel(node: Node, graph: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    x, perm = args[0], args[1]
    assert x is not None and perm is not None
    return np.ascontiguousarray(np.transpose(x, [int(p) for p in perm.reshape(-1)]))


def _transpose_c(ctx: EmitContext, node: Node) -> Emitted:
    g = ctx.graph
    dims = _dims(g, node.inputs[0])
    perm = [int(p) for p in g.constants[node.inputs[1]].reshape(-1)]
    in_strides = copy.contiguous_strides(dims)
    out_dims = [dims[p] for p in perm]
    return copy.emit_copies(ctx, node, [copy.Copy(
        _operand(ctx, node.inputs[0]), ctx.tensor_ref(node.outputs[0]), out_dims,
        [in_strides[p] for p in perm], copy.contiguous_strides(out_dims))])


# -- SLICE and STRIDED_SLICE ---------------------------------------------------------------
def _slice_bounds(node: Node, shape: Shape, constants: dict[str, np.ndarray]
                  ) -> list[tuple[int, int, int]]:
    """(start, count, step) per axis, the way TFLite's SLICE reads begin and size."""
    begin = _ints(node, 1, constants, "begin", int32=False)
    size = _ints(node, 2, constants, "size", int32=False)
    if len(shape) > 5 or len(begin) != len(shape) or len(size) != len(shape):
        raise _err(f"{node.name}: SLICE begin {begin} and size {size} do not fit input "
                   f"{list(shape)} (TFLM slices at most 5-D)")
    bounds = []
    for axis, (b, s, d) in enumerate(zip(begin, size, shape)):
        count = d - b if s == -1 else s
        if b < 0 or count < 1 or b + count > d:
            raise _err(f"{node.name}: SLICE begin {b} size {s} on axis {axis} of size {d}")
        bounds.append((b, count, 1))
    return bounds


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _strided_bounds(node: Node, shape: Shape, constants: dict[str, np.ndarray]
                    ) -> list[tuple[int, int, int]]:
    """(start, count, step) per axis, TFLite's start/stop rules (negative wrap, clamp, masks)."""
    begin = _ints(node, 1, constants, "begin")
    end = _ints(node, 2, constants, "end")
    steps = _ints(node, 3, constants, "strides")
    rank = len(shape)
    if rank > 4:
        raise UnsupportedOpError(f"{node.name}: STRIDED_SLICE of a {rank}-D tensor; TFLM "
                                 "slices at most 4-D with it (use SLICE)")
    if not len(begin) == len(end) == len(steps) == rank:
        raise _err(f"{node.name}: STRIDED_SLICE begin/end/strides need {rank} values each")
    a = node.attrs
    bounds = []
    for axis, (b, e, st, d) in enumerate(zip(begin, end, steps, shape)):
        if st == 0:
            raise _err(f"{node.name}: STRIDED_SLICE stride 0 on axis {axis}")
        low, high = (0, d) if st > 0 else (-1, d - 1)
        start = (0 if st > 0 else d - 1) if a["begin_mask"] >> axis & 1 else \
            _clamp(b + d if b < 0 else b, low, high)
        if a["shrink_axis_mask"] >> axis & 1:
            stop = start + 1
        elif a["end_mask"] >> axis & 1:
            stop = d if st > 0 else -1
        else:
            stop = _clamp(e + d if e < 0 else e, low, high)
        count = max(0, -(-(stop - start) // st))
        if count < 1:
            raise _err(f"{node.name}: STRIDED_SLICE selects nothing on axis {axis}")
        bounds.append((start, count, st))
    return bounds


def _check_batch_kept(node: Node, shape: Shape, bounds: list[tuple[int, int, int]]) -> None:
    if bounds and bounds[0] != (0, shape[0], 1):
        raise UnsupportedOpError(f"{node.name}: {node.op_type} slices axis 0; eedge keeps "
                                 "dimension 0 as the batch")


def _sliced_shape(node: Node, shape: Shape, bounds: list[tuple[int, int, int]]) -> Shape:
    _check_batch_kept(node, shape, bounds)
    shrink = node.attrs.get("shrink_axis_mask", 0)
    if shrink & 1:
        raise UnsupportedOpError(f"{node.name}: STRIDED_SLICE shrinks axis 0; eedge keeps "
                                 "dimension 0 as the batch")
    return tuple(c for axis, (_, c, _) in enumerate(bounds) if not shrink >> axis & 1)


def _bounds_of(node: Node, shape: Shape, constants: dict[str, np.ndarray]
               ) -> list[tuple[int, int, int]]:
    if node.op_type == "SLICE":
        return _slice_bounds(node, shape, constants)
    return _strided_bounds(node, shape, constants)


def _slice_shapes(node: Node, shapes: list[Shape], constants: dict[str, np.ndarray]
                  ) -> list[Shape]:
    return [_sliced_shape(node, shapes[0], _bounds_of(node, shapes[0], constants))]


def _slice_kernel(node: Node, graph: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    x = args[0]
    assert x is not None
    bounds = _bounds_of(node, _declared(graph, node.inputs[0]), graph.constants)
    index = (slice(None),) + tuple(slice(s, s + c * st if s + c * st >= 0 else None, st)
                                   for s, c, st in bounds[1:])
    out_shape = _declared(graph, node.outputs[0])
    return np.ascontiguousarray(x[index]).reshape((x.shape[0],) + out_shape[1:])


def _slice_c(ctx: EmitContext, node: Node) -> Emitted:
    g = ctx.graph
    dims = _dims(g, node.inputs[0])
    bounds = _bounds_of(node, tuple(dims), g.constants)
    strides = copy.contiguous_strides(dims)
    offset = sum(s * stride for (s, _, _), stride in zip(bounds, strides))
    counts = [c for _, c, _ in bounds]
    return copy.emit_copies(ctx, node, [copy.Copy(
        f"({_operand(ctx, node.inputs[0])} + {offset})", ctx.tensor_ref(node.outputs[0]),
        counts, [st * stride for (_, _, st), stride in zip(bounds, strides)],
        copy.contiguous_strides(counts))])


def _write_strided(attrs: dict[str, Any]) -> tuple[int, Any]:
    o = schema.StridedSliceOptionsT()
    o.beginMask, o.endMask = int(attrs["begin_mask"]), int(attrs["end_mask"])
    o.shrinkAxisMask = int(attrs["shrink_axis_mask"])
    return schema.BuiltinOptions.StridedSliceOptions, o


def _read_strided(operator: Any) -> dict[str, Any]:
    o = _load(operator, "StridedSliceOptions")
    if o is None:
        return {"begin_mask": 0, "end_mask": 0, "shrink_axis_mask": 0}
    if o.ellipsisMask or o.newAxisMask or o.offset:
        raise UnsupportedOpError("STRIDED_SLICE with ellipsis_mask, new_axis_mask or offset: "
                                 "TFLM ignores them and LiteRT does not; rewrite the slice "
                                 "without them")
    return {"begin_mask": int(o.beginMask), "end_mask": int(o.endMask),
            "shrink_axis_mask": int(o.shrinkAxisMask)}


# -- SPLIT and SPLIT_V ---------------------------------------------------------------------
def _split_layout(node: Node, shapes: list[Shape], constants: dict[str, np.ndarray]
                  ) -> tuple[int, list[int]]:
    """(axis, size of each part) of a SPLIT ([axis, x]) or SPLIT_V ([x, sizes, axis])."""
    count = int(node.attrs["num_splits"])
    if node.op_type == "SPLIT":
        x, axis_values = shapes[1], _ints(node, 0, constants, "axis")
    else:
        x, axis_values = shapes[0], _ints(node, 2, constants, "axis")
    if len(axis_values) != 1:
        raise _err(f"{node.name}: {node.op_type} axis must be one value")
    axis = _axis(node, axis_values[0], len(x))
    if count < 1 or count != len(node.outputs):
        raise _err(f"{node.name}: {node.op_type} num_splits {count} but {len(node.outputs)} "
                   "outputs")
    if node.op_type == "SPLIT":
        if x[axis] % count:
            raise _err(f"{node.name}: SPLIT of {x[axis]} into {count} equal parts")
        return axis, [x[axis] // count] * count
    sizes = _ints(node, 1, constants, "size_splits")
    unknown = [i for i, s in enumerate(sizes) if s == -1]
    if len(sizes) != count or len(unknown) > 1 or any(s < -1 or s == 0 for s in sizes):
        raise _err(f"{node.name}: SPLIT_V sizes {sizes} for {count} outputs")
    if unknown:
        sizes[unknown[0]] = x[axis] - (sum(sizes) + 1)
    if sum(sizes) != x[axis] or min(sizes) < 1:
        raise _err(f"{node.name}: SPLIT_V sizes {sizes} do not add up to {x[axis]}")
    return axis, sizes


def _data_input(node: Node) -> str:
    return node.inputs[1] if node.op_type == "SPLIT" else node.inputs[0]


def _split_shapes(node: Node, shapes: list[Shape], constants: dict[str, np.ndarray]
                  ) -> list[Shape]:
    axis, sizes = _split_layout(node, shapes, constants)
    x = shapes[1] if node.op_type == "SPLIT" else shapes[0]
    return [x[:axis] + (s,) + x[axis + 1:] for s in sizes]


def _split_kernel(node: Node, graph: Graph, args: list[np.ndarray | None]
                  ) -> tuple[np.ndarray, ...]:
    x = args[1] if node.op_type == "SPLIT" else args[0]
    assert x is not None
    axis, sizes = _split_layout(node, _shapes(graph, node), graph.constants)
    cuts = np.cumsum(sizes)[:-1]
    return tuple(np.ascontiguousarray(p) for p in np.split(x, cuts, axis=axis))


def _split_c(ctx: EmitContext, node: Node) -> Emitted:
    g = ctx.graph
    axis, sizes = _split_layout(node, _shapes(g, node), g.constants)
    src = _data_input(node)
    dims = _dims(g, src)
    strides = copy.contiguous_strides(dims)
    copies, start = [], 0
    for out, size in zip(node.outputs, sizes):
        part = dims[:axis] + [size] + dims[axis + 1:]
        copies.append(copy.Copy(f"({_operand(ctx, src)} + {start * strides[axis]})",
                                ctx.tensor_ref(out), part, strides,
                                copy.contiguous_strides(part)))
        start += size
    return copy.emit_copies(ctx, node, copies)


def _write_split(attrs: dict[str, Any]) -> tuple[int, Any]:
    o = schema.SplitOptionsT()
    o.numSplits = int(attrs["num_splits"])
    return schema.BuiltinOptions.SplitOptions, o


def _write_split_v(attrs: dict[str, Any]) -> tuple[int, Any]:
    o = schema.SplitVOptionsT()
    o.numSplits = int(attrs["num_splits"])
    return schema.BuiltinOptions.SplitVOptions, o


def _read_split(operator: Any) -> dict[str, Any]:
    o = _load(operator, "SplitOptions")
    if o is None:
        raise _err("SPLIT without its options")
    return {"num_splits": int(o.numSplits)}


def _read_split_v(operator: Any) -> dict[str, Any]:
    o = _load(operator, "SplitVOptions")
    if o is None:
        raise _err("SPLIT_V without its options")
    return {"num_splits": int(o.numSplits)}


# -- PACK and UNPACK -----------------------------------------------------------------------
def _pack_axis(node: Node, shapes: list[Shape]) -> int:
    count = int(node.attrs["values_count"])
    if count != len(node.inputs) or count < 1:
        raise _err(f"{node.name}: PACK values_count {count} but {len(node.inputs)} inputs")
    if len(set(shapes)) != 1:
        raise _err(f"{node.name}: PACK inputs {[list(s) for s in shapes]} differ")
    return _axis(node, int(node.attrs["axis"]), len(shapes[0]), allow_end=True)


def _pack_shapes(node: Node, shapes: list[Shape], constants: dict[str, np.ndarray]
                 ) -> list[Shape]:
    axis = _pack_axis(node, shapes)
    return [shapes[0][:axis] + (len(shapes),) + shapes[0][axis:]]


def _pack_kernel(node: Node, graph: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    axis = _pack_axis(node, _shapes(graph, node))
    return np.stack([a for a in args if a is not None], axis=axis)


def _pack_c(ctx: EmitContext, node: Node) -> Emitted:
    g = ctx.graph
    dims = _dims(g, node.inputs[0])
    axis = _pack_axis(node, _shapes(g, node))
    out_dims = dims[:axis] + [len(node.inputs)] + dims[axis:]
    out_strides = copy.contiguous_strides(out_dims)
    part_strides = out_strides[:axis] + out_strides[axis + 1:]
    return copy.emit_copies(ctx, node, [copy.Copy(
        _operand(ctx, t), f"({ctx.tensor_ref(node.outputs[0])} + {k * out_strides[axis]})",
        dims, copy.contiguous_strides(dims), part_strides) for k, t in enumerate(node.inputs)])


def _unpack_axis(node: Node, shape: Shape) -> int:
    axis = _axis(node, int(node.attrs["axis"]), len(shape))
    if int(node.attrs["num"]) != shape[axis] or len(node.outputs) != shape[axis]:
        raise _err(f"{node.name}: UNPACK num {node.attrs['num']} with {len(node.outputs)} "
                   f"outputs along an axis of size {shape[axis]}")
    return axis


def _unpack_shapes(node: Node, shapes: list[Shape], constants: dict[str, np.ndarray]
                   ) -> list[Shape]:
    axis = _unpack_axis(node, shapes[0])
    return [shapes[0][:axis] + shapes[0][axis + 1:]] * shapes[0][axis]


def _unpack_kernel(node: Node, graph: Graph, args: list[np.ndarray | None]
                   ) -> tuple[np.ndarray, ...]:
    x = args[0]
    assert x is not None
    axis = _unpack_axis(node, _declared(graph, node.inputs[0]))
    return tuple(np.ascontiguousarray(np.take(x, k, axis=axis)) for k in range(x.shape[axis]))


def _unpack_c(ctx: EmitContext, node: Node) -> Emitted:
    g = ctx.graph
    dims = _dims(g, node.inputs[0])
    axis = _unpack_axis(node, tuple(dims))
    strides = copy.contiguous_strides(dims)
    part = dims[:axis] + dims[axis + 1:]
    return copy.emit_copies(ctx, node, [copy.Copy(
        f"({_operand(ctx, node.inputs[0])} + {k * strides[axis]})", ctx.tensor_ref(out),
        part, strides[:axis] + strides[axis + 1:], copy.contiguous_strides(part))
        for k, out in enumerate(node.outputs)])


def _write_pack(attrs: dict[str, Any]) -> tuple[int, Any]:
    o = schema.PackOptionsT()
    o.valuesCount, o.axis = int(attrs["values_count"]), int(attrs["axis"])
    return schema.BuiltinOptions.PackOptions, o


def _read_pack(operator: Any) -> dict[str, Any]:
    o = _load(operator, "PackOptions")
    if o is None:
        raise _err("PACK without its options")
    return {"values_count": int(o.valuesCount), "axis": int(o.axis)}


def _write_unpack(attrs: dict[str, Any]) -> tuple[int, Any]:
    o = schema.UnpackOptionsT()
    o.num, o.axis = int(attrs["num"]), int(attrs["axis"])
    return schema.BuiltinOptions.UnpackOptions, o


def _read_unpack(operator: Any) -> dict[str, Any]:
    o = _load(operator, "UnpackOptions")
    if o is None:
        raise _err("UNPACK without its options")
    return {"num": int(o.num), "axis": int(o.axis)}


# -- SQUEEZE and EXPAND_DIMS: reshapes (free aliases in the C runtime) ------------------------
def _squeeze_shapes(node: Node, shapes: list[Shape], constants: dict[str, np.ndarray]
                    ) -> list[Shape]:
    x = shapes[0]
    if len(x) > 8:
        raise _err(f"{node.name}: SQUEEZE of a {len(x)}-D tensor (TFLM: at most 8-D)")
    dims = [int(d) for d in node.attrs["squeeze_dims"]]
    if not dims and x and x[0] == 1:  # TFLite then squeezes every unit axis, the batch too
        raise UnsupportedOpError(f"{node.name}: SQUEEZE without squeeze_dims drops the batch "
                                 "axis; eedge keeps dimension 0 as the batch (list the axes)")
    axes = {_axis(node, d, len(x)) for d in dims} if dims else \
        {i for i, d in enumerate(x) if d == 1}
    if any(x[a] != 1 for a in axes):
        raise _err(f"{node.name}: SQUEEZE of axes {sorted(axes)} of {list(x)}, not all size 1")
    return [tuple(d for i, d in enumerate(x) if i not in axes)]


def _expand_shapes(node: Node, shapes: list[Shape], constants: dict[str, np.ndarray]
                   ) -> list[Shape]:
    x = shapes[0]
    values = _ints(node, 1, constants, "axis")
    if len(values) != 1:
        raise _err(f"{node.name}: EXPAND_DIMS axis must be one value")
    axis = _axis(node, values[0], len(x), allow_end=True)
    return [x[:axis] + (1,) + x[axis:]]


def _reshape_kernel(node: Node, graph: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    x = args[0]
    assert x is not None
    return x.reshape((x.shape[0],) + _declared(graph, node.outputs[0])[1:])


def _alias_c(ctx: EmitContext, node: Node) -> Emitted:
    # the planner makes the output an alias of the input (like RESHAPE): usually no copy
    src, out = _operand(ctx, node.inputs[0]), ctx.tensor_ref(node.outputs[0])
    size = int(np.prod(_dims(ctx.graph, node.outputs[0])))
    return Emitted([], f"eedge_copy_s8({src}, {out}, {size})")


def _write_squeeze(attrs: dict[str, Any]) -> tuple[int, Any]:
    o = schema.SqueezeOptionsT()
    o.squeezeDims = [int(d) for d in attrs["squeeze_dims"]]
    return schema.BuiltinOptions.SqueezeOptions, o


def _read_squeeze(operator: Any) -> dict[str, Any]:
    o = _load(operator, "SqueezeOptions")
    dims = [] if o is None or o.squeezeDims is None else [int(d) for d in o.squeezeDims]
    return {"squeeze_dims": dims}


def _register() -> None:
    shared: dict[str, Any] = dict(quant="shared", derived_multipliers=_check_shared)
    register_builtin(Builtin(
        "TRANSPOSE", "transpose (up to 5-D, batch axis fixed)", _transpose_kernel,
        _transpose_kernel, _transpose_c, _no_options("TransposeOptions"), _read_none,
        _transpose_shapes, int8_version=2, min_inputs=2, **shared))
    register_builtin(Builtin(
        "SLICE", "slice with constant begin and size (up to 5-D)", _slice_kernel, _slice_kernel,
        _slice_c, _no_options("SliceOptions"), _read_none, _slice_shapes, int8_version=2,
        min_inputs=3, **shared))
    register_builtin(Builtin(
        "STRIDED_SLICE", "strided slice with constant begin/end/strides (up to 4-D)",
        _slice_kernel, _slice_kernel, _slice_c, _write_strided, _read_strided, _slice_shapes,
        int8_version=2, min_inputs=4, **shared))
    register_builtin(Builtin(
        "SPLIT", "split into equal parts (multi-output)", _split_kernel, _split_kernel,
        _split_c, _write_split, _read_split, _split_shapes, int8_version=2, min_inputs=2,
        same_type=False, **shared))
    register_builtin(Builtin(
        "SPLIT_V", "split into given sizes (multi-output)", _split_kernel, _split_kernel,
        _split_c, _write_split_v, _read_split_v, _split_shapes, int8_version=2, min_inputs=3,
        **shared))
    register_builtin(Builtin(
        "PACK", "stack tensors along a new axis", _pack_kernel, _pack_kernel, _pack_c,
        _write_pack, _read_pack, _pack_shapes, int8_version=2, **shared))
    register_builtin(Builtin(
        "UNPACK", "unstack a tensor along an axis (multi-output)", _unpack_kernel,
        _unpack_kernel, _unpack_c, _write_unpack, _read_unpack, _unpack_shapes,
        int8_version=2, **shared))
    register_builtin(Builtin(
        "SQUEEZE", "drop unit axes (an alias in the C runtime)", _reshape_kernel,
        _reshape_kernel, _alias_c, _write_squeeze, _read_squeeze, _squeeze_shapes, **shared))
    register_builtin(Builtin(
        "EXPAND_DIMS", "insert a unit axis (an alias in the C runtime)", _reshape_kernel,
        _reshape_kernel, _alias_c, _no_options("ExpandDimsOptions"), _read_none,
        _expand_shapes, min_inputs=2, **shared))


_register()

from eedge.ops import movement_lowering  # noqa: E402,F401  (registers the ONNX lowerings)
