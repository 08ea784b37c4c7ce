"""Turn user inputs into the int8 samples the firmware reads."""

from __future__ import annotations

import numpy as np

from eedge.errors import InputDataError
from eedge.ir.layout import to_channels_last
from eedge.reference.int8_kernels import quantize_input
from eedge.ir.graph import QuantParams


def device_samples(x: np.ndarray, input_shape: tuple[int, ...], scale: float, zero_point: int,
                   layout: str | None) -> np.ndarray:
    """Float inputs (model layout) are quantized; int8 inputs pass through. -> (N, bytes)."""
    x = np.asarray(x)
    per_sample = int(np.prod(input_shape[1:]))
    x = to_channels_last(x, layout)
    if x.dtype != np.int8:
        if not np.issubdtype(x.dtype, np.number):
            raise InputDataError(f"inputs have dtype {x.dtype}; pass numbers")
        x = quantize_input(x.astype(np.float32), QuantParams((scale,), (zero_point,)))
    if x.size % per_sample or x.ndim < 1:
        raise InputDataError(f"inputs of shape {list(x.shape)} do not split into samples of "
                             f"{per_sample} values (model input {list(input_shape)})")
    flat = x.reshape(-1, per_sample)
    if flat.shape[0] == 0:
        raise InputDataError("no input samples")
    return flat
