"""User input layouts and the lowered graph's NHWC agree on every byte."""

from __future__ import annotations

import numpy as np

from eedge.ir.layout import input_layout, to_channels_last, user_rank


def test_ncl_becomes_unit_height_nhwc() -> None:
    x = np.arange(2 * 3 * 5).reshape(2, 3, 5)          # (N, C, L)
    y = to_channels_last(x, "NCL")
    assert y.shape == (2, 1, 5, 3) and y.flags.c_contiguous
    assert y[1, 0, 4, 2] == x[1, 2, 4]


def test_nchw_and_pass_through() -> None:
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert np.array_equal(to_channels_last(x, "NCHW"), x.transpose(0, 2, 3, 1))
    flat = np.zeros((2, 60))
    assert to_channels_last(flat, "NCHW") is flat        # already flattened samples
    assert to_channels_last(x, None) is x


def test_layout_names_and_user_rank() -> None:
    assert (input_layout(4, "onnx"), input_layout(3, "onnx"), input_layout(2, "onnx")) == \
        ("NCHW", "NCL", None)
    assert (input_layout(4, "tflite"), input_layout(3, "tflite")) == ("NHWC", None)
    assert user_rank(4, "NCL") == 3 and user_rank(4, "NCHW") == 4
