"""Resize family: RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR (ONNX Resize), and TRANSPOSE_CONV.

TRANSPOSE_CONV (ONNX ConvTranspose) lives in :mod:`eedge.ops.transpose_conv`,
imported at the end of this module so the registry's one family import
registers all three.

Facts from TFLite Micro's kernels (resize_nearest_neighbor.cc,
resize_bilinear.cc and the reference headers they call):

- Both int8 kernels move or blend the input's bytes without any
  requantization; the output's scale and zero point are never read. So the
  output must share the input's quantization (``quant="shared"``), and a
  foreign file whose two differ means what TFLM computes: the same bytes.
- Nearest picks source pixel ``min(floor((x + o) * s), in - 1)`` (``round``
  instead of ``floor`` with ``align_corners``), with ``s = in / out`` (or
  ``(in - 1) / (out - 1)`` with ``align_corners``) and ``o = 0.5`` with
  ``half_pixel_centers``, all in float32. The generator evaluates that once on
  the host and stores the index tables, so the device never touches a float.
- int8 bilinear is integer arithmetic with 10 fractional bits: the scale is
  ``round(1024 * in / out)``, each output is a sum of four products of an int8
  value and two 10-bit weights, rounded by 2^20 with ties away from zero
  (TFLite's non-single-rounding build, which TFLM's interpreter is: checked
  against it on negative ties in the tests). Float bilinear uses float32.
- ``half_pixel_centers`` and ``align_corners`` together are refused by both.

ONNX Resize has many coordinate modes; instead of a table of which ones mean
which TFLite flags (it depends on the sizes: ``round_prefer_floor`` and
``round_prefer_ceil`` only differ on ties, which some size pairs never hit),
the lowering computes, for this node's sizes, the source pixels (nearest) or
source coordinates (bilinear) ONNX asks for and the ones each TFLite flag
combination gives, and picks the combination that agrees on both axes, or
refuses the node naming a mode that works.

C (firmware_templates/runtime/src/resize.c): both kernels are portable only.
On QEMU's Cortex-M4, 8x8x16 -> 16x16x16: nearest 1.5 instructions per output
element (row copies), bilinear 18.7; a SIMD bilinear (SXTB16/PKH/SMUAD)
measured 21.3 and was dropped. TRANSPOSE_CONV has a DSP path (SMLAD).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from eedge.codegen.emit import EmitContext, Emitted, _dims, _operand, int_array, struct
from eedge.errors import ModelError, UnsupportedOpError
from eedge.ir.graph import Graph, Node
from eedge.ops import registry
from eedge.passes.lower_tflite import Lowerer, nchw_view
from eedge.tflite_schema import schema

F32 = np.float32
FLAGS = ((False, False), (True, False), (False, True))
"""(align_corners, half_pixel_centers) combinations TFLite accepts, in order of preference."""


# -- TFLite's arithmetic (one axis) -------------------------------------------------------
def nearest_indices(in_size: int, out_size: int, align_corners: bool,
                    half_pixel: bool) -> np.ndarray:
    """Source index of each output position, as TFLite's GetNearestNeighbor computes it (float32)."""
    if align_corners and out_size > 1:
        scale = F32(in_size - 1) / F32(out_size - 1)
    else:
        scale = F32(in_size) / F32(out_size)
    offset = F32(0.5) if half_pixel else F32(0.0)
    pos = (np.arange(out_size, dtype=F32) + offset) * F32(scale)
    if align_corners:  # std::round: halves away from zero (pos + 0.5 could round up in float32)
        whole = np.trunc(pos)
        index = whole + np.sign(pos) * (np.abs(pos - whole) >= F32(0.5))
    else:
        index = np.floor(pos)
    index = np.minimum(index.astype(np.int64), in_size - 1)
    return np.maximum(index, 0) if half_pixel else index


def bilinear_float_coords(in_size: int, out_size: int, align_corners: bool,
                          half_pixel: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, float32 source coordinate) of TFLite's float bilinear."""
    scale = F32(in_size) / F32(out_size)
    if align_corners and out_size > 1:
        scale = F32(in_size - 1) / F32(out_size - 1)
    x = np.arange(out_size, dtype=F32)
    value = (x + F32(0.5)) * scale - F32(0.5) if half_pixel else x * scale
    value = value.astype(F32)
    low = np.maximum(np.floor(value).astype(np.int64), 0)
    high = np.minimum(np.ceil(value).astype(np.int64), in_size - 1)
    return low, high, value


def _trunc_div(a: np.ndarray | int, b: int) -> np.ndarray:
    """C's integer division (towards zero)."""
    a = np.asarray(a, np.int64)
    return np.sign(a) * (np.abs(a) // b)


def bilinear_int_coords(in_size: int, out_size: int, align_corners: bool,
                        half_pixel: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, weight of the upper one in 1/1024) of TFLite's int8 bilinear."""
    if align_corners and out_size > 1:
        scale_10 = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    else:
        scale_10 = ((1 << 10) * in_size + out_size // 2) // out_size
    x = np.arange(out_size, dtype=np.int64)
    scaled = x * scale_10 + scale_10 // 2 - (1 << 9) if half_pixel else x * scale_10
    low = np.maximum(_trunc_div(scaled, 1 << 10), 0)
    high = np.minimum(_trunc_div(scaled + (1 << 10) - 1, 1 << 10), in_size - 1)
    return low, high, scaled - (1 << 10) * low


# -- kernels ------------------------------------------------------------------------------
def _flags(node: Node) -> tuple[bool, bool]:
    return bool(node.attrs.get("align_corners", False)), bool(node.attrs.get("half_pixel_centers",
                                                                              False))


def _out_size(node: Node, size: np.ndarray | None) -> tuple[int, int]:
    if size is None or np.asarray(size).size != 2:
        raise ModelError(f"{node.op_type} {node.name!r}: the size input must hold [height, width]")
    h, w = (int(v) for v in np.asarray(size).reshape(-1))
    return h, w


def _nearest(node: Node, _g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    x = args[0]
    out_h, out_w = _out_size(node, args[1])
    align, half = _flags(node)
    rows = nearest_indices(x.shape[1], out_h, align, half)
    cols = nearest_indices(x.shape[2], out_w, align, half)
    return x[:, rows][:, :, cols]


def _bilinear_float(node: Node, _g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    x = args[0].astype(F32)
    out_h, out_w = _out_size(node, args[1])
    align, half = _flags(node)
    y0, y1, vy = bilinear_float_coords(x.shape[1], out_h, align, half)
    x0, x1, vx = bilinear_float_coords(x.shape[2], out_w, align, half)
    dy = (vy - y0.astype(F32))[None, :, None, None]
    dx = (vx - x0.astype(F32))[None, None, :, None]
    one = F32(1)
    out = (x[:, y0][:, :, x0] * (one - dy) * (one - dx) + x[:, y1][:, :, x0] * dy * (one - dx)
           + x[:, y0][:, :, x1] * (one - dy) * dx + x[:, y1][:, :, x1] * dy * dx)
    return out.astype(F32)


def _bilinear_int8(node: Node, _g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    x = args[0].astype(np.int64)
    out_h, out_w = _out_size(node, args[1])
    align, half = _flags(node)
    y0, y1, dy = bilinear_int_coords(x.shape[1], out_h, align, half)
    x0, x1, dx = bilinear_int_coords(x.shape[2], out_w, align, half)
    dy, dx = dy[None, :, None, None], dx[None, None, :, None]
    one = 1 << 10
    total = (x[:, y0][:, :, x0] * (one - dy) * (one - dx) + x[:, y1][:, :, x0] * dy * (one - dx)
             + x[:, y0][:, :, x1] * (one - dy) * dx + x[:, y1][:, :, x1] * dy * dx)
    rounded = _trunc_div(total + np.where(total > 0, 1 << 19, -(1 << 19)), 1 << 20)
    return rounded.astype(np.int8)


def _output_shapes(node: Node, shapes: list[tuple[int, ...]],
                   constants: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    x = shapes[0]
    if len(x) != 4:
        raise ModelError(f"invalid TFLite model: {node.name}: {node.op_type} needs a 4-D NHWC "
                         f"input, got {list(x)}")
    size = node.inputs[1] if len(node.inputs) > 1 else ""
    if size not in constants:
        raise UnsupportedOpError(f"{node.name}: {node.op_type} needs a constant size (input 1)")
    value = constants[size]
    if value.dtype != np.int32 or value.size != 2 or int(value.min()) < 1:
        raise ModelError(f"invalid TFLite model: {node.name}: {node.op_type} size must be two "
                         f"positive int32 values, got {value.reshape(-1).tolist()[:4]}")
    align, half = _flags(node)
    if align and half:
        raise ModelError(f"invalid TFLite model: {node.name}: {node.op_type} with both "
                         "align_corners and half_pixel_centers (TFLite refuses it)")
    return [(x[0], int(value.reshape(-1)[0]), int(value.reshape(-1)[1]), x[3])]


# -- options ------------------------------------------------------------------------------
def _writer(options: str) -> Any:
    def write(attrs: dict[str, Any]) -> tuple[int, Any]:
        opts = getattr(schema, f"{options}T")()
        opts.alignCorners = bool(attrs.get("align_corners", False))
        opts.halfPixelCenters = bool(attrs.get("half_pixel_centers", False))
        return getattr(schema.BuiltinOptions, options), opts
    return write


def _reader(options: str) -> Any:
    def read(operator: Any) -> dict[str, Any]:
        opts = registry.options_table(operator, options)
        if opts is None:
            return {"align_corners": False, "half_pixel_centers": False}
        return {"align_corners": bool(opts.AlignCorners()),
                "half_pixel_centers": bool(opts.HalfPixelCenters())}
    return read


# -- C ------------------------------------------------------------------------------------
INT16_MAX = (1 << 15) - 1


def _c_dims(ctx: EmitContext, node: Node) -> tuple[int, int, int, int, int]:
    """(in_h, in_w, c, out_h, out_w); the C index tables are int16."""
    _, in_h, in_w, c = _dims(ctx.graph, node.inputs[0])
    _, out_h, out_w, _ = _dims(ctx.graph, node.outputs[0])
    if max(in_h, in_w) > INT16_MAX:
        raise UnsupportedOpError(f"{node.op_type} {node.name!r}: the C runtime resizes images "
                                 f"up to {INT16_MAX} pixels high and wide, not {in_h}x{in_w}")
    return in_h, in_w, c, out_h, out_w


def _emit_nearest(ctx: EmitContext, node: Node) -> Emitted:
    p = ctx.ident
    in_h, in_w, c, out_h, out_w = _c_dims(ctx, node)
    align, half = _flags(node)
    rows = nearest_indices(in_h, out_h, align, half)
    cols = nearest_indices(in_w, out_w, align, half)
    fields = dict(in_w=in_w, c=c, out_h=out_h, out_w=out_w, rows=f"{p}_rows", cols=f"{p}_cols")
    return Emitted([int_array(f"{p}_rows", rows, "int16_t"), int_array(f"{p}_cols", cols, "int16_t"),
                    struct("eedge_resize_nearest_params", f"{p}_params", fields)],
                   f"eedge_resize_nearest_s8(&{p}_params, {_operand(ctx, node.inputs[0])}, "
                   f"{ctx.tensor_ref(node.outputs[0])})")


def _emit_bilinear(ctx: EmitContext, node: Node) -> Emitted:
    p = ctx.ident
    in_h, in_w, c, out_h, out_w = _c_dims(ctx, node)
    align, half = _flags(node)
    y0, y1, dy = bilinear_int_coords(in_h, out_h, align, half)
    x0, x1, dx = bilinear_int_coords(in_w, out_w, align, half)
    if y0.max() >= in_h or x0.max() >= in_w:
        raise UnsupportedOpError(f"RESIZE_BILINEAR {node.name!r}: TFLite's 10-bit scale "
                                 f"reads past the input for {in_h}x{in_w} -> {out_h}x{out_w}")
    declarations = []
    for name, values in (("y0", y0), ("y1", y1), ("dy", dy), ("x0", x0), ("x1", x1), ("dx", dx)):
        declarations.append(int_array(f"{p}_{name}", values, "int16_t"))
    fields = dict(in_w=in_w, c=c, out_h=out_h, out_w=out_w,
                  **{name: f"{p}_{name}" for name in ("y0", "y1", "dy", "x0", "x1", "dx")})
    declarations.append(struct("eedge_resize_bilinear_params", f"{p}_params", fields))
    return Emitted(declarations,
                   f"eedge_resize_bilinear_s8(&{p}_params, {_operand(ctx, node.inputs[0])}, "
                   f"{ctx.tensor_ref(node.outputs[0])})")


# -- ONNX lowering ------------------------------------------------------------------------
def _onnx_coords(out_size: int, in_size: int, scale: float, mode: str) -> np.ndarray:
    """ONNX Resize's source coordinate of each output position (float64)."""
    x = np.arange(out_size, dtype=np.float64)
    if mode == "asymmetric":
        return x / scale
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_size > 1 else np.zeros(out_size)
    if mode == "align_corners":
        return x * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros(out_size)
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    if mode == "half_pixel_symmetric":
        adjustment = out_size / (scale * in_size)
        center = in_size / 2
        offset = center * (1 - adjustment)
        return offset + (x + 0.5) / scale - 0.5
    raise ValueError(mode)


def _onnx_nearest(coords: np.ndarray, in_size: int, nearest_mode: str) -> np.ndarray:
    if nearest_mode == "floor":
        index = np.floor(coords)
    elif nearest_mode == "ceil":
        index = np.ceil(coords)
    elif nearest_mode == "round_prefer_floor":
        index = np.where(coords - np.floor(coords) == 0.5, np.floor(coords), np.round(coords))
    else:  # round_prefer_ceil
        index = np.floor(coords + 0.5)
    return np.clip(index, 0, in_size - 1).astype(np.int64)


COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_half_pixel_for_nn", "half_pixel_symmetric")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _matching_flags(mode: str, axes: list[tuple[int, int, float]], ctm: str,
                    nearest_mode: str) -> tuple[bool, bool] | None:
    """The first TFLite (align_corners, half_pixel_centers) that reproduces ONNX on every axis."""
    for align, half in FLAGS:
        same = True
        for in_size, out_size, scale in axes:
            coords = _onnx_coords(out_size, in_size, scale, ctm)
            if mode == "nearest":
                same &= bool(np.array_equal(_onnx_nearest(coords, in_size, nearest_mode),
                                            nearest_indices(in_size, out_size, align, half)))
            else:
                _, _, value = bilinear_float_coords(in_size, out_size, align, half)
                ours = np.clip(value.astype(np.float64), 0, in_size - 1)
                theirs = np.clip(coords, 0, in_size - 1)
                same &= bool(np.allclose(ours, theirs, rtol=0, atol=1e-5 * max(in_size, 1)))
        if same:
            return align, half
    return None


def _scales_of(lw: Lowerer, node: Node, rank: int) -> np.ndarray | None:
    if len(node.inputs) > 2 and node.inputs[2]:
        scales = lw.const_of(node, 2, "scales").astype(np.float64).reshape(-1)
        if scales.size == rank:
            return scales
        if scales.size:
            raise lw.unsupported(node, f"{scales.size} scales for a rank-{rank} input")
    return None


def lower_resize(lw: Lowerer, node: Node) -> None:
    a = node.attrs
    mode = a.get("mode", "nearest")
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    nearest_mode = a.get("nearest_mode", "round_prefer_floor")
    if lw.src.opset < 11:
        raise lw.unsupported(node, "Resize before opset 11 (inputs X, scales); re-export "
                                   "with opset 13 or later")
    if mode not in ("nearest", "linear"):
        raise lw.unsupported(node, f"mode={mode!r}; TFLite resizes with 'nearest' or 'linear'")
    if int(a.get("antialias", 0)):
        raise lw.unsupported(node, "antialias=1; TFLite resizes without antialiasing "
                                   "(torch: antialias=False)")
    if a.get("axes") is not None:
        raise lw.unsupported(node, "the axes attribute; give scales or sizes for every axis")
    if a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise lw.unsupported(node, "keep_aspect_ratio_policy other than 'stretch'")
    if ctm not in COORDINATE_MODES:
        raise lw.unsupported(node, f"coordinate_transformation_mode={ctm!r}")
    if mode == "nearest" and nearest_mode not in NEAREST_MODES:
        raise lw.unsupported(node, f"nearest_mode={nearest_mode!r}")
    x, out = node.inputs[0], node.outputs[0]
    in_shape, out_shape = lw.src_shape(x), lw.src_shape(out)
    if len(in_shape) not in (3, 4):
        raise lw.unsupported(node, f"a rank-{len(in_shape)} input (TFLite resizes NCHW or NCL)")
    if len(node.inputs) > 1 and node.inputs[1] and node.inputs[1] not in lw.src.constants:
        raise lw.unsupported(node, "a non-constant roi")
    if tuple(out_shape[:2]) != tuple(in_shape[:2]):
        raise lw.unsupported(node, "resizing the batch or channel axis (TFLite resizes H and W)")
    scales = _scales_of(lw, node, len(in_shape))
    in_view = [int(d) for d in nchw_view(in_shape)[2:]]
    out_view = [int(d) for d in nchw_view(out_shape)[2:]]
    if scales is not None and len(in_shape) == 3:
        scales = np.concatenate([scales[:2], [1.0], scales[2:]])
    axes = [(in_view[i], out_view[i],
             float(scales[2 + i]) if scales is not None else out_view[i] / in_view[i])
            for i in range(2)]
    flags = _matching_flags(mode, axes, ctm, nearest_mode)
    if flags is None:
        what = (f"coordinate_transformation_mode={ctm!r}" +
                (f" with nearest_mode={nearest_mode!r}" if mode == "nearest" else ""))
        use = ("'asymmetric' with 'floor' (torch mode='nearest'), 'half_pixel' with "
               "'round_prefer_ceil', or 'align_corners' with 'round_prefer_ceil'"
               if mode == "nearest" else "'half_pixel' (torch align_corners=False), "
               "'align_corners' (align_corners=True) or 'asymmetric'")
        raise lw.unsupported(node, f"{what} samples other source positions for "
                                   f"{in_view[0]}x{in_view[1]} -> {out_view[0]}x{out_view[1]} "
                                   f"than any TFLite {_BUILTIN[mode]} can; use {use}")
    size = lw.const(f"{node.name}/size", np.array(out_view, np.int32))
    lw.define(out, out_shape)
    lw.emit(_BUILTIN[mode], node, [lw.name(x), size], out, align_corners=flags[0],
            half_pixel_centers=flags[1])


_BUILTIN = {"nearest": "RESIZE_NEAREST_NEIGHBOR", "linear": "RESIZE_BILINEAR"}


registry.register_builtin(registry.Builtin(
    name="RESIZE_NEAREST_NEIGHBOR",
    summary="nearest-neighbour resize of H and W (int8: a byte copy)",
    float_kernel=_nearest, int8_kernel=_nearest, emit_c=_emit_nearest,
    write_options=_writer("ResizeNearestNeighborOptions"),
    read_options=_reader("ResizeNearestNeighborOptions"),
    output_shapes=_output_shapes, quant="shared", int8_version=3, min_inputs=2))

registry.register_builtin(registry.Builtin(
    name="RESIZE_BILINEAR",
    summary="bilinear resize of H and W (int8: TFLite's 10-bit fixed point)",
    float_kernel=_bilinear_float, int8_kernel=_bilinear_int8, emit_c=_emit_bilinear,
    write_options=_writer("ResizeBilinearOptions"),
    read_options=_reader("ResizeBilinearOptions"),
    output_shapes=_output_shapes, quant="shared", int8_version=3, min_inputs=2))

registry.register_lowering(registry.Lowering(
    onnx_op="Resize", summary="resize (nearest or linear; sizes or scales constant)",
    lower=lower_resize, builtins=("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR")))

from eedge.ops import transpose_conv  # noqa: E402,F401  (registers TRANSPOSE_CONV)
