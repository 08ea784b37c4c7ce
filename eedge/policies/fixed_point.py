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

The ``gate`` criterion needs no softmax: its score is the int8 gate logit q
itself (the exit tensor's last column, scale s and zero point z of that
tensor), and "sigmoid((q - z) s) >= t" is "(q - z) s >= logit(t)", so the
threshold is the smallest int8 q with (q - z) s >= logit(t): about
ceil(logit(t) / s + z), fixed up by evaluating that very comparison so float
rounding cannot move it, clamped to [-128, 128] (128: no int8 value reaches it).
"""

from __future__ import annotations

import math

import numpy as np

from eedge.reference.fixedpoint import round_half_away
from eedge.policies.int8_softmax import exp_table

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


def logit(t: float) -> float:
    """log(t / (1 - t)) with -inf at 0 and +inf at 1 (the gate threshold in logit units)."""
    if t <= 0.0:
        return -math.inf
    if t >= 1.0:
        return math.inf
    return math.log(t) - math.log1p(-t)


def gate_threshold_q(threshold: float, scale: float, zero_point: int) -> int:
    """Smallest int8 gate q with (q - zero_point) * scale >= logit(threshold), or 128.

    Monotonic in ``threshold``: logit is, and the set of q passing the comparison
    only shrinks as its right side grows.
    """
    bound = logit(threshold)
    if bound == -math.inf:
        return -128
    if bound == math.inf:
        return 128

    def passes(q: int) -> bool:
        return (q - zero_point) * scale >= bound

    estimate = bound / scale + zero_point  # may overflow to +-inf for a tiny scale
    q = 128 if estimate >= 128 else (-128 if estimate <= -128 else math.ceil(estimate))
    while q > -128 and passes(q - 1):
        q -= 1
    while q <= 127 and not passes(q):
        q += 1
    return q


def gate_float_threshold(q: int, scale: float, zero_point: int) -> float:
    """A float threshold whose int8 gate threshold is ``q``: the probability half a step
    below q's logit, or another point of that step where rounding moved it. Near 1 (gate
    logits above about 33) float64 probabilities cannot tell steps apart; there the
    midpoint is returned and may mean a neighbouring q."""
    def at(fraction: float) -> float:
        return 1.0 / (1.0 + math.exp(-((q - fraction - zero_point) * scale)))

    for fraction in (0.5, 0.25, 0.75, 0.1, 0.9, 0.01, 0.99):
        if gate_threshold_q(at(fraction), scale, zero_point) == q:
            return at(fraction)
    return at(0.5)


def gate_quant(exit_entry: dict) -> tuple[float, int] | None:
    """(scale, zero point) of a manifest exit's int8 gate column, None without one."""
    quant = (exit_entry.get("gate") or {}).get("quant")
    return None if not quant else (float(quant["scale"][0]), int(quant["zero_point"][0]))


def threshold_q(threshold: float | None, final: bool = False, criterion: str = "max_softmax",
                classes: int = 2, gate: tuple[float, int] | None = None) -> int:
    """The integer a float threshold means on the device; ``gate``: (scale, zero point)
    of the int8 gate column, needed by the gate criterion only."""
    if final:
        return ALWAYS
    if threshold is None:
        return NEVER
    if criterion == "gate":
        if gate is None:
            raise ValueError("the gate criterion needs the gate's int8 scale and zero point")
        return gate_threshold_q(threshold, gate[0], gate[1])
    if criterion == "max_softmax":
        return int(min(128, max(-128, math.ceil(threshold * 256) - 128)))
    if criterion == "margin":
        return int(min(256, max(0, math.ceil(threshold * 256))))
    if criterion == "entropy":
        allowed = (1.0 - threshold) * math.log(max(classes, 2)) * ENTROPY_ONE
        return -int(math.floor(allowed))
    raise ValueError(f"unknown exit criterion {criterion!r}")


def int8_probabilities(logits_q: np.ndarray, logit_scale: float) -> np.ndarray:
    """int8 softmax of int8 logits (rows = samples): TFLite's bytes (``softmax_s8``'s),
    from the scale's precomputed exp table (eedge.policies.int8_softmax)."""
    return exp_table(logit_scale).probabilities(np.asarray(logits_q, np.int8))


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
