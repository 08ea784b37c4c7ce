"""The layouts user inputs come in, and how they become the lowered graph's.

torch/ONNX models take channels-first inputs: NCHW images and NCL sequences
(1-D audio, MFCC frames). The TFLite dialect stores both channels-last, a
sequence as a unit-height image (N, 1, L, C), because TFLite has no 1-D
convolution or pooling. Everything that feeds user data to lowered stages
(the cascade runtime, int8 calibration, firmware inputs) converts with
:func:`to_channels_last`, so those paths cannot disagree about the bytes.
"""

from __future__ import annotations

import numpy as np

CHANNELS_FIRST = {4: "NCHW", 3: "NCL"}


def input_layout(rank: int, dialect: str) -> str | None:
    """The manifest's name for the layout of a rank-``rank`` model input, if it has one."""
    if dialect == "tflite":
        return "NHWC" if rank == 4 else None
    return CHANNELS_FIRST.get(rank)


def to_channels_last(x: np.ndarray, layout: str | None) -> np.ndarray:
    """User data in ``layout`` -> the lowered graph's NHWC (NCL -> (N, 1, L, C)).

    Arrays of another rank (already flattened samples, say) pass through.
    """
    if layout == "NCHW" and x.ndim == 4:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    if layout == "NCL" and x.ndim == 3:
        return np.ascontiguousarray(x.transpose(0, 2, 1)[:, None])
    return x


def user_rank(lowered_rank: int, layout: str | None) -> int:
    """Rank of the user's arrays for a lowered input of ``lowered_rank`` in ``layout``.

    An NCL input is 3-D for the user but 4-D (N, 1, L, C) once lowered, so
    counting samples by the lowered rank would take a batch for one sample.
    """
    return 3 if layout == "NCL" else lowered_rank
