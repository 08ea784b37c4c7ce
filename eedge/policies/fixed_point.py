"""Exit decisions on int8 logits, identical in Python and in the generated C.

Everything starts from TFLite's int8 softmax of the exit logits (scale 1/256,
zero point -128: q encodes (q + 128) / 256). Each criterion becomes an integer
score, larger = more confident, and a float threshold t becomes an integer so
that "exit iff score_q >= threshold_q" is exact on the device:
- max_softmax: max q;                threshold ceil(256 t) - 128
- margin:      top1 q - top2 q;      threshold ceil(256 t)
- entropy:     -sum LUT[q + 128];    threshold -floor((1 - t) ln(C) 4096)
LUT[k] = round(-(k/256) ln(k/256) 4096) is generated into the firmware from
this module, so both sides sum the same integers.
"""

from __future__ import annotations

import math

import numpy as np

from eedge.reference.fixedpoint import round_half_away
from eedge.reference.int8_kernels import softmax_s8

NEVER = 1 << 30    # no score reaches it
ALWAYS = -(1 << 30)  # every score reaches it (the final exit)
ENTROPY_ONE = 4096  # LUT units per nat


def entropy_lut() -> np.ndarray:
    k = np.arange(256, dtype=np.float64)
    p = k / 256.0
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(k > 0, -p * np.log(np.where(k > 0, p, 1.0)), 0.0)
    return round_half_away(values * ENTROPY_ONE).astype(np.int32)


ENTROPY_LUT = entropy_lut()


def threshold_q(threshold: float | None, final: bool = False, criterion: str = "max_softmax",
                classes: int = 2) -> int:
    if final:
        return ALWAYS
    if threshold is None:
        return NEVER
    if criterion == "max_softmax":
        return int(min(128, max(-128, math.ceil(threshold * 256) - 128)))
    if criterion == "margin":
        return int(min(256, max(0, math.ceil(threshold * 256))))
    if criterion == "entropy":
        allowed = (1.0 - threshold) * math.log(max(classes, 2)) * ENTROPY_ONE
        return -int(math.floor(allowed))
    raise ValueError(f"unknown exit criterion {criterion!r}")


def int8_probabilities(logits_q: np.ndarray, logit_scale: float) -> np.ndarray:
    """int8 softmax of int8 logits (rows = samples)."""
    return softmax_s8(np.asarray(logits_q, np.int8), logit_scale)


def int8_score(probs_q: np.ndarray, criterion: str) -> np.ndarray:
    """Integer score of int8 probabilities (see the module docstring)."""
    q = np.asarray(probs_q).astype(np.int32)
    if criterion == "max_softmax":
        return q.max(axis=-1)
    if criterion == "margin":
        top = np.sort(q, axis=-1)
        return top[..., -1] - (top[..., -2] if q.shape[-1] > 1 else -128)
    if criterion == "entropy":
        return -ENTROPY_LUT[q + 128].sum(axis=-1)
    raise ValueError(f"unknown exit criterion {criterion!r}")


def int8_confidence(logits_q: np.ndarray, logit_scale: float) -> np.ndarray:
    """Per-sample int8 max-softmax, the value the C runtime compares."""
    return int8_score(int8_probabilities(logits_q, logit_scale), "max_softmax")
