"""Exit decisions on int8 logits, identical in Python and in the generated C.

The confidence of an int8 exit is the maximum of TFLite's int8 softmax of
its logits (output scale 1/256, zero point -128: q encodes (q + 128) / 256).
A float threshold t becomes the smallest q with (q + 128) / 256 >= t, so
"exit iff q >= threshold_q(t)" is exact integer arithmetic on the device.
"""

from __future__ import annotations

import math

import numpy as np

from eedge.reference.int8_kernels import softmax_s8

NEVER = 128    # no int8 confidence reaches it
ALWAYS = -128  # every confidence reaches it (the final exit)


def threshold_q(threshold: float | None, final: bool = False) -> int:
    if final:
        return ALWAYS
    if threshold is None:
        return NEVER
    return int(min(NEVER, max(ALWAYS, math.ceil(threshold * 256) - 128)))


def int8_probabilities(logits_q: np.ndarray, logit_scale: float) -> np.ndarray:
    """int8 softmax of int8 logits (rows = samples)."""
    return softmax_s8(np.asarray(logits_q, np.int8), logit_scale)


def int8_confidence(logits_q: np.ndarray, logit_scale: float) -> np.ndarray:
    """Per-sample int8 max-softmax, the value the C runtime compares."""
    return int8_probabilities(logits_q, logit_scale).astype(np.int32).max(axis=-1)
