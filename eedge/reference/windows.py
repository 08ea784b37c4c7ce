"""Sliding windows over NHWC tensors, shared by the float and int8 kernels.

TFLite pads only "before" with ``total // 2`` and treats the odd extra pixel
at the end as out of bounds; gathering windows with an explicit validity
mask reproduces that for convolution (pad value = input zero point, which
contributes nothing) and for pooling (padded pixels are skipped, and not
counted by average pooling).
"""

from __future__ import annotations

import math

import numpy as np


def padding_amounts(size: int, kernel: int, stride: int, dilation: int,
                    padding: str) -> tuple[int, int]:
    """(output size, pad before) for one spatial axis, as TFLite computes them."""
    effective = (kernel - 1) * dilation + 1
    if padding == "SAME":
        out = math.ceil(size / stride)
    else:
        out = (size + stride - effective) // stride
    total = max(0, (out - 1) * stride + effective - size)
    return out, total // 2


def gather_windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                   dilation: tuple[int, int], padding: str,
                   pad_value: float | int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return windows [N, OH, OW, KH, KW, C] and the validity mask [OH, OW, KH, KW]."""
    n, h, w, c = x.shape
    oh, pad_h = padding_amounts(h, kernel[0], stride[0], dilation[0], padding)
    ow, pad_w = padding_amounts(w, kernel[1], stride[1], dilation[1], padding)
    rows = (np.arange(oh)[:, None] * stride[0] - pad_h + np.arange(kernel[0])[None, :] *
            dilation[0])  # [OH, KH]
    cols = (np.arange(ow)[:, None] * stride[1] - pad_w + np.arange(kernel[1])[None, :] *
            dilation[1])  # [OW, KW]
    row_ok = (rows >= 0) & (rows < h)
    col_ok = (cols >= 0) & (cols < w)
    padded = np.full((n, h + 1, w + 1, c), pad_value, dtype=x.dtype)
    padded[:, :h, :w, :] = x
    r = np.where(row_ok, rows, h)  # out-of-bounds rows read the pad row
    q = np.where(col_ok, cols, w)
    windows = padded[:, r[:, None, :, None], q[None, :, None, :], :]  # N,OH,OW,KH,KW,C
    mask = row_ok[:, None, :, None] & col_ok[None, :, None, :]
    return windows, mask
