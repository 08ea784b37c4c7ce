"""ONNX activations lowered to the TFLite dialect (NHWC), the way TFLite converters write them.

Sigmoid, Tanh, HardSwish, LeakyRelu, Elu map one to one. PRelu's slope is
broadcast against the NCHW input and transposed to NHWC (torch's
``nn.PReLU(C)`` exports it as (1, C, 1, 1), which becomes (1, 1, 1, C)).
HardSigmoid has no TFLite builtin: TensorFlow's ``hard_sigmoid`` is
``relu6(x + 3) / 6``, so it becomes ADD(3) -> RELU6 -> MUL(1/6), with a
MUL(6 alpha) in front when alpha is not 1/6 (``max(0, min(1, a x + b))`` is
``relu6(6a x + 6b) / 6``). torch exports SiLU as Sigmoid and a Mul of two
activations (LOGISTIC and MUL); ONNX's own Swish (opset 24) lowers the same way.
Gelu (opset 20) maps to GELU, its ``approximate`` string ("none" / "tanh") to
GeluOptions' boolean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eedge.ir.graph import Node
from eedge.ops.registry import Lowering, register_lowering

F32 = np.float32


def _unary(op: str, **attrs: Any):
    def lower(lw: Any, node: Node) -> None:
        _activation(lw, node, op, lw.name(node.inputs[0]), node.outputs[0], **attrs)
    return lower


def _activation(lw: Any, node: Node, op: str, x: str, out: str, *others: str,
                **attrs: Any) -> None:
    """One elementwise node: same shape as the ONNX output, flattening order carried over."""
    lw.define(out, lw.src_shape(node.outputs[0]))
    if x in lw.perm:
        lw.perm[out] = lw.perm[x]
    lw.emit(op, node, [x, *others], out, **attrs)


def _leaky_relu(lw: Any, node: Node) -> None:
    alpha = float(F32(node.attrs.get("alpha", 0.01)))
    _activation(lw, node, "LEAKY_RELU", lw.name(node.inputs[0]), node.outputs[0], alpha=alpha)


def _elu(lw: Any, node: Node) -> None:
    alpha = float(node.attrs.get("alpha", 1.0))
    if alpha != 1.0:
        raise lw.unsupported(node, f"Elu with alpha {alpha:g}: TFLite's ELU is alpha 1 "
                                   "(use torch.nn.ELU() with its default alpha)")
    _activation(lw, node, "ELU", lw.name(node.inputs[0]), node.outputs[0])


def _gelu(lw: Any, node: Node) -> None:
    approximate = node.attrs.get("approximate", "none")
    if isinstance(approximate, bytes):
        approximate = approximate.decode()
    if approximate not in ("none", "tanh"):
        raise lw.unsupported(node, f"Gelu with approximate={approximate!r}: ONNX defines "
                                   "'none' and 'tanh'")
    _activation(lw, node, "GELU", lw.name(node.inputs[0]), node.outputs[0],
                approximate=approximate == "tanh")


def nhwc_slope(slope: np.ndarray, x_rank: int) -> np.ndarray:
    """An ONNX slope broadcastable to an NCHW/NCL/2-D input, in the lowered input's layout."""
    from eedge.passes.lower_tflite import NCHW_TO_NHWC, nchw_view

    if slope.ndim > x_rank:
        raise ValueError(f"a slope of rank {slope.ndim} for an input of rank {x_rank}")
    full = slope.reshape((1,) * (x_rank - slope.ndim) + slope.shape)
    if x_rank in (3, 4):
        full = full.reshape(nchw_view(full.shape)).transpose(NCHW_TO_NHWC)
    return full


def _prelu(lw: Any, node: Node) -> None:
    x = lw.name(node.inputs[0])
    slope = lw.const_of(node, 1, "slope").astype(F32)
    rank = len(lw.src_shape(node.inputs[0]))
    try:
        alpha = nhwc_slope(slope, rank)
        np.broadcast_shapes(alpha.shape, tuple(int(d) if isinstance(d, int) else 1
                                               for d in lw.tensors[x].shape))
    except ValueError:
        raise lw.unsupported(node, f"slope of shape {list(slope.shape)} does not broadcast "
                                   "against the input") from None
    if x in lw.perm:   # a flattened channels-first tensor: permute a full-width slope
        perm = lw.perm[x]
        if alpha.ndim == 2 and alpha.shape[1] == perm.size:
            alpha = alpha[:, perm]
        elif alpha.size > 1:
            raise lw.unsupported(node, "a per-element slope on a flattened tensor")
    name = lw.const(f"{node.name}/alpha", np.ascontiguousarray(alpha, F32))
    _activation(lw, node, "PRELU", x, node.outputs[0], name)


def _hard_sigmoid(lw: Any, node: Node) -> None:
    alpha = F32(node.attrs.get("alpha", 0.2))
    beta = F32(node.attrs.get("beta", 0.5))
    x, out, base = lw.name(node.inputs[0]), node.outputs[0], node.name

    def step(op: str, src: str, constant: float | None, dst: str) -> str:
        lw.define(dst, lw.src_shape(out))
        if src in lw.perm:
            lw.perm[dst] = lw.perm[src]
        inputs = [src]
        if constant is not None:
            inputs.append(lw.const(f"{dst}/operand", np.array(constant, F32)))
        attrs = {"activation": "NONE"} if op in ("ADD", "MUL") else {}
        lw.emit(op, node, inputs, dst, **attrs)
        return dst

    if F32(6) * alpha != F32(1):
        x = step("MUL", x, float(F32(6) * alpha), f"{base}/scaled")
    x = step("ADD", x, float(F32(6) * beta), f"{base}/shifted")
    x = step("RELU6", x, None, f"{base}/relu6")
    step("MUL", x, float(F32(1) / F32(6)), out)


def _swish(lw: Any, node: Node) -> None:
    """ONNX Swish (opset 24): x * sigmoid(alpha x), LOGISTIC and a MUL of two activations, as
    torch's SiLU export (Sigmoid, Mul) lowers; a MUL by alpha first when alpha is not 1."""
    alpha = F32(node.attrs.get("alpha", 1.0))
    x, out = lw.name(node.inputs[0]), node.outputs[0]
    gate_input = x
    if alpha != F32(1):
        gate_input = f"{node.name}/scaled"
        _activation(lw, node, "MUL", x, gate_input,
                    lw.const(f"{gate_input}/operand", np.array(alpha, F32)), activation="NONE")
    gate = f"{node.name}/sigmoid"
    _activation(lw, node, "LOGISTIC", gate_input, gate)
    _activation(lw, node, "MUL", x, out, gate, activation="NONE")


register_lowering(Lowering("Sigmoid", "sigmoid", _unary("LOGISTIC"), ("LOGISTIC",)))
register_lowering(Lowering("Tanh", "tanh", _unary("TANH"), ("TANH",)))
register_lowering(Lowering("HardSwish", "hard swish (torch nn.Hardswish)",
                           _unary("HARD_SWISH"), ("HARD_SWISH",)))
register_lowering(Lowering("LeakyRelu", "leaky ReLU", _leaky_relu, ("LEAKY_RELU",)))
register_lowering(Lowering("PRelu", "parametric ReLU (constant slope, per channel or scalar)",
                           _prelu, ("PRELU",)))
register_lowering(Lowering("Elu", "ELU (alpha 1)", _elu, ("ELU",)))
register_lowering(Lowering("Gelu", "GELU, erf or tanh form (ONNX opset 20)", _gelu, ("GELU",)))
register_lowering(Lowering("HardSigmoid", "hard sigmoid (as MUL, ADD, RELU6 and MUL by 1/6)",
                           _hard_sigmoid, ("MUL", "ADD", "RELU6")))
register_lowering(Lowering("Swish", "x * sigmoid(alpha x) (ONNX opset 24)", _swish,
                           ("LOGISTIC", "MUL")))
