"""The layouts user inputs come in, and how they become the lowered graph's.

torch/ONNX models take channels-first inputs: NCHW images and NCL sequences
(1-D audio, MFCC frames). The TFLite dialect stores both channels-last, a
sequence as a unit-height image (N, 1, L, C), because TFLite has no 1-D
convolution or pooling. A token sequence read by a transformer or a
recurrent layer (N, T, D) is "NLC": already in the order TFLite keeps it,
stored (N, 1, T, D). Everything that feeds user data to lowered stages
(the cascade runtime, int8 calibration, firmware inputs) converts with
:func:`to_channels_last`, so those paths cannot disagree about the bytes.
"""

from __future__ import annotations

import numpy as np

CHANNELS_FIRST = {4: "NCHW", 3: "NCL"}


def input_layout(rank: int, dialect: str, tokens: bool = False) -> str | None:
    """The manifest's name for the layout of a rank-``rank`` model input, if it has one.

    ``tokens``: a 3-D ONNX input the lowering keeps in ONNX order (see
    :mod:`eedge.passes.layout_classes`), "NLC".
    """
    if dialect == "tflite":
        return "NHWC" if rank == 4 else None
    if tokens and rank == 3:
        return "NLC"
    return CHANNELS_FIRST.get(rank)


def to_channels_last(x: np.ndarray, layout: str | None) -> np.ndarray:
    """User data in ``layout`` -> the lowered graph's NHWC (NCL -> (N, 1, L, C)).

    Arrays of another rank (already flattened samples, say) pass through.
    """
    if layout == "NCHW" and x.ndim == 4:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    if layout == "NCL" and x.ndim == 3:
        return np.ascontiguousarray(x.transpose(0, 2, 1)[:, None])
    if layout == "NLC" and x.ndim == 3:
        return np.ascontiguousarray(x[:, None])
    return x


def user_rank(lowered_rank: int, layout: str | None) -> int:
    """Rank of the user's arrays for a lowered input of ``lowered_rank`` in ``layout``.

    An NCL input is 3-D for the user but 4-D (N, 1, L, C) once lowered, so
    counting samples by the lowered rank would take a batch for one sample.
    """
    return 3 if layout in ("NCL", "NLC") else lowered_rank
