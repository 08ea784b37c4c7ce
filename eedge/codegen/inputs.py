"""Turn user inputs into the int8 samples the firmware reads.

The samples are checked against the model input's shape (in the user's layout:
NCHW images, NCL sequences), not just for a total size that divides into
samples: a (6, 8, 8) array would otherwise become three garbled 128-byte
samples for a 1x8x8 model. Float values must be finite (after the cast to
float32, so 1e39 is refused rather than quantized to 127).
"""

from __future__ import annotations

import numpy as np

from eedge.errors import InputDataError
from eedge.io.arrays import check_finite
from eedge.ir.graph import QuantParams
from eedge.ir.layout import to_channels_last
from eedge.reference.int8_kernels import quantize_input


def user_sample_shape(input_shape: tuple[int, ...], layout: str | None) -> tuple[int, ...]:
    """One sample's shape as the user passes it, for a lowered (channels-last) input."""
    sample = tuple(int(d) for d in input_shape[1:])
    if layout == "NCHW" and len(sample) == 3:
        return (sample[2], sample[0], sample[1])
    if layout == "NLC" and len(sample) == 3 and sample[0] == 1:
        return (sample[1], sample[2])
    if layout == "NCL" and len(sample) == 3 and sample[0] == 1:
        return (sample[2], sample[1])
    return sample


def device_samples(x: np.ndarray, input_shape: tuple[int, ...], scale: float, zero_point: int,
                   layout: str | None) -> np.ndarray:
    """Float inputs (model layout) are quantized; int8 inputs pass through. -> (N, bytes).

    ``x`` is (N, *sample) or one sample without the batch axis.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iuf":
        raise InputDataError(f"inputs have dtype {x.dtype}; pass numbers")
    sample = user_sample_shape(input_shape, layout)
    if x.shape == sample:
        x = x[None]
    if x.shape[1:] != sample:
        shown = ", ".join(str(d) for d in sample)
        raise InputDataError(f"inputs have shape {list(x.shape)}; the model input takes "
                             f"(N, {shown}) (or one sample of ({shown}))")
    if x.shape[0] == 0:
        raise InputDataError("no input samples")
    per_sample = int(np.prod(input_shape[1:]))
    x = to_channels_last(x, layout)
    if x.dtype != np.int8:
        with np.errstate(over="ignore"):
            floats = x.astype(np.float32)
        check_finite(floats, "inputs", source=x)
        x = quantize_input(floats, QuantParams((scale,), (zero_point,)))
    return x.reshape(-1, per_sample)
