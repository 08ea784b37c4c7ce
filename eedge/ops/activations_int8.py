"""int8 arithmetic of TFLite Micro's unary activation kernels, bit for bit, in numpy.

Each function first derives the integer parameters the way the kernel's
Prepare does (which products are float32 and which double decides the last
bit of a multiplier), then runs Eval's integer arithmetic. Read from
tflite-micro's ``logistic_common.cc``, ``tanh.cc``, ``hard_swish_common.cc``,
``leaky_relu_common.cc``, ``prelu_common.cc``, ``elu.cc``, ``elementwise.cc``
(RSQRT) and the reference kernels they call; GELU from LiteRT's ``gelu.cc``
(tflite-micro has no GELU kernel):

* LOGISTIC and TANH rescale the input to gemmlowp Q4.27 and evaluate
  gemmlowp's fixed-point ``logistic``/``tanh``; inputs beyond a radius
  saturate. Their output parameters are fixed (1/256, -128 and 1/128, 0):
  the kernels never read the output scale.
* HARD_SWISH works in int16 (gemmlowp's 16-bit doubling multiplies, Q15
  multipliers rounded down from Q31).
* LEAKY_RELU and PRELU requantize each sign with its own multiplier (ratios
  in double; for LEAKY_RELU that is what tflite-micro's Python interpreter
  does, not its mirrored sources, see :func:`leaky_relu_params`).
* ELU is a 256-entry table filled in float32 at Prepare; so is GELU (LiteRT's
  ``LUTPopulate`` with ``GeluTransform``: float32 erfc, or the tanh form).
* RSQRT is integer arithmetic per element: gemmlowp's Newton inverse square
  root of the offset input, then two requantizations with a fixed shift of 20.

Every op except PRELU (whose answer also depends on the channel's alpha)
maps one input byte to one output byte, which is what the C runtime's
lookup tables exploit (see :func:`lookup_table`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from eedge.errors import ModelError
from eedge.ir.graph import Graph, Node
from eedge.reference.fixedpoint import (INT32_MAX, exp_on_negative_values,
                                        inv_sqrt_quantized_multiplier_exp,
                                        multiply_by_quantized_multiplier,
                                        one_minus_x_over_one_plus_x, one_over_one_plus_x,
                                        quantize_multiplier, rdbpot, round_half_away,
                                        round_half_away_f32, trunc_div)
from eedge.reference.int8_kernels import quant_of, scale_of, zero_point_of

F32 = np.float32
INPUT_INTEGER_BITS = 4   # LOGISTIC and TANH evaluate on gemmlowp Q4.27 inputs
INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1


# -- gemmlowp fixed point that eedge.reference.fixedpoint does not have -------------------

def exp_on_negative_q4(a: np.ndarray) -> np.ndarray:
    """gemmlowp ``exp_on_negative_values`` for Q4.27 inputs (x <= 0), result in Q0.31."""
    return exp_on_negative_values(a, INPUT_INTEGER_BITS)


def logistic_q4(a: np.ndarray) -> np.ndarray:
    """gemmlowp ``logistic`` of Q4.27 values, Q0.31 results."""
    a = np.asarray(a, dtype=np.int64)
    positive = a > 0
    magnitude = np.where(positive, a, -a)
    if_positive = one_over_one_plus_x(exp_on_negative_q4(-magnitude))
    return np.where(a == 0, 1 << 30, np.where(positive, if_positive, INT32_MAX - if_positive))


def tanh_q4(a: np.ndarray) -> np.ndarray:
    """gemmlowp ``tanh`` of Q4.27 values, Q0.31 results.

    exp(-2|x|) is gemmlowp's exp of the same raw bits read as Q5.26.
    """
    a = np.asarray(a, dtype=np.int64)
    negative = a < 0
    t = one_minus_x_over_one_plus_x(exp_on_negative_values(np.where(negative, a, -a)))
    return np.where(a == 0, 0, np.where(negative, -t, t))


# -- LOGISTIC / TANH -------------------------------------------------------------------

def q4_input_params(node: Node, in_scale: float) -> tuple[int, int, int]:
    """(multiplier, left shift, input radius) rescaling input steps to Q4.27, as Prepare does.

    Prepare takes frexp of scale * 2^27 itself (not QuantizeMultiplier), and
    the radius is the largest input step whose Q4.27 value stays below 15.
    """
    real = float(F32(in_scale)) * float(1 << (31 - INPUT_INTEGER_BITS))
    mantissa, shift = math.frexp(real)
    multiplier = int(round_half_away(mantissa * (1 << 31)))
    if multiplier >= (1 << 31) or shift < 0:
        raise ModelError(f"{node.op_type} {node.name!r}: input scale {in_scale:.3g} is below "
                         "the range TFLite's fixed-point kernel can rescale (2^-28)")
    # from shift 31 on (scale >= 8) the radius is 0: every input saturates, none is rescaled
    radius = math.floor(((1 << INPUT_INTEGER_BITS) - 1) * (1 << (31 - INPUT_INTEGER_BITS))
                        / (1 << shift))
    return multiplier, shift, radius


def _saturating_q4(node: Node, g: Graph, x: np.ndarray, function, out_bits: int,
                   out_zero: int) -> np.ndarray:
    """LOGISTIC and TANH: the Q4.27 function inside the radius, the int8 ends outside."""
    in_q = quant_of(g, node.inputs[0])
    multiplier, shift, radius = q4_input_params(node, scale_of(in_q))
    steps = x.astype(np.int64) - zero_point_of(in_q)
    inside = np.clip(steps, -radius, radius)    # the kernel never rescales outer values
    value = function(multiply_by_quantized_multiplier(inside, multiplier, shift))
    out = np.clip(rdbpot(value, 31 - out_bits) + out_zero, -128, 127)
    out = np.where(steps <= -radius, -128, np.where(steps >= radius, 127, out))
    return out.astype(np.int8)


def logistic_s8(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    """TFLM's int8 LOGISTIC: output Q0.8 with zero point -128 (the output scale is not read)."""
    return _saturating_q4(node, g, args[0], logistic_q4, 8, -128)


def tanh_s8(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    """TFLM's int8 TANH: output Q0.7 with zero point 0 (the output parameters are not read)."""
    return _saturating_q4(node, g, args[0], tanh_q4, 7, 0)


# -- HARD_SWISH --------------------------------------------------------------------------

def _q15(multiplier: int) -> int:
    """DownScaleInt32ToInt16Multiplier: a Q31 multiplier rounded to Q15."""
    return INT16_MAX if multiplier >= INT32_MAX - (1 << 15) else (multiplier + (1 << 15)) >> 16


def hard_swish_params(node: Node, in_scale: float, out_scale: float) -> tuple[int, int, int, int]:
    """(output Q15 multiplier, its exponent, reluish Q15 multiplier, its exponent).

    The scale ratios are float32 quotients of float32 products, widened to double.
    """
    hires = F32(1.0 / 128.0) * F32(in_scale)
    out_m, out_e = quantize_multiplier(float(F32(hires / F32(out_scale))))
    relu_m, relu_e = quantize_multiplier(float(F32(hires / F32(3.0 / 32768.0))))
    if out_e > 0:
        raise ModelError(f"HARD_SWISH {node.name!r}: input scale {in_scale:.3g} and output "
                         f"scale {out_scale:.3g} give output exponent {out_e}; TFLite's kernel "
                         "needs an input scale below 128 x the output scale")
    return _q15(out_m), out_e, _q15(relu_m), relu_e


def _srdhm16(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp's int16 SaturatingRoundingDoublingHighMul."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    result = trunc_div(ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14)), 1 << 15)
    return np.where((a == INT16_MIN) & (b == INT16_MIN), INT16_MAX, result)


def _rdbpot16(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT on int16 values.

    From 16 on, its mask (2^exponent - 1 cast to int16) is -1 and the result is
    1 for x >= 0 and -1 below (what TFLM computes for such scales), not a rounding.
    """
    if exponent < 16:
        return rdbpot(x, exponent)
    x = np.asarray(x, np.int64)
    return np.where(x >= 0, 1, -1)


def _shift16(x: np.ndarray, amount: int) -> np.ndarray:
    """TFLite's int16 SaturatingLeftShift."""
    return np.clip(np.asarray(x, np.int64) * (1 << amount), INT16_MIN, INT16_MAX)


def hard_swish_s8(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    out_m, out_e, relu_m, relu_e = hard_swish_params(node, scale_of(in_q), scale_of(out_q))
    hires = (args[0].astype(np.int64) - zero_point_of(in_q)) * 128
    preshift_out = _srdhm16(hires, out_m)
    reluish = hires
    if relu_e > 0:
        reluish = _shift16(reluish, relu_e - 1)
    reluish = _srdhm16(reluish, relu_m)
    if relu_e > 0:
        reluish = _shift16(reluish, 1)
    elif relu_e < 0:
        reluish = _rdbpot16(reluish, -relu_e)
    reluish = (reluish + (1 << 15)) >> 1           # [-1, 1] -> [0, 1] in Q15
    product = trunc_div(reluish * preshift_out, 1 << 15)   # never both -2^15: reluish >= 0
    out = _rdbpot16(product, -out_e) + zero_point_of(out_q)
    return np.clip(out, -128, 127).astype(np.int8)


# -- LEAKY_RELU / PRELU ------------------------------------------------------------------

def leaky_relu_params(in_scale: float, out_scale: float, alpha: float) -> tuple[int, ...]:
    """(identity multiplier, shift, alpha multiplier, shift), from double ratios of the
    float32 scales and alpha.

    Measured against tflite-micro 0.dev20261023 (the oracle): the float32
    ratios of the TFLM sources mirrored here (and of LiteRT's reference
    kernel) give other bytes on exact ties, e.g. scales 0.05 -> 0.04 with
    alpha 1 (-117.5 must become -118), and 0.05 -> 6/255 for the identity.
    """
    s_in, s_out = float(F32(in_scale)), float(F32(out_scale))
    m_id, s_id = quantize_multiplier(s_in / s_out)
    m_alpha, s_alpha = quantize_multiplier(s_in * float(F32(alpha)) / s_out)
    return m_id, s_id, m_alpha, s_alpha


def leaky_relu_s8(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    m_id, s_id, m_alpha, s_alpha = leaky_relu_params(scale_of(in_q), scale_of(out_q),
                                                     float(node.attrs.get("alpha", 0.0)))
    steps = args[0].astype(np.int64) - zero_point_of(in_q)
    # a negative alpha multiplier is applied as its magnitude, then negated
    negative = multiply_by_quantized_multiplier(steps, abs(m_alpha), s_alpha)
    negative = -negative if m_alpha < 0 else negative
    out = np.where(steps >= 0, multiply_by_quantized_multiplier(steps, m_id, s_id), negative)
    return np.clip(out + zero_point_of(out_q), -128, 127).astype(np.int8)


def prelu_params(in_scale: float, alpha_scale: float, out_scale: float) -> tuple[int, ...]:
    """(identity multiplier, shift, alpha multiplier, shift): double ratios, as Prepare has."""
    s_in, s_alpha, s_out = (float(F32(s)) for s in (in_scale, alpha_scale, out_scale))
    return quantize_multiplier(s_in / s_out) + quantize_multiplier(s_in * s_alpha / s_out)


def prelu_s8(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, alpha = args[0], args[1]
    in_q, alpha_q = quant_of(g, node.inputs[0]), quant_of(g, node.inputs[1])
    out_q = quant_of(g, node.outputs[0])
    m1, s1, m2, s2 = prelu_params(scale_of(in_q), scale_of(alpha_q), scale_of(out_q))
    steps = x.astype(np.int64) - zero_point_of(in_q)
    slope = np.asarray(alpha, np.int64) - zero_point_of(alpha_q)
    steps, slope = np.broadcast_arrays(steps, slope)
    out = np.where(steps >= 0, multiply_by_quantized_multiplier(steps, m1, s1),
                   multiply_by_quantized_multiplier(steps * slope, m2, s2))
    return np.clip(out + zero_point_of(out_q), -128, 127).astype(np.int8)


# -- ELU ---------------------------------------------------------------------------------

def elu_s8(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    """TFLM's int8 ELU: a table filled in float32 (expf(x) - 1 below zero), then looked up."""
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    values = np.arange(-128, 128)
    x = F32(scale_of(in_q)) * (values - zero_point_of(in_q)).astype(F32)
    # expf is correctly rounded here (double exp, rounded once), as glibc's is in practice
    below = np.exp(np.minimum(x, 0).astype(np.float64)).astype(F32) - F32(1.0)
    curve = np.where(x < 0, below, x)
    inverse = F32(1.0) / F32(scale_of(out_q))
    rescaled = round_half_away_f32((curve * inverse).astype(F32))
    table = np.clip(rescaled + F32(zero_point_of(out_q)), -128, 127).astype(np.int8)
    return table[args[0].astype(np.int64) + 128]


# -- GELU (LiteRT's table; tflite-micro has no GELU kernel) ----------------------------

SQRT_2_OVER_PI = F32(math.sqrt(2.0 / math.pi))   # gelu.h's kSqrt2dPi (a float constexpr)
_ERFC = np.frompyfunc(math.erfc, 1, 1)


def erfc_f32(x: np.ndarray) -> np.ndarray:
    """``std::erfc(float)``: erfc in double, rounded once to float32 (glibc's erfcf is that
    on the values measured: every table of tests/ops/test_transformer_elementwise.py)."""
    return _ERFC(np.asarray(x, np.float64)).astype(np.float64).astype(F32)


def erf_f32(x: np.ndarray) -> np.ndarray:
    """erf in double, rounded once to float32 (the float kernel's exact GELU)."""
    return np.frompyfunc(math.erf, 1, 1)(np.asarray(x, np.float64)).astype(np.float64).astype(F32)


def gelu_f32(x: np.ndarray, approximate: bool) -> np.ndarray:
    """LiteRT's ``GeluTransform``/``GeluTransformApproximate`` in float32, operation by operation.

    Exact: ``0.5f * x * erfc(x * -float(M_SQRT1_2))`` (LiteRT 2.x; the older erf form in
    double gives other bytes on 17 of 363 exact-ratio scale sets, measured). Approximate:
    ``0.5f * x * (1 + tanh(kSqrt2dPi * (x + 0.044715f * x^3)))`` with x^3 as x*x*x.
    """
    x = np.asarray(x, F32)
    half = (F32(0.5) * x).astype(F32)
    if not approximate:
        return (half * erfc_f32((x * F32(-math.sqrt(0.5))).astype(F32))).astype(F32)
    cube = (((F32(0.044715) * x).astype(F32) * x).astype(F32) * x).astype(F32)
    inner = (SQRT_2_OVER_PI * (x + cube).astype(F32)).astype(F32)
    tanh = np.tanh(inner.astype(np.float64)).astype(F32)
    return (half * (F32(1) + tanh).astype(F32)).astype(F32)


def float_table(node: Node, g: Graph, transform) -> np.ndarray:
    """``LUTPopulate<int8_t>``: dequantize each byte in float32, transform, ``roundf(y / s_out)``
    computed as ``y * (1 / s_out)``, add the zero point, clamp (indexed by value + 128)."""
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    values = np.arange(-128, 128)
    x = (F32(scale_of(in_q)) * (values - zero_point_of(in_q)).astype(F32)).astype(F32)
    inverse = F32(1.0) / F32(scale_of(out_q))
    rescaled = round_half_away_f32((transform(x) * inverse).astype(F32))
    return np.clip(rescaled + F32(zero_point_of(out_q)), -128, 127).astype(np.int8)


def gelu_s8(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    """LiteRT's int8 GELU: the float32 table of :func:`gelu_f32`, looked up."""
    approximate = bool(node.attrs.get("approximate", False))
    table = float_table(node, g, lambda x: gelu_f32(x, approximate))
    return table[args[0].astype(np.int64) + 128]


# -- RSQRT ---------------------------------------------------------------------------------

RSQRT_SHIFT = 20   # elementwise.cc's kShift: headroom of the intermediate 1/sqrt value


def rsqrt_params(node: Node, in_scale: float, out_scale: float) -> tuple[int, int]:
    """(multiplier, shift) of ``1 / (sqrtf(s_in) * s_out)``: the square root and the product
    are float32 (``std::sqrt`` of a float), the reciprocal double, as Prepare has it."""
    product = F32(np.sqrt(F32(in_scale))) * F32(out_scale)
    multiplier, shift = quantize_multiplier(1.0 / float(product))
    # Eval right-shifts by 20 - shift (at most 31), or left-shifts the 1/sqrt value (at most
    # 2^20, x - zero point = 1) by shift - 20, which stays in an int32 up to shift 30: an
    # output scale far below the input's (LayerNorm's 1/std, shift 12) is fine.
    if shift - RSQRT_SHIFT < -31 or shift > 30:
        raise ModelError(f"RSQRT {node.name!r}: scales {in_scale:.3g} -> {out_scale:.3g} give a "
                         f"rescaling shift of {shift}; TFLite's kernel shifts by {shift} - 20, "
                         "which must stay within an int32")
    return multiplier, shift


def rsqrt_s8(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    """TFLM's int8 RSQRT (``RsqrtEvalQuantized``), per element.

    x - zero point = 0 gives 127 (the kernel's "largest output"). Below the zero point
    TFLM's Eval fails ("Rsqrt is only defined for positive values"); eedge gives those
    bytes the zero input's 127 too, so the C table and fused byte chains stay defined.
    """
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    multiplier, shift = rsqrt_params(node, scale_of(in_q), scale_of(out_q))
    value = np.maximum(args[0].astype(np.int64) - zero_point_of(in_q), 0)
    inv_m, inv_shift = inv_sqrt_quantized_multiplier_exp(value)
    data = multiply_by_quantized_multiplier(np.ones_like(value), inv_m, inv_shift + RSQRT_SHIFT)
    out = multiply_by_quantized_multiplier(data, multiplier, shift - RSQRT_SHIFT)
    out = np.clip(out + zero_point_of(out_q), -128, 127)
    return np.where(value == 0, 127, out).astype(np.int8)


# -- the C runtime's form ----------------------------------------------------------------

def lookup_table(kernel, node: Node, g: Graph) -> np.ndarray:
    """The 256 output bytes of a byte-to-byte kernel, indexed by the input byte as uint8.

    Evaluating the reference kernel itself on every int8 value makes the C
    runtime's table lookup equal to it by construction.
    """
    every = np.arange(-128, 128, dtype=np.int8)
    out = np.asarray(kernel(node, g, [every]), np.int8).reshape(-1)
    return np.concatenate([out[128:], out[:128]])   # uint8 order: 0..127, then -128..-1
