"""Quantization checks of the TFLite reader: parameters the int8 arithmetic can use.

Runtimes trust a file's quantization: an int8 zero point of -2e9 makes the
generated C overflow (``x + offset`` on int32), a per-channel zero point of 5
is silently ignored by TFLM's convolutions, and a scale ratio whose
multiplier needs a left shift past 30 bits is outside what TFLite's
``QuantizeMultiplier``/``MultiplyByQuantizedMultiplier`` pair supports. So
the reader checks the parameters against the TFLite quantization spec, and
derives every multiplier/shift the kernels will use (with the kernels' own
functions) to check they are representable, before anything runs or is
generated. Each failure is one :class:`ModelError` line.
"""

from __future__ import annotations

import math

import numpy as np

from eedge.errors import ModelError
from eedge.ir.graph import Graph, Node
from eedge.ops import registry

# A real model's scales sit many decades inside this range; outside it, float32
# products/quotients of scales (and of scales with data) overflow or underflow.
MIN_SCALE = 2.0 ** -100
MAX_SCALE = 2.0 ** 100
# MultiplyByQuantizedMultiplier's contract in TFLite: a Q31 multiplier in [0, 2^31)
# and -31 <= shift <= 30 (a positive shift is a left shift of the int32 accumulator).
MIN_SHIFT, MAX_SHIFT = -31, 30
_ZERO_POINT_RANGE = {"int8": (-128, 127), "int32": (0, 0), "int64": (0, 0)}
# Weight tensors: the dimension per-channel scales must run along (the output channel).
_CHANNEL_AXIS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}


def _err(message: str) -> ModelError:
    return ModelError(f"invalid TFLite model: {message}")


def check_quant_params(tname: str, dtype: str, scales: np.ndarray,
                       zero_points: np.ndarray) -> None:
    """Scales finite and in range; zero points in the range the tensor's type allows."""
    if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
        raise _err(f"tensor {tname!r} has a non-positive or non-finite scale")
    if np.any(scales < MIN_SCALE) or np.any(scales > MAX_SCALE):
        bad = float(scales[(scales < MIN_SCALE) | (scales > MAX_SCALE)][0])
        raise _err(f"tensor {tname!r} has scale {bad:.3g}, outside 2^-100..2^100")
    low, high = _ZERO_POINT_RANGE.get(dtype, (-(1 << 31), (1 << 31) - 1))
    if np.any(zero_points < low) or np.any(zero_points > high):
        bad = int(zero_points[(zero_points < low) | (zero_points > high)][0])
        allowed = "0" if low == high else f"{low}..{high}"
        raise _err(f"tensor {tname!r} ({dtype}) has zero point {bad}; it must be {allowed}")


def check_activation_quant(tname: str, scales: tuple[float, ...]) -> None:
    """Activations have one scale: kernels read only the first of a per-channel list."""
    if len(scales) != 1:
        raise _err(f"activation tensor {tname!r} has {len(scales)} scales; activations are "
                   "quantized per tensor")


def check_weight_quant(node: Node, graph: Graph) -> None:
    """Conv weights are symmetric; per-channel scales run along the output channel."""
    if len(node.inputs) < 2 or node.inputs[1] not in graph.const_quant:
        return
    w_name = node.inputs[1]
    w_q = graph.const_quant[w_name]
    per_channel = len(w_q.scale) > 1
    if per_channel and w_q.axis != _CHANNEL_AXIS[node.op_type]:
        raise _err(f"{node.name}: per-channel weight scales of {w_name!r} run along dimension "
                   f"{w_q.axis}; {node.op_type} needs dimension {_CHANNEL_AXIS[node.op_type]} "
                   "(the output channels)")
    # TFLM ignores the zero points of per-channel weights and of any convolution's
    # weights: a non-zero one would silently be dropped.
    if (per_channel or node.op_type != "FULLY_CONNECTED") and any(w_q.zero_point):
        raise _err(f"{node.name}: weights {w_name!r} have a non-zero zero point; "
                   f"{'per-channel' if per_channel else node.op_type} weights are symmetric "
                   "(zero point 0) in TFLite")


def _derived(node: Node, graph: Graph) -> list[tuple[int, int]]:
    """Every (multiplier, shift) the int8 kernels derive for NODE, the kernels' way."""
    from eedge.reference import int8_kernels as k

    op = node.op_type
    out_q = k.quant_of(graph, node.outputs[0])
    pairs: list[tuple[int, int]] = []
    if "activation" in node.attrs and node.attrs["activation"] is not None:
        k.activation_range(node.attrs["activation"], out_q)
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = graph.constants[node.inputs[1]]
        channels = w.shape[0] if op == "CONV_2D" else w.shape[3]
        mult, shift = k.channel_multipliers(k.scale_of(k.quant_of(graph, node.inputs[0])),
                                            k.quant_of(graph, node.inputs[1]),
                                            k.scale_of(out_q), channels)
        pairs += list(zip(mult.tolist(), shift.tolist()))
    elif op == "FULLY_CONNECTED":
        mult, shift = k.fc_multipliers(graph, node)
        pairs += list(zip(mult.tolist(), shift.tolist()))
    elif op == "ADD":
        m1, s1, m2, s2, mo, so = k.add_multipliers(
            node, k.scale_of(k.quant_of(graph, node.inputs[0])),
            k.scale_of(k.quant_of(graph, node.inputs[1])), k.scale_of(out_q))
        pairs += [(m1, s1), (m2, s2), (mo, so)]
    elif op == "MUL":
        s1 = k.scale_of(k.quant_of(graph, node.inputs[0]))
        s2 = k.scale_of(k.quant_of(graph, node.inputs[1]))
        pairs.append(k.quantize_multiplier(s1 * s2 / k.scale_of(out_q)))
    elif op == "SOFTMAX":
        beta = float(node.attrs.get("beta", 1.0))
        if not math.isfinite(beta) or beta <= 0:
            raise _err(f"{node.name}: softmax beta {beta} must be finite and positive")
        k.softmax_multiplier(k.scale_of(k.quant_of(graph, node.inputs[0])), beta)
    elif op in ("RELU", "RELU6", "RELU_N1_TO_1"):
        pairs.append(k.relu_multiplier(op, k.scale_of(k.quant_of(graph, node.inputs[0])),
                                       k.scale_of(out_q)))
        k.activation_range(op, out_q)
    elif (registered := registry.builtin(op)) is not None:
        if registered.derived_multipliers is not None:
            pairs += registered.derived_multipliers(node, graph)
    elif op in ("MEAN", "QUANTIZE") and graph.tensors.get(node.inputs[0]) is not None \
            and graph.tensors[node.inputs[0]].dtype == "int8":
        pairs.append(k.quantize_multiplier(k.scale_of(k.quant_of(graph, node.inputs[0])) /
                                           k.scale_of(out_q)))
    return pairs


def check_requantization(graph: Graph) -> None:
    """Each int8 node's derived multipliers and shifts are representable (one line if not)."""
    for node in graph.nodes:
        out = graph.tensors[node.outputs[0]]
        if out.dtype != "int8":
            continue
        if node.op_type in _CHANNEL_AXIS:
            check_weight_quant(node, graph)
        try:
            with np.errstate(over="raise", invalid="raise", divide="raise"):
                pairs = _derived(node, graph)
        except (OverflowError, ValueError, ZeroDivisionError, FloatingPointError) as exc:
            raise _err(f"{node.name}: its scales give a requantization outside TFLite's "
                       f"fixed-point range ({exc})") from None
        for multiplier, shift in pairs:
            if not 0 <= multiplier < (1 << 31) or not MIN_SHIFT <= shift <= MAX_SHIFT:
                raise _err(f"{node.name}: its scales give multiplier {multiplier} with shift "
                           f"{shift}; TFLite's fixed-point requantization supports shifts "
                           f"{MIN_SHIFT}..{MAX_SHIFT} (input scale x weight scale / output "
                           "scale is out of range)")
