"""The operator set eedge accepts from any frontend.

The set is the intersection of what every eedge backend can lower: each
operator here has a TFLite builtin (CONV_2D/DEPTHWISE_CONV_2D,
FULLY_CONNECTED, ADD, MUL, pools, MEAN, RESHAPE, CONCATENATION, PAD,
SOFTMAX) and a C kernel. Accepting more would produce bundles that export
to ONNX but fail later at the int8 or firmware step, which is worse than a
clear error at the door.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

SUPPORTED_OPS: dict[str, str] = {
    "Conv": "1-D and 2-D convolution (grouped/depthwise included)",
    "Gemm": "fully connected layer",
    "MatMul": "matrix product with a constant right-hand side",
    "Add": "elementwise add (residual connections)",
    "Mul": "elementwise multiply",
    "Relu": "ReLU",
    "Clip": "ReLU6 / clamping",
    "MaxPool": "1-D and 2-D max pooling",
    "AveragePool": "1-D and 2-D average pooling",
    "GlobalAveragePool": "global average pooling",
    "ReduceMean": "mean over axes",
    "Flatten": "flatten",
    "Reshape": "reshape",
    "Squeeze": "drop size-1 axes",
    "Unsqueeze": "add size-1 axes",
    "Concat": "concatenation",
    "Pad": "constant padding",
    "BatchNormalization": "batch norm (inference; folded, or a 1x1 depthwise conv)",
    "Softmax": "softmax",
    "Identity": "identity",
    "Dropout": "dropout (inference: identity)",
}

def supported_onnx_ops() -> dict[str, str]:
    """Every ONNX operator eedge accepts: the table above and the registry's lowerings."""
    from eedge.ops.registry import lowerings
    ops = dict(SUPPORTED_OPS)
    ops.update({name: op.summary for name, op in lowerings().items()})
    return ops


MAC_OPS = frozenset({"Conv", "Gemm", "MatMul"})
"""Operators whose cost is counted as multiply-accumulates."""

_FUSED_ATTENTION = ("fused attention operators are not supported: export with torch.onnx.export "
                    "defaults, which write attention as MatMul, Softmax and Transpose (supported)")
_RECURRENT = ("fused recurrent builtins are not supported: export the model to ONNX instead "
              "(eedge unrolls ONNX GRU, LSTM and RNN over their fixed sequence length)")
ONNX_ALTERNATIVES: dict[str, str] = {
    "Attention": _FUSED_ATTENTION, "MultiHeadAttention": _FUSED_ATTENTION,
    "Erf": ("eedge fuses GELU's x * 0.5 * (1 + erf(x / sqrt(2))) into Gelu; this Erf is not "
            "part of that exact formula (check its constants, or use nn.GELU)"),
    "SkipLayerNormalization": "use LayerNormalization after an Add (what torch exports)",
    "RotaryEmbedding": _FUSED_ATTENTION,
    "Upsample": "use Resize (re-export with opset 13 or newer)",
    "Mish": "use HardSwish, or SiLU (Sigmoid times its input)",
    "Swish": "use SiLU (Sigmoid times its input) or HardSwish",
    "Selu": "use Elu", "Celu": "use Elu",
    "LogSoftmax": "return logits (exits are logits) or use Softmax",
    "ArgMax": "return the logits: the cascade takes the argmax itself",
    "InstanceNormalization": "use BatchNormalization",
    "GroupNormalization": "use BatchNormalization",
    "Einsum": "use MatMul with a constant right-hand side",
    "Shape": ("eedge folds shapes it can infer; this one depends on a dimension it cannot: "
              "pass --input-shape with fixed sizes or re-export with fixed input sizes"),
    "ConstantOfShape": ("eedge folds it when its shape is known; pass --input-shape with fixed "
                        "sizes or re-export with fixed input sizes"),
    "Expand": ("eedge folds Expand of constants; for an activation rely on Add/Mul "
               "broadcasting instead of an explicit Expand"),
    "Tile": "use Concat of the same tensor",
    "ReduceMin": "use ReduceMax of the input multiplied by -1",
    "Neg": "use Mul by -1", "Abs": "use Relu(x) + Relu(-x)",
    "Sqrt": "no math functions beyond the table: fold them into constants before export",
    "Exp": "no math functions beyond the table: fold them into constants before export",
    "Log": "no math functions beyond the table: fold them into constants before export",
    "Pow": "no math functions beyond the table: fold them into constants before export",
}
"""Hand-written advice for common ONNX operators eedge does not support."""

TFLITE_ALTERNATIVES: dict[str, str] = {
    "UNIDIRECTIONAL_SEQUENCE_LSTM": _RECURRENT, "BIDIRECTIONAL_SEQUENCE_LSTM": _RECURRENT,
    "LSTM": _RECURRENT, "UNIDIRECTIONAL_SEQUENCE_RNN": _RECURRENT, "RNN": _RECURRENT,
    "SVDF": _RECURRENT, "LOG_SOFTMAX": "use SOFTMAX", "ARG_MAX": "output logits instead",
    "DIV": "use MUL by a constant reciprocal", "RESIZE_BICUBIC": "use RESIZE_BILINEAR",
}
"""Hand-written advice for common TFLite builtins eedge does not support."""


def nearest_alternative(op: str, supported: Iterable[str], hints: Mapping[str, str]) -> str:
    """What to use instead of unsupported ``op``: hand-written advice, else the closest name.

    The closest name (difflib) catches near-misses such as ReduceMin -> ReduceMax;
    without one the user is sent to the README's table.
    """
    import difflib

    if op in hints:
        return hints[op]
    names = sorted(supported)
    close = difflib.get_close_matches(op, names, n=1, cutoff=0.6) or difflib.get_close_matches(
        op.lower(), [n.lower() for n in names], n=1, cutoff=0.6)
    if close:
        match = next(n for n in names if n.lower() == close[0].lower())
        return f"nearest supported operator: {match} (README, Operators, lists all)"
    return "see the README's Operators table for what is supported"
