"""int8 kernels that reproduce TensorFlow Lite Micro's reference kernels bit for bit.

Each kernel first derives its integer parameters from the float scales the
way TFLM's Prepare does (which products are float32 and which double
matters for the last bit), then runs the integer arithmetic of Eval. Sums
of int8 products are computed with float64 matrix products: every partial
sum is an integer below 2**53, so the result is exact and BLAS-fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from eedge.errors import ModelError
from eedge.ir.graph import Graph, Node, QuantParams
from eedge.reference.fixedpoint import (exp_on_negative_values, multiply_by_quantized_multiplier,
                                        one_over_one_plus_x, quantize_multiplier, rdbpot,
                                        round_half_away, round_half_away_f32, srdhm, trunc_div,
                                        wrap_int32)
from eedge.reference.float_kernels import fc_output_shape, reshape_target
from eedge.reference.windows import gather_windows

Kernel = Callable[[Node, Graph, Sequence[np.ndarray | None]], np.ndarray]
F32 = np.float32


def quant_of(graph: Graph, name: str) -> QuantParams:
    info = graph.tensors.get(name)
    params = info.quant if info is not None else graph.const_quant.get(name)
    if params is None:
        raise ModelError(f"tensor {name!r} has no quantization parameters")
    return params


def scale_of(params: QuantParams) -> float:
    return float(F32(params.scale[0]))


def zero_point_of(params: QuantParams) -> int:
    return int(params.zero_point[0])


def quantize_float(value: float, params: QuantParams) -> int:
    """Q(f) = zp + round(f32(f / scale)), as CalculateActivationRangeQuantized does."""
    return zero_point_of(params) + int(round_half_away_f32(F32(value) / F32(scale_of(params))))


def activation_range(activation: str, params: QuantParams) -> tuple[int, int]:
    if activation == "NONE":
        return -128, 127
    if activation == "RELU":
        return max(-128, quantize_float(0.0, params)), 127
    if activation == "RELU6":
        return max(-128, quantize_float(0.0, params)), min(127, quantize_float(6.0, params))
    if activation == "RELU_N1_TO_1":
        return max(-128, quantize_float(-1.0, params)), min(127, quantize_float(1.0, params))
    raise ModelError(f"unknown fused activation {activation!r}")


def _finish(acc: np.ndarray, out: QuantParams, low: int, high: int) -> np.ndarray:
    return np.clip(acc + zero_point_of(out), low, high).astype(np.int8)


def channel_multipliers(in_scale: float, weight: QuantParams, out_scale: float,
                         channels: int) -> tuple[np.ndarray, np.ndarray]:
    scales = weight.scale if len(weight.scale) > 1 else weight.scale * channels
    pairs = [quantize_multiplier(float(in_scale) * float(F32(s)) / float(out_scale))
             for s in scales]
    return (np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64))


def _int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer matrix product through float64 (sums stay below 2**53)."""
    return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


def _conv(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, w, b = args
    a = node.attrs
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    zp_in = zero_point_of(in_q)
    windows, _ = gather_windows(x, (w.shape[1], w.shape[2]), (a["stride_h"], a["stride_w"]),
                                (a["dilation_h"], a["dilation_w"]), a["padding"], zp_in)
    n, oh, ow = windows.shape[:3]
    cols = windows.reshape(n * oh * ow, -1).astype(np.int64) - zp_in
    acc = _int_matmul(cols, w.reshape(w.shape[0], -1).T)
    if b is not None:
        acc = acc + b.astype(np.int64)
    acc = wrap_int32(acc)
    mult, shift = channel_multipliers(scale_of(in_q), quant_of(g, node.inputs[1]), scale_of(out_q),
                                       w.shape[0])
    out = multiply_by_quantized_multiplier(acc, mult, shift)
    low, high = activation_range(a["activation"], out_q)
    return _finish(out, out_q, low, high).reshape(n, oh, ow, w.shape[0])


def _depthwise(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, w, b = args
    a = node.attrs
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    zp_in = zero_point_of(in_q)
    multiplier = int(a.get("depth_multiplier", 1))
    if multiplier > 1:
        x = np.repeat(x, multiplier, axis=3)
    windows, _ = gather_windows(x, (w.shape[1], w.shape[2]), (a["stride_h"], a["stride_w"]),
                                (a["dilation_h"], a["dilation_w"]), a["padding"], zp_in)
    centered = windows.astype(np.float64) - zp_in
    acc = np.rint(np.einsum("nhwijc,ijc->nhwc", centered, w[0].astype(np.float64)))
    acc = acc.astype(np.int64)
    if b is not None:
        acc = acc + b.astype(np.int64)
    acc = wrap_int32(acc)
    channels = w.shape[3]
    mult, shift = channel_multipliers(scale_of(in_q), quant_of(g, node.inputs[1]), scale_of(out_q),
                                       channels)
    out = multiply_by_quantized_multiplier(acc, mult, shift)
    low, high = activation_range(a["activation"], out_q)
    return _finish(out, out_q, low, high)


def fc_multipliers(g: Graph, node: Node) -> tuple[np.ndarray, np.ndarray]:
    """One (multiplier, shift) per output; per-tensor weights repeat the same pair."""
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    w_q = quant_of(g, node.inputs[1])
    outputs = g.constants[node.inputs[1]].shape[0]
    if len(w_q.scale) > 1:
        return channel_multipliers(scale_of(in_q), w_q, scale_of(out_q), outputs)
    # The scale product is taken in double. TFLM's source at 90b983c2 multiplies the
    # two float scales in float, but tflite-micro's interpreter (the oracle) behaves
    # as double: on 400 random ad01 inputs only the double product matches it (the
    # float product differs on 4); the two agree on the recorded Cortex-M4 outputs.
    m, s = quantize_multiplier(scale_of(in_q) * float(F32(w_q.scale[0])) / scale_of(out_q))
    return np.full(outputs, m, np.int64), np.full(outputs, s, np.int64)


def fc_weight_offset(g: Graph, node: Node) -> int:
    """-zero point of per-tensor weights; per-channel zero points are ignored (TFLM)."""
    w_q = quant_of(g, node.inputs[1])
    return 0 if len(w_q.scale) > 1 else -zero_point_of(w_q)


def _fully_connected(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, w, b = args
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    rows = x.reshape(-1, w.shape[1]).astype(np.int64) - zero_point_of(in_q)
    acc = _int_matmul(rows, (w.astype(np.int64) + fc_weight_offset(g, node)).T)
    mult, shift = fc_multipliers(g, node)
    if b is not None:
        acc = acc + b.astype(np.int64)
    out = multiply_by_quantized_multiplier(wrap_int32(acc), mult, shift)
    low, high = activation_range(node.attrs["activation"], out_q)
    return _finish(out, out_q, low, high).reshape(fc_output_shape(node, x.shape, w.shape))


def _smaller_than_one(real: float, node: Node) -> tuple[int, int]:
    if not 0.0 < real < 1.0:
        raise ModelError(f"{node.op_type} node {node.name!r}: scale ratio {real} is outside "
                         "(0, 1); TFLM would reject this model")
    return quantize_multiplier(real)


def add_multipliers(node: Node, s1: float, s2: float, so: float) -> tuple[int, ...]:
    """(m1, shift1, m2, shift2, m_out, shift_out) of TFLite's int8 ADD (left shift 20)."""
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = _smaller_than_one(s1 / twice_max, node)
    m2, sh2 = _smaller_than_one(s2 / twice_max, node)
    mo, sho = _smaller_than_one(twice_max / ((1 << 20) * so), node)
    return m1, sh1, m2, sh2, mo, sho


def _add(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x1, x2 = args
    q1, q2 = quant_of(g, node.inputs[0]), quant_of(g, node.inputs[1])
    out_q = quant_of(g, node.outputs[0])
    m1, sh1, m2, sh2, mo, sho = add_multipliers(node, scale_of(q1), scale_of(q2), scale_of(out_q))
    a = (x1.astype(np.int64) - zero_point_of(q1)) << 20
    c = (x2.astype(np.int64) - zero_point_of(q2)) << 20
    a = rdbpot(srdhm(a, m1), -sh1)
    c = rdbpot(srdhm(c, m2), -sh2)
    total = rdbpot(srdhm(a + c, mo), -sho)
    low, high = activation_range(node.attrs["activation"], out_q)
    return _finish(total, out_q, low, high)


def _mul(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x1, x2 = args
    q1, q2 = quant_of(g, node.inputs[0]), quant_of(g, node.inputs[1])
    out_q = quant_of(g, node.outputs[0])
    m, s = quantize_multiplier(scale_of(q1) * scale_of(q2) / scale_of(out_q))
    product = (x1.astype(np.int64) - zero_point_of(q1)) * (x2.astype(np.int64) - zero_point_of(q2))
    out = multiply_by_quantized_multiplier(product, m, s)
    low, high = activation_range(node.attrs["activation"], out_q)
    return _finish(out, out_q, low, high)


def _pool(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x = args[0]
    a = node.attrs
    out_q = quant_of(g, node.outputs[0])
    windows, mask = gather_windows(x, (a["filter_h"], a["filter_w"]),
                                   (a["stride_h"], a["stride_w"]), (1, 1), a["padding"])
    m = mask[None, :, :, :, :, None]
    low, high = activation_range(a["activation"], out_q)
    if node.op_type == "MAX_POOL_2D":
        out = np.where(m, windows.astype(np.int64), -128).max(axis=(3, 4))
        return np.clip(out, low, high).astype(np.int8)
    total = np.where(m, windows.astype(np.int64), 0).sum(axis=(3, 4))
    count = np.broadcast_to(m.sum(axis=(3, 4)), total.shape).astype(np.int64)
    average = np.where(total > 0, trunc_div(total + count // 2, count),
                       trunc_div(total - count // 2, count))
    return np.clip(average, low, high).astype(np.int8)


def mean_multiplier(in_scale: float, out_scale: float, count: int) -> tuple[int, int]:
    """TFLM's MEAN folds the division by the element count into the multiplier."""
    m, s = quantize_multiplier(in_scale / out_scale)
    bits = min(count.bit_length() - 1, 32, 31 + s)
    return int(trunc_div(np.int64(m) << bits, count)), s - bits


def _mean(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    # TFLM's QuantizedMeanOrSum, which MEAN shares with SUM (the reductions family)
    from eedge.ops.reductions import int8_mean_or_sum
    return int8_mean_or_sum(node, g, args)


def softmax_multiplier(in_scale: float, beta: float = 1.0) -> tuple[int, int, int]:
    """(input multiplier, input left shift, diff_min) of TFLite's int8 softmax."""
    real = min(beta * in_scale * float(1 << 26), float((1 << 31) - 1))
    if real <= 1.0:
        raise ModelError("int8 softmax: the input scale is too small")
    in_mult, in_shift = quantize_multiplier(real)
    radius = int(np.floor(31.0 * (1 << 26) / float(1 << in_shift)))
    return in_mult, in_shift, -radius


def softmax_s8(x: np.ndarray, in_scale: float, beta: float = 1.0) -> np.ndarray:
    """int8 softmax over the last axis (scale 1/256, zero point -128), TFLite's bytes."""
    x = np.asarray(x).astype(np.int64)
    in_mult, in_shift, diff_min = softmax_multiplier(in_scale, beta)
    diff = x - x.max(axis=-1, keepdims=True)
    valid = diff >= diff_min
    scaled = srdhm(wrap_int32(diff << in_shift), in_mult)
    exps = exp_on_negative_values(np.where(valid, scaled, 0))
    total = wrap_int32(np.where(valid, rdbpot(exps, 12), 0).sum(axis=-1, keepdims=True))
    unsigned = total & 0xFFFFFFFF
    headroom = 32 - np.vectorize(lambda v: int(v).bit_length())(unsigned)
    shifted = wrap_int32(wrap_int32((unsigned << headroom) & 0xFFFFFFFF) - (1 << 31))
    reciprocal = one_over_one_plus_x(shifted)
    exponent = (12 - headroom) + 31 - 8
    out = rdbpot(srdhm(reciprocal, exps), exponent) - 128
    return np.where(valid, np.clip(out, -128, 127), -128).astype(np.int8)


def _softmax(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x = args[0].astype(np.int64)
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    if zero_point_of(out_q) != -128 or F32(scale_of(out_q)) != F32(1.0 / 256):
        raise ModelError(f"SOFTMAX node {node.name!r}: int8 output must have scale 1/256 and "
                         "zero point -128")
    return softmax_s8(x, scale_of(in_q), float(node.attrs.get("beta", 1.0)))


def _reshape(_n: Node, _g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, shape = args
    return x.reshape(reshape_target(x, shape))


def _concat(node: Node, _g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    return np.concatenate(args, axis=node.attrs["axis"])


def _pad(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, paddings = args[:2]
    return np.pad(x, [(int(a), int(b)) for a, b in paddings],
                  constant_values=zero_point_of(quant_of(g, node.outputs[0])))


def relu_multiplier(op_type: str, in_scale: float, out_scale: float) -> tuple[int, int]:
    """(Q31 multiplier, shift) of a standalone RELU/RELU6/RELU_N1_TO_1 that changes scale.

    The two oracles build it differently, and the last bit decides exact
    ties (0.05 -> 6/255: the float32 ratio is exactly 2.125, the double one
    is not). TFLite Micro's RELU divides the float32 scales in double
    (measured on tflite-micro 0.dev20261023, whose ReluPrepare converts both
    scales to double before dividing), and TFLM is the oracle for RELU.
    TFLM's RELU6 never requantizes (its known bug) and it has no
    RELU_N1_TO_1, so those follow LiteRT's shared ReluPrepare, which divides
    in float32 and widens the quotient (checked against BUILTIN_REF).
    """
    s_in, s_out = F32(in_scale), F32(out_scale)
    if op_type == "RELU":
        return quantize_multiplier(float(s_in) / float(s_out))
    return quantize_multiplier(float(F32(s_in / s_out)))


def _relu_family(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    """Requantize into the output scale, then clamp (TFLM's RELU, LiteRT's RELU6/RELU_N1_TO_1)."""
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    m, s = relu_multiplier(node.op_type, scale_of(in_q), scale_of(out_q))
    out = multiply_by_quantized_multiplier(args[0].astype(np.int64) - zero_point_of(in_q), m, s)
    low, high = activation_range(node.op_type, out_q)
    return _finish(out, out_q, low, high)


def _quantize(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x = args[0]
    out_q = quant_of(g, node.outputs[0])
    if x.dtype == np.int8:
        in_q = quant_of(g, node.inputs[0])
        m, s = quantize_multiplier(scale_of(in_q) / scale_of(out_q))
        out = multiply_by_quantized_multiplier(x.astype(np.int64) - zero_point_of(in_q), m, s)
        return _finish(out, out_q, -128, 127)
    scaled = _to_int64(round_half_away_f32(x.astype(F32) / F32(scale_of(out_q))))
    return np.clip(scaled + zero_point_of(out_q), -128, 127).astype(np.int8)


def _dequantize(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    in_q = quant_of(g, node.inputs[0])
    return (scale_of(in_q) * (args[0].astype(np.float64) - zero_point_of(in_q))).astype(F32)


def quantize_input(x: np.ndarray, params: QuantParams) -> np.ndarray:
    """Float input -> int8 exactly as a QUANTIZE op would (what runtimes feed stages)."""
    with np.errstate(over="ignore", invalid="ignore"):  # 3e38 / 0.01 saturates, silently
        scaled = _to_int64(round_half_away_f32(np.asarray(x, F32) / F32(scale_of(params))))
    return np.clip(scaled + zero_point_of(params), -128, 127).astype(np.int8)


def _to_int64(values: np.ndarray) -> np.ndarray:
    """Rounded floats as int64, saturating: a huge input (1e30 / scale) must clamp to
    int8's end like TFLite's QUANTIZE, not wrap to INT64_MIN (and so to -128)."""
    return np.clip(values, -(1 << 31), 1 << 31).astype(np.int64)


def dequantize_output(q: np.ndarray, params: QuantParams) -> np.ndarray:
    return (scale_of(params) * (q.astype(np.float64) - zero_point_of(params))).astype(F32)


INT8_KERNELS: dict[str, Kernel] = {
    "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _depthwise, "FULLY_CONNECTED": _fully_connected,
    "ADD": _add, "MUL": _mul, "MAX_POOL_2D": _pool, "AVERAGE_POOL_2D": _pool, "MEAN": _mean,
    "SOFTMAX": _softmax, "RESHAPE": _reshape, "CONCATENATION": _concat, "PAD": _pad,
    "RELU": _relu_family, "RELU6": _relu_family, "RELU_N1_TO_1": _relu_family,
    "QUANTIZE": _quantize, "DEQUANTIZE": _dequantize,
}

__all__ = ["INT8_KERNELS", "activation_range", "add_multipliers", "channel_multipliers",
           "dequantize_output", "fc_multipliers", "fc_weight_offset", "mean_multiplier",
           "quant_of", "quantize_input", "relu_multiplier", "round_half_away", "scale_of",
           "softmax_multiplier", "softmax_s8", "zero_point_of"]
