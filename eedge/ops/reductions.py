"""Reductions over axes: MEAN, SUM and REDUCE_MAX, from ONNX to the C runtime.

ONNX ReduceMean/ReduceSum/ReduceMax (axes an attribute before opset 18, an
input from 18 on), GlobalAveragePool and GlobalMaxPool all lower through
:func:`lower_reduction`: the NCHW axes become NHWC ones, and when dropping
axes leaves bytes in an order the lowered output tensor already has (3-D
results are stored as unit-height NHWC), the reduction is followed by a
RESHAPE; when it would need a transpose, the lowering refuses.

int8 arithmetic is TFLite Micro's (reduce_common.cc, reference/reduce.h):
MEAN and SUM share one path for every axis set (QuantizedMeanOrSum: an int32
sum, the input zero point times the count subtracted, one requantization
whose multiplier is in_scale/out_scale computed in double; MEAN folds
1/count into that multiplier: ``(m << s) / count`` with s = floor(log2
count) clamped to 32 and to 31 + shift). TFLM's only H,W special case is
for float MEAN. REDUCE_MAX compares bytes and TFLM refuses int8 input and
output quantizations that differ, so it shares one parameter set (PTQ rule
"shared").

MEAN keeps its entries in the older per-path tables (the lowering, float,
int8 and C handlers call into this module); SUM and REDUCE_MAX are
registered here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from eedge.errors import ModelError, UnsupportedOpError
from eedge.ir.graph import Graph, Node, TensorInfo
from eedge.ir.layout import CHANNELS_FIRST, to_channels_last
from eedge.ops import registry
from eedge.ops.registry import Builtin, Lowering, register_builtin, register_lowering
from eedge.reference.fixedpoint import (multiply_by_quantized_multiplier, quantize_multiplier,
                                        wrap_int32)
from eedge.reference.int8_kernels import mean_multiplier, quant_of, scale_of, zero_point_of

REDUCE_CODES = {"MEAN": 0, "SUM": 1, "REDUCE_MAX": 2}
"""The op field of the C kernel's params (EEDGE_REDUCE_* in kernels_reduce.h)."""

MAX_COUNT = 1 << 23
"""More elements per output could overflow the C kernel's int32 sum (255 * 2**23 < 2**31)."""


# -- lowering ------------------------------------------------------------------
def _channels_last(x: np.ndarray) -> np.ndarray:
    """An ONNX-layout array in the lowered graph's layout (NCHW -> NHWC, NCL -> N1LC)."""
    return to_channels_last(x, CHANNELS_FIRST.get(x.ndim))


def _reduced_shape(shape: Sequence[int], axes: Iterable[int], keep: bool) -> tuple[int, ...]:
    axes = set(axes)
    if keep:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _order_fix(onnx_shape: Sequence[int], onnx_axes: Sequence[int],
               lowered_axes: Sequence[int], keep: bool,
               lower_in: Any = _channels_last, lower_out: Any = _channels_last
               ) -> tuple[int, ...] | None:
    """None when the NHWC reduction leaves its results in the order the lowered output stores;
    otherwise the permutation of its keep_dims result that does (ValueError if none does).

    Checked on a sample: integer sums of random integers are exact and
    practically never collide, so equal sequences mean equal element order.
    The one case that needs a permutation is a 4-D mean over channels that
    drops them: ONNX's (N, H, W) is a 3-D tensor, stored as (N, 1, W, H).
    """
    x = np.random.default_rng(0).integers(-(1 << 20), 1 << 20, tuple(onnx_shape))
    expected = lower_out(x.sum(axis=tuple(onnx_axes), keepdims=keep))
    reduced = lower_in(x).sum(axis=tuple(lowered_axes), keepdims=True)
    if np.array_equal(reduced.ravel(), expected.ravel()):
        return None
    for rest in itertools.permutations(range(1, reduced.ndim)):
        moved = reduced.transpose((0,) + rest)
        if moved.shape == expected.shape and np.array_equal(moved, expected):
            return (0,) + rest
    raise ValueError("no permutation of the reduced tensor gives the lowered layout")


def lower_reduction(lw: Any, node: Node, op: str, axes: Iterable[int] | None,
                    keep: bool) -> None:
    """Emit ``op`` (MEAN/SUM/REDUCE_MAX) for an ONNX reduction over ``axes`` (NCHW numbering).

    ``axes`` None or empty: ONNX reduces every axis (noop_with_empty_axes=0)
    or none (=1, an identity).
    """
    x = node.inputs[0]
    in_shape = lw.src_shape(x)
    rank = len(in_shape)
    if not axes:
        if node.attrs.get("noop_with_empty_axes", 0):
            lw.alias[node.outputs[0]] = lw.name(x)
            return
        raise lw.unsupported(node, "a reduction over every axis includes the batch axis "
                                   "(give the axes to reduce)")
    axes = list(axes)
    if any(not -rank <= int(a) < rank for a in axes):
        raise lw.unsupported(node, f"axes {axes} are out of range for a {rank}-D input")
    onnx_axes = sorted({int(a) % rank for a in axes})
    from eedge.ops.movement_lowering import batch_axis
    batch = batch_axis(in_shape)
    if (0 if batch is None else batch) in onnx_axes:  # a fixed batch sits first
        raise lw.unsupported(node, "a reduction over the batch axis")
    if rank not in (2, 3, 4):
        raise lw.unsupported(node, f"a {rank}-D input (only 2-D, 3-D and 4-D)")
    x_name = lw.name(x)
    lowered = sorted({lw.lowered_axis(x_name, a, rank) for a in onnx_axes})
    in_lowered = tuple(int(d) if isinstance(d, int) else 1 for d in lw.tensors[x_name].shape)
    out = node.outputs[0]
    lw.define(out, lw.src_shape(out))
    out_rank = len(lw.src_shape(out))
    in_layout, out_layout = lw.layout_of(x_name, rank), lw.layout_of(out, out_rank)
    target = tuple(int(d) if isinstance(d, int) else 1 for d in lw.tensors[out].shape)
    # the unit H axis of a (N, 1, L, C) view goes away with the reduced axes when ONNX drops them
    drop = sorted(set(lowered) | ({1} if rank == 3 else set()))
    candidates = [(drop, False)] if not keep else []
    candidates += [(lowered, True), (lowered, False)]
    sample = tuple(int(d) if isinstance(d, int) else 1 for d in in_shape)
    try:
        perm = _order_fix(sample, onnx_axes, lowered, keep,
                          lambda a: lw.to_lowered(a, in_layout),
                          lambda a: lw.to_lowered(a, out_layout))
    except ValueError:
        raise lw.unsupported(node, f"dropping axes {onnx_axes} of a {rank}-D tensor leaves the "
                                   "results in another order than the lowered layout stores "
                                   "(keep the axes, keepdims=1)") from None
    if perm is None:
        for cand_axes, cand_keep in candidates:
            if _reduced_shape(in_lowered, cand_axes, cand_keep) == target:
                _emit(lw, node, op, x_name, cand_axes, cand_keep, out)
                return
    if perm is not None and registry.builtin("TRANSPOSE") is None:
        raise lw.unsupported(node, f"dropping axes {onnx_axes} of a {rank}-D tensor needs a "
                                   "TRANSPOSE, which this build lacks (keep the axes, keepdims=1)")
    kept = _reduced_shape(in_lowered, lowered, True)
    reduced = f"{out}/reduced"
    lw.tensors[reduced] = TensorInfo(reduced, (lw.tensors[out].shape[0],) + kept[1:], "float32")
    _emit(lw, node, op, x_name, lowered, True, reduced)
    if perm is not None:  # the ONNX result's element order is a transpose of NHWC's
        lw.emit("TRANSPOSE", node, [reduced, lw.const(f"{node.name}/perm",
                                                      np.array(perm, np.int32))], out)
        return
    shape = [int(d) if isinstance(d, int) else -1 for d in lw.tensors[out].shape]
    shape[0] = -1
    lw.emit("RESHAPE", node, [reduced, lw.const(f"{node.name}/shape", np.array(shape, np.int32))],
            out)


def _emit(lw: Any, node: Node, op: str, x: str, axes: Sequence[int], keep: bool,
          out: str) -> None:
    axes_name = lw.const(f"{node.name}/axes", np.array(axes, np.int32))
    lw.emit(op, node, [x, axes_name], out, keep_dims=int(keep))


def onnx_axes(lw: Any, node: Node) -> list[int] | None:
    """The axes of an ONNX Reduce*: the attribute (opset < 18) or the constant input 1 (18+)."""
    if len(node.inputs) > 1 and node.inputs[1]:
        return [int(a) for a in lw.const_of(node, 1, "axes").reshape(-1)]
    axes = node.attrs.get("axes")
    return None if axes is None else [int(a) for a in axes]


def _reduce_lowering(op: str) -> Any:
    def lower(lw: Any, node: Node) -> None:
        lower_reduction(lw, node, op, onnx_axes(lw, node), bool(node.attrs.get("keepdims", 1)))
    return lower


def _global_max_pool(lw: Any, node: Node) -> None:
    rank = len(lw.src_shape(node.inputs[0]))
    lower_reduction(lw, node, "REDUCE_MAX", range(2, rank), True)


# -- reference kernels ---------------------------------------------------------
def _axes(x: np.ndarray, axes: np.ndarray) -> tuple[int, ...]:
    return tuple(sorted({int(a) % x.ndim for a in np.asarray(axes).reshape(-1)}))


def float_sum(node: Node, _g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, axes = args
    return x.sum(axis=_axes(x, axes), keepdims=bool(node.attrs["keep_dims"]),
                 dtype=np.float32)


def float_max(node: Node, _g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, axes = args
    return x.max(axis=_axes(x, axes), keepdims=bool(node.attrs["keep_dims"])).astype(np.float32)


def reduce_multiplier(node: Node, g: Graph, count: int) -> tuple[int, int]:
    """The requantization QuantizedMeanOrSum applies (MEAN folds 1/count into it)."""
    s_in = scale_of(quant_of(g, node.inputs[0]))
    s_out = scale_of(quant_of(g, node.outputs[0]))
    if node.op_type == "MEAN":
        return mean_multiplier(s_in, s_out, count)
    return quantize_multiplier(s_in / s_out)


def int8_mean_or_sum(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    """TFLM's QuantizedMeanOrSum: int32 sum, minus zp * count, one requantization, clamp."""
    x, axes_arr = args
    axes = _axes(x, axes_arr)
    count = int(np.prod([x.shape[i] for i in axes]))
    m, s = reduce_multiplier(node, g, count)
    total = x.astype(np.int64).sum(axis=axes, keepdims=bool(node.attrs["keep_dims"]))
    shifted = wrap_int32(total - zero_point_of(quant_of(g, node.inputs[0])) * count)
    out = multiply_by_quantized_multiplier(shifted, m, s) + zero_point_of(
        quant_of(g, node.outputs[0]))
    return np.clip(out, -128, 127).astype(np.int8)


def _check_shared(node: Node, g: Graph) -> None:
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    if scale_of(in_q) != scale_of(out_q) or zero_point_of(in_q) != zero_point_of(out_q):
        raise ModelError(f"{node.op_type} {node.name!r}: int8 input and output quantization "
                         "differ; TFLite Micro requires them equal (requantize after it)")


def int8_max(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, axes = args
    _check_shared(node, g)
    return x.max(axis=_axes(x, axes), keepdims=bool(node.attrs["keep_dims"])).astype(np.int8)


# -- TFLite options and shapes -------------------------------------------------
def write_reducer_options(attrs: dict[str, Any]) -> tuple[int, Any]:
    from eedge.tflite_schema import schema
    opts = schema.ReducerOptionsT()
    opts.keepDims = bool(attrs["keep_dims"])
    return schema.BuiltinOptions.ReducerOptions, opts


def read_reducer_options(operator: Any) -> dict[str, Any]:
    opts = registry.options_table(operator, "ReducerOptions")
    if opts is None:
        return {"keep_dims": 0}
    return {"keep_dims": int(bool(opts.KeepDims()))}


def reducer_output_shapes(node: Node, shapes: list[tuple[int, ...]],
                          constants: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    from eedge.frontends.tflite_shapes import _mean_output
    return [_mean_output(node, shapes[0], constants)]


def _sum_multipliers(node: Node, g: Graph) -> list[tuple[int, int]]:
    return [quantize_multiplier(scale_of(quant_of(g, node.inputs[0])) /
                                scale_of(quant_of(g, node.outputs[0])))]


def _max_multipliers(node: Node, g: Graph) -> list[tuple[int, int]]:
    _check_shared(node, g)
    return []


# -- C ---------------------------------------------------------------------------
def canonical_dims(dims: Sequence[int], axes: Iterable[int]) -> tuple[list[int], list[int]]:
    """The input as the C kernel takes it: four (size, reduced) axes.

    Adjacent axes that are both reduced or both kept are merged and unit axes
    dropped (neither changes which bytes meet in an output), then leading
    kept axes of size 1 pad it to four. So the H,W mean of NHWC becomes
    (1, 1, H*W, C) with one reduced axis, the kernel's fast path.
    """
    reduced = {int(a) % len(dims) for a in axes}
    groups: list[list[int]] = []
    for i, d in enumerate(dims):
        if d == 1:
            continue
        if groups and groups[-1][1] == int(i in reduced):
            groups[-1][0] *= int(d)
        else:
            groups.append([int(d), int(i in reduced)])
    if len(groups) > 4:
        raise UnsupportedOpError(f"reducing axes {sorted(reduced)} of {list(dims)}: the C "
                                 "runtime takes at most four alternating axis groups")
    pad = 4 - len(groups)
    return [1] * pad + [g[0] for g in groups], [0] * pad + [g[1] for g in groups]


def emit_reduce(ctx: Any, node: Node) -> Any:
    """``eedge_reduce_s8`` for MEAN, SUM and REDUCE_MAX over any axes of an up-to-4-D tensor."""
    from eedge.codegen.emit import _dims, _unary
    g = ctx.graph
    dims = _dims(g, node.inputs[0])
    if node.inputs[1] not in g.constants:
        raise UnsupportedOpError(f"{node.op_type} {node.name!r}: the axes must be a constant")
    axes = {int(a) % len(dims) for a in g.constants[node.inputs[1]].reshape(-1)}
    full, mask = canonical_dims(dims, axes)
    count = int(np.prod([dims[a] for a in axes]))
    if count > MAX_COUNT:
        raise UnsupportedOpError(f"{node.op_type} {node.name!r}: {count} elements per output "
                                 f"exceed the C kernel's int32 sum (at most {MAX_COUNT})")
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    if node.op_type == "REDUCE_MAX":
        _check_shared(node, g)
        m, s = 0, 0
    else:
        m, s = reduce_multiplier(node, g, count)
    fields = {"dims": "{" + ", ".join(map(str, full)) + "}",
              "reduce": "{" + ", ".join(map(str, mask)) + "}",
              "op": REDUCE_CODES[node.op_type], "count": count,
              "in_zero_point": zero_point_of(in_q), "out_zero_point": zero_point_of(out_q),
              "multiplier": m, "shift": s}
    return _unary(ctx, node, "eedge_reduce_params", "eedge_reduce_s8", fields)


# -- registration ----------------------------------------------------------------
register_builtin(Builtin(
    name="SUM", summary="sum over axes (int8: TFLM's QuantizedMeanOrSum)",
    float_kernel=float_sum, int8_kernel=int8_mean_or_sum, emit_c=emit_reduce,
    write_options=write_reducer_options, read_options=read_reducer_options,
    output_shapes=reducer_output_shapes, quant="observed",
    derived_multipliers=_sum_multipliers, int8_version=2, min_inputs=2, dsp=True))
register_builtin(Builtin(
    name="REDUCE_MAX", summary="maximum over axes (int8: input and output share quantization)",
    float_kernel=float_max, int8_kernel=int8_max, emit_c=emit_reduce,
    write_options=write_reducer_options, read_options=read_reducer_options,
    output_shapes=reducer_output_shapes, quant="shared",
    derived_multipliers=_max_multipliers, int8_version=2, min_inputs=2, dsp=True))
register_lowering(Lowering("ReduceSum", "sum over axes", _reduce_lowering("SUM"), ("SUM",)))
register_lowering(Lowering("ReduceMax", "maximum over axes", _reduce_lowering("REDUCE_MAX"),
                           ("REDUCE_MAX",)))
register_lowering(Lowering("GlobalMaxPool", "global max pooling", _global_max_pool,
                           ("REDUCE_MAX",)))

__all__ = ["REDUCE_CODES", "canonical_dims", "emit_reduce", "float_max", "float_sum", "int8_max",
           "int8_mean_or_sum", "lower_reduction", "onnx_axes", "reduce_multiplier"]
