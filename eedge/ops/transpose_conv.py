"""TRANSPOSE_CONV (ONNX ConvTranspose): every path, int8 bit-exact with TFLite Micro.

Facts from TFLM's transpose_conv.cc and the reference integer kernel:

- Inputs are (output_shape int32 [N, H, W, C], weights OHWI, input, optional
  bias); options padding (SAME/VALID), strides, fused activation. TFLM takes
  the output size from the output tensor and the padding from TFLite's
  ComputePaddingHeightWidth run *on the output size* (what a convolution of
  the output would pad): pad = max((conv_out - 1) * s + k - out, 0) / 2.
- int8: weights per channel (dimension 0, zero points 0), bias int32 at
  s_in * s_w; every (input + input offset) * weight product is summed in an
  int32 accumulator, then the bias is added, then the per-channel
  MultiplyByQuantizedMultiplier (the same multipliers as CONV_2D), the output
  offset and the activation clamp. Integer sums do not depend on their
  order, so the C kernel gathers, per output pixel, the taps that reach it
  (a tap list as scratch, not TFLM's int32 buffer the size of the output).

ONNX pads map onto TFLite's two paddings through the weights: the lowering
appends zero rows/columns to the kernel (a zero tap adds nothing, in float
and in int8, and leaves every per-channel scale unchanged) until TFLite's
pad, less the zeros put in front, is ONNX's begin pad, with the output size
(output_padding included) taken as is. PyTorch's usual k=3, s=2, p=1,
output_padding=1 becomes a 4x4 kernel with SAME padding.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from eedge.codegen.emit import (SCRATCH, EmitContext, Emitted, _dims, _operand,
                                check_accumulator, int_array, struct)
from eedge.errors import ModelError, UnsupportedOpError
from eedge.ir.graph import Graph, Node, QuantParams
from eedge.ops import registry
from eedge.passes.lower_tflite import Lowerer, nchw_view
from eedge.reference.fixedpoint import (multiply_by_quantized_multiplier, round_half_away,
                                        wrap_int32)
from eedge.reference.int8_kernels import (activation_range, channel_multipliers, quant_of,
                                          scale_of, zero_point_of)
from eedge.tflite_schema import schema

F32 = np.float32
ACTIVATIONS = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
PADDINGS = {"SAME": schema.Padding.SAME, "VALID": schema.Padding.VALID}


def tflite_pad(out_size: int, kernel: int, stride: int, padding: str) -> int:
    """The pad TFLite's transpose conv uses before an output axis (C integer division)."""
    if padding == "SAME":
        conv_out = (out_size + stride - 1) // stride
    else:
        conv_out = int((out_size + stride - kernel) / stride)  # truncates like C
    total = max((conv_out - 1) * stride + kernel - out_size, 0)
    return total // 2


def _pads(node: Node, x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> tuple[int, int]:
    a = node.attrs
    return (tflite_pad(x_shape[1], w_shape[1], a["stride_h"], a["padding"]),
            tflite_pad(x_shape[2], w_shape[2], a["stride_w"], a["padding"]))


def _geometry(node: Node, args: list[np.ndarray | None]) -> tuple[int, int, int, int]:
    out_shape = np.asarray(args[0]).reshape(-1)
    w = args[1]
    out_h, out_w = int(out_shape[1]), int(out_shape[2])
    pad_h = tflite_pad(out_h, w.shape[1], node.attrs["stride_h"], node.attrs["padding"])
    pad_w = tflite_pad(out_w, w.shape[2], node.attrs["stride_w"], node.attrs["padding"])
    return out_h, out_w, pad_h, pad_w


def _accumulate(node: Node, x: np.ndarray, w: np.ndarray, args: list[np.ndarray | None]
                ) -> np.ndarray:
    """sum x * w into each output position, in float64 (exact for int8 operands)."""
    out_h, out_w, pad_h, pad_w = _geometry(node, args)
    n, h, wd, _ = x.shape
    acc = np.zeros((n, out_h, out_w, w.shape[0]), np.float64)
    sh, sw = node.attrs["stride_h"], node.attrs["stride_w"]
    for fy, fx in itertools.product(range(w.shape[1]), range(w.shape[2])):
        oy = np.arange(h) * sh - pad_h + fy
        ox = np.arange(wd) * sw - pad_w + fx
        iy, ix = np.nonzero((oy >= 0) & (oy < out_h))[0], np.nonzero((ox >= 0) & (ox < out_w))[0]
        if iy.size == 0 or ix.size == 0:
            continue
        contrib = x[:, iy][:, :, ix] @ w[:, fy, fx, :].astype(np.float64).T
        acc[:, oy[iy][:, None], ox[ix][None, :]] += contrib
    return acc


def _float_kernel(node: Node, _g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    if args[1].dtype != np.float32:
        raise UnsupportedOpError(f"TRANSPOSE_CONV {node.name!r}: float input with "
                                 f"{args[1].dtype} weights (a hybrid model); eedge runs float "
                                 "or int8 models")
    x = args[2].astype(np.float64)
    out = _accumulate(node, x, args[1], args)
    if len(args) > 3 and args[3] is not None:
        out = out + args[3].astype(np.float64)
    activation = node.attrs.get("activation", "NONE")
    if activation == "RELU":
        out = np.maximum(out, 0)
    elif activation == "RELU6":
        out = np.clip(out, 0, 6)
    elif activation == "RELU_N1_TO_1":
        out = np.clip(out, -1, 1)
    return out.astype(F32)


def _multipliers(node: Node, g: Graph) -> tuple[np.ndarray, np.ndarray]:
    w = g.constants[node.inputs[1]]
    return channel_multipliers(scale_of(quant_of(g, node.inputs[2])),
                               quant_of(g, node.inputs[1]),
                               scale_of(quant_of(g, node.outputs[0])), w.shape[0])


def _int8_kernel(node: Node, g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    in_q, out_q = quant_of(g, node.inputs[2]), quant_of(g, node.outputs[0])
    x = args[2].astype(np.float64) - zero_point_of(in_q)
    acc = np.rint(_accumulate(node, x, args[1], args)).astype(np.int64)
    acc = wrap_int32(acc)
    if len(args) > 3 and args[3] is not None:
        acc = wrap_int32(acc + args[3].astype(np.int64))
    mult, shift = _multipliers(node, g)
    out = multiply_by_quantized_multiplier(acc, mult, shift) + zero_point_of(out_q)
    low, high = activation_range(node.attrs.get("activation", "NONE"), out_q)
    return np.clip(out, low, high).astype(np.int8)


def _output_shapes(node: Node, shapes: list[tuple[int, ...]],
                   constants: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    where = f"{node.name}: TRANSPOSE_CONV"
    if len(node.inputs) < 3 or node.inputs[0] not in constants or node.inputs[1] not in constants:
        raise UnsupportedOpError(f"{where} needs a constant output shape (input 0) and "
                                 "constant weights (input 1)")
    out_shape, w = constants[node.inputs[0]], constants[node.inputs[1]]
    x = shapes[2]
    if out_shape.dtype != np.int32 or out_shape.size != 4 or int(out_shape.min()) < 1:
        raise ModelError(f"invalid TFLite model: {where} output shape must be four positive "
                         f"int32 values, got {out_shape.reshape(-1).tolist()[:6]}")
    if w.ndim != 4 or len(x) != 4 or w.shape[3] != x[3] or int(out_shape[3]) != w.shape[0]:
        raise ModelError(f"invalid TFLite model: {where} weights {list(w.shape)} (OHWI) do not "
                         f"fit input {list(x)} and output shape {out_shape.tolist()}")
    if node.attrs.get("stride_h", 0) < 1 or node.attrs.get("stride_w", 0) < 1 or \
            node.attrs.get("padding") not in PADDINGS:
        raise ModelError(f"invalid TFLite model: {where} needs positive strides and SAME or "
                         "VALID padding")
    return [(x[0], int(out_shape[1]), int(out_shape[2]), int(out_shape[3]))]


def _write_options(attrs: dict[str, Any]) -> tuple[int, Any]:
    opts = schema.TransposeConvOptionsT()
    opts.padding = PADDINGS[attrs["padding"]]
    opts.strideH, opts.strideW = attrs["stride_h"], attrs["stride_w"]
    opts.fusedActivationFunction = ACTIVATIONS[attrs.get("activation", "NONE")]
    return schema.BuiltinOptions.TransposeConvOptions, opts


def _read_options(operator: Any) -> dict[str, Any]:
    opts = registry.options_table(operator, "TransposeConvOptions")
    if opts is None:
        raise ModelError("invalid TFLite model: TRANSPOSE_CONV without its options")
    names = {v: k for k, v in ACTIVATIONS.items()}
    activation = opts.FusedActivationFunction()
    if activation not in names:
        raise UnsupportedOpError(f"TRANSPOSE_CONV with fused activation {activation} is not "
                                 "supported (NONE, RELU, RELU6, RELU_N1_TO_1 are)")
    return {"padding": {v: k for k, v in PADDINGS.items()}.get(opts.Padding()),
            "stride_h": opts.StrideH(), "stride_w": opts.StrideW(),
            "activation": names[activation]}


# -- PTQ and the reader's checks ------------------------------------------------------------
def _quantize_constants(graph: Graph, node: Node, act: dict[str, QuantParams],
                        constants: dict[str, np.ndarray],
                        const_quant: dict[str, QuantParams]) -> None:
    """Weights per output channel (dimension 0), bias int32 at s_in * s_w (like CONV_2D)."""
    from eedge.passes.quantize import symmetric_weights

    w_name = node.inputs[1]
    if w_name in constants:
        raise ModelError(f"weights {w_name!r} are shared by two layers; eedge quantizes each "
                         "layer's weights on their own")
    q, wq = symmetric_weights(graph.constants[w_name], 0)
    constants[w_name], const_quant[w_name] = q, wq
    if len(node.inputs) > 3 and node.inputs[3]:
        s_in = F32(act[node.inputs[2]].scale[0])
        scales = (s_in * np.asarray(wq.scale, F32)).astype(F32)
        bias = graph.constants[node.inputs[3]].astype(np.float64)
        qb = np.clip(round_half_away(bias / scales.astype(np.float64)),
                     -(1 << 31), (1 << 31) - 1).astype(np.int32)
        constants[node.inputs[3]] = qb
        const_quant[node.inputs[3]] = QuantParams(tuple(float(s) for s in scales),
                                                  (0,) * scales.size, 0)


def _derived(node: Node, g: Graph) -> list[tuple[int, int]]:
    """The reader's int8 checks (symmetric per-channel int8 weights, int32 bias at s_in * s_w)."""
    where = f"invalid TFLite model: {node.name}"
    w_name = node.inputs[1]
    w = g.constants[w_name]
    if w.dtype != np.int8 or w_name not in g.const_quant:
        raise UnsupportedOpError(f"{node.name}: int8 TRANSPOSE_CONV needs int8 weights with "
                                 "quantization parameters (hybrid models are not supported)")
    w_q = g.const_quant[w_name]
    if len(w_q.scale) not in (1, w.shape[0]) or (len(w_q.scale) > 1 and w_q.axis != 0):
        raise ModelError(f"{where}: TRANSPOSE_CONV weight scales must be one or one per output "
                         "channel along dimension 0")
    if any(w_q.zero_point):
        raise ModelError(f"{where}: TRANSPOSE_CONV weights have a non-zero zero point "
                         "(TFLite's are symmetric)")
    if len(node.inputs) > 3 and node.inputs[3]:
        b = node.inputs[3]
        if b not in g.constants or g.constants[b].dtype != np.int32 or b not in g.const_quant:
            raise ModelError(f"{where}: the bias must be a constant int32 tensor with a scale")
        expected = scale_of(quant_of(g, node.inputs[2])) * np.asarray(w_q.scale)
        got = np.asarray(g.const_quant[b].scale)
        if got.size not in (1, expected.size) or np.any(
                np.abs(expected - got) / scale_of(quant_of(g, node.outputs[0])) > 0.02):
            raise ModelError(f"{where}: bias scale does not equal input scale x weight scale")
    activation_range(node.attrs.get("activation", "NONE"), quant_of(g, node.outputs[0]))
    mult, shift = _multipliers(node, g)
    return list(zip(mult.tolist(), shift.tolist()))


# -- C ------------------------------------------------------------------------------------
def _emit(ctx: EmitContext, node: Node) -> Emitted:
    g, a, p = ctx.graph, node.attrs, ctx.ident
    _, in_h, in_w, in_c = _dims(g, node.inputs[2])
    _, out_h, out_w, out_c = _dims(g, node.outputs[0])
    w_shape = _dims(g, node.inputs[1])
    in_q, out_q = quant_of(g, node.inputs[2]), quant_of(g, node.outputs[0])
    mult, shift = _multipliers(node, g)
    low, high = activation_range(a.get("activation", "NONE"), out_q)
    check_accumulator(g, node, out_axis=0, data=2, bias_index=3)
    fields = dict(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
                  k_h=w_shape[1], k_w=w_shape[2], stride_h=a["stride_h"], stride_w=a["stride_w"],
                  pad_top=tflite_pad(out_h, w_shape[1], a["stride_h"], a["padding"]),
                  pad_left=tflite_pad(out_w, w_shape[2], a["stride_w"], a["padding"]),
                  in_offset=-zero_point_of(in_q), out_offset=zero_point_of(out_q),
                  act_min=low, act_max=high, multiplier=f"{p}_mult", shift=f"{p}_shift",
                  live=f"{p}_live", scratch=SCRATCH)
    # taps whose weights are zero in every channel (the lowering's kernel padding) are skipped
    live = np.any(g.constants[node.inputs[1]].reshape(w_shape[0], w_shape[1] * w_shape[2], -1)
                  != 0, axis=(0, 2)).astype(np.uint8)
    bias = _operand(ctx, node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] else "0"
    return Emitted([int_array(f"{p}_mult", mult), int_array(f"{p}_shift", shift),
                    int_array(f"{p}_live", live, "uint8_t"),
                    struct("eedge_transpose_conv_params", f"{p}_params", fields)],
                   f"eedge_transpose_conv_s8(&{p}_params, {_operand(ctx, node.inputs[2])}, "
                   f"{_operand(ctx, node.inputs[1])}, {bias}, {ctx.tensor_ref(node.outputs[0])})",
                   2 * w_shape[1] * w_shape[2])   # the tap list of one output pixel


# -- ONNX lowering ------------------------------------------------------------------------
def kernel_padding(out_size: int, kernel: int, stride: int, pad_begin: int, padding: str
                   ) -> tuple[int, int] | None:
    """(zeros before, zeros after) the kernel so TFLite's pad less the front zeros is pad_begin.

    The smallest such kernel, or None when no kernel up to a few strides longer works.
    """
    limit = 2 * (pad_begin + kernel + stride) + 1
    for total in range(limit):
        for front in range(total + 1):
            if tflite_pad(out_size, kernel + total, stride, padding) - front == pad_begin:
                return front, total - front
    return None


def lower_conv_transpose(lw: Lowerer, node: Node) -> None:
    a = node.attrs
    weight = lw.const_of(node, 1, "weight").astype(F32)
    if weight.ndim not in (3, 4):
        raise lw.unsupported(node, f"{weight.ndim - 2}-D ConvTranspose (only 1-D and 2-D)")
    if int(a.get("group", 1)) != 1:
        raise lw.unsupported(node, f"group={a.get('group')}; TFLite's TRANSPOSE_CONV has no "
                                   "groups (use group=1)")
    rank = weight.ndim - 2
    if any(int(d) != 1 for d in a.get("dilations", [1] * rank)):
        raise lw.unsupported(node, "dilations other than 1 (TFLite's TRANSPOSE_CONV has none)")
    if "output_shape" in a:
        raise lw.unsupported(node, "the output_shape attribute; give pads and output_padding")
    auto_pad = a.get("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID"):
        raise lw.unsupported(node, f"auto_pad={auto_pad}; give explicit pads")
    pads = [0] * 2 * rank if auto_pad == "VALID" else list(a.get("pads", [0] * 2 * rank))
    strides = list(a.get("strides", [1] * rank))
    begins = pads[:rank]
    kernel = list(weight.shape[2:])
    if rank == 1:
        weight = weight[:, :, None, :]
        strides, begins, kernel = [1] + strides, [0] + begins, [1] + kernel
    x, out = node.inputs[0], node.outputs[0]
    out_shape = lw.src_shape(out)
    out_hw = [int(d) for d in nchw_view(out_shape)[2:]]
    cout = weight.shape[1]
    best = None
    for padding in ("VALID", "SAME"):
        fits = [kernel_padding(out_hw[i], kernel[i], strides[i], begins[i], padding)
                for i in range(2)]
        if None in fits:
            continue
        area = np.prod([kernel[i] + sum(fits[i]) for i in range(2)])
        if best is None or area < best[0]:
            best = (area, padding, fits)
    if best is None:
        raise lw.unsupported(node, f"pads {pads} with strides {strides[-rank:]} have no "
                                   "TFLite SAME/VALID equivalent")
    _, padding, ((top, bottom), (left, right)) = best
    w = weight.transpose(1, 2, 3, 0)  # (Cin, Cout, kh, kw) -> OHWI
    w = np.pad(w, [(0, 0), (top, bottom), (left, right), (0, 0)])
    bias = (lw.const_of(node, 2, "bias").astype(F32) if len(node.inputs) > 2 and node.inputs[2]
            else np.zeros(cout, F32))
    shape = lw.const(f"{node.name}/output_shape", np.array([1, *out_hw, cout], np.int32))
    lw.define(out, out_shape)
    lw.emit("TRANSPOSE_CONV", node,
            [shape, lw.const(f"{node.name}/weights", w), lw.name(x),
             lw.const(f"{node.name}/bias", bias)], out,
            padding=padding, stride_h=strides[0], stride_w=strides[1], activation="NONE")


registry.register_builtin(registry.Builtin(
    name="TRANSPOSE_CONV",
    summary="transposed 2-D convolution (per-channel int8 weights, int32 bias)",
    float_kernel=_float_kernel, int8_kernel=_int8_kernel, emit_c=_emit,
    write_options=_write_options, read_options=_read_options, output_shapes=_output_shapes,
    quantize_constants=_quantize_constants, derived_multipliers=_derived,
    int8_version=3, min_inputs=3, dsp=True, same_type=False))

registry.register_lowering(registry.Lowering(
    onnx_op="ConvTranspose", summary="transposed convolution (2-D or 1-D, group 1)",
    lower=lower_conv_transpose, builtins=("TRANSPOSE_CONV",)))
