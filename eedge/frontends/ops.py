"""The operator set eedge accepts from any frontend.

The set is the intersection of what every eedge backend can lower: each
operator here has a TFLite builtin (CONV_2D/DEPTHWISE_CONV_2D,
FULLY_CONNECTED, ADD, MUL, pools, MEAN, RESHAPE, CONCATENATION, PAD,
SOFTMAX) and a C kernel. Accepting more would produce bundles that export
to ONNX but fail later at the int8 or firmware step, which is worse than a
clear error at the door.
"""

from __future__ import annotations

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
