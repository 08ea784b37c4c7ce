"""Float32 kernels for the TFLite dialect (NHWC), used for calibration and checks.

Straightforward numpy, written for clarity over speed: they define what a
lowered graph means, so the lowering pass can be checked against ONNX
Runtime and the quantizer can observe every tensor's range.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from eedge.ir.graph import Graph, Node
from eedge.reference.windows import gather_windows

Kernel = Callable[[Node, Graph, Sequence[np.ndarray | None]], np.ndarray]


def activate(x: np.ndarray, activation: str) -> np.ndarray:
    if activation == "RELU":
        return np.maximum(x, 0)
    if activation == "RELU6":
        return np.clip(x, 0, 6)
    if activation == "RELU_N1_TO_1":
        return np.clip(x, -1, 1)
    return x


def _conv(node: Node, _g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, w, b = args
    a = node.attrs
    windows, _ = gather_windows(x, (w.shape[1], w.shape[2]), (a["stride_h"], a["stride_w"]),
                                (a["dilation_h"], a["dilation_w"]), a["padding"])
    out = np.einsum("nhwijc,oijc->nhwo", windows.astype(np.float64), w.astype(np.float64))
    if b is not None:
        out = out + b
    return activate(out, a["activation"]).astype(np.float32)


def _depthwise(node: Node, _g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, w, b = args
    a = node.attrs
    multiplier = int(a.get("depth_multiplier", 1))
    if multiplier > 1:
        x = np.repeat(x, multiplier, axis=3)
    windows, _ = gather_windows(x, (w.shape[1], w.shape[2]), (a["stride_h"], a["stride_w"]),
                                (a["dilation_h"], a["dilation_w"]), a["padding"])
    out = np.einsum("nhwijc,ijc->nhwc", windows.astype(np.float64), w[0].astype(np.float64))
    if b is not None:
        out = out + b
    return activate(out, a["activation"]).astype(np.float32)


def _fully_connected(node: Node, _g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, w, b = args
    out = x.reshape(-1, w.shape[1]).astype(np.float64) @ w.T.astype(np.float64)
    if b is not None:
        out = out + b
    out = activate(out, node.attrs["activation"]).astype(np.float32)
    return out.reshape(fc_output_shape(node, x.shape, w.shape))


def fc_output_shape(node: Node, x: tuple[int, ...], w: tuple[int, ...]) -> tuple[int, ...]:
    """(rows, units), or the input's shape with its last axis replaced by units when the node
    keeps its dimensions (keep_num_dims: a Linear over the tokens of a 3-D/4-D tensor)."""
    rows = int(np.prod(x, dtype=np.int64)) // int(w[1])
    return tuple(x[:-1]) + (int(w[0]),) if node.attrs.get("keep_num_dims") else (rows, int(w[0]))


def _pool(node: Node, _g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    (x,) = args[:1]
    a = node.attrs
    windows, mask = gather_windows(x, (a["filter_h"], a["filter_w"]),
                                   (a["stride_h"], a["stride_w"]), (1, 1), a["padding"])
    m = mask[None, :, :, :, :, None]
    if node.op_type == "MAX_POOL_2D":
        out = np.where(m, windows, -np.inf).max(axis=(3, 4))
    else:
        out = np.where(m, windows, 0).sum(axis=(3, 4)) / m.sum(axis=(3, 4))
    return activate(out, a["activation"]).astype(np.float32)


def _binary(node: Node, _g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, y = args
    out = x + y if node.op_type == "ADD" else x * y
    return activate(out, node.attrs["activation"]).astype(np.float32)


def _mean(node: Node, _g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, axes = args  # a scalar or repeated axes as TFLite allows them
    return x.mean(axis=tuple(sorted({int(a) % x.ndim for a in np.asarray(axes).reshape(-1)})),
                  keepdims=bool(node.attrs["keep_dims"])).astype(np.float32)


def reshape_target(x: np.ndarray, shape: np.ndarray) -> list[int]:
    """RESHAPE's new shape for ``x``: a -1 (the batch, wherever it sits: attention's
    (3, N, h, T, d) tensors) is inferred; without one the leading axis is the batch the
    reference runs (a file's 1 stands for any batch)."""
    dims = [int(d) for d in np.asarray(shape).reshape(-1)]
    if -1 in dims:
        return dims
    return [x.shape[0]] + dims[1:]


def _reshape(_n: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, shape = args
    return x.reshape(reshape_target(x, shape))


def _softmax(node: Node, _g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x = args[0].astype(np.float64) * node.attrs.get("beta", 1.0)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _concat(node: Node, _g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    return activate(np.concatenate(args, axis=node.attrs["axis"]), node.attrs["activation"])


def _pad(_n: Node, _g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    x, paddings = args
    return np.pad(x, [(int(a), int(b)) for a, b in paddings])


FLOAT_KERNELS: dict[str, Kernel] = {
    "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _depthwise, "FULLY_CONNECTED": _fully_connected,
    "MAX_POOL_2D": _pool, "AVERAGE_POOL_2D": _pool, "ADD": _binary, "MUL": _binary,
    "MEAN": _mean, "RESHAPE": _reshape, "SOFTMAX": _softmax, "CONCATENATION": _concat,
    "PAD": _pad,
    "RELU": lambda n, g, a: activate(a[0], "RELU"),
    "RELU6": lambda n, g, a: activate(a[0], "RELU6"),
    "RELU_N1_TO_1": lambda n, g, a: activate(a[0], "RELU_N1_TO_1"),
}
