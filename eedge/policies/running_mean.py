"""Running-mean ensemble decisions: after member m, the mean of members 1..m decides.

A deep-ensemble cascade (e.g. independent models of growing size, or the
exits of one network) lets each member's exit decide on the *running mean*
of the ensemble members' class probabilities so far, not on its own. In a
manifest this is ``ensemble: {"mode": "running_mean", "members": [...]}``
(members are the last exits; exits before them decide alone). The QUTE form
(``mode`` absent or ``"final"``) instead lets only the last member decide.

Float runtimes average softmaxes. The int8 runtimes and the generated C sum
TFLite's int8 softmax of each member as q + 128 (0..255 per class, so the sum
S of m members is 0..255 m) and score the sum in integers:
- max_softmax: max S;                      threshold ceil(256 m t)
- margin:      top1 S - top2 S;            threshold ceil(256 m t)
- entropy:     -sum LUT[round(S / m)] (the mean back on the 0..255 grid, round
               half up); threshold as for one exit (fixed_point.threshold_q).
With m = 1 these are the single-exit integer scores (max_softmax shifted by
+128), so a one-member ensemble decides as a plain exit would.

This module is the one definition of those rules: the Python cascade, the
calibration and the C code generator all use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from eedge.errors import BundleError, InputDataError
from eedge.policies.criteria import score_from_probabilities, softmax
from eedge.policies.fixed_point import (ALWAYS, ENTROPY_ONE, ENTROPY_LUT, NEVER,
                                        int8_probabilities, threshold_q)

RUNNING_MEAN = "running_mean"
MODES = ("final", RUNNING_MEAN)   # final: QUTE (only the last member decides)
CRITERIA = ("max_softmax", "margin", "entropy")


def ensemble_mode(manifest: Mapping[str, Any]) -> str | None:
    """``"running_mean"``, ``"final"`` (QUTE) or None when the bundle has no ensemble."""
    ensemble = manifest.get("ensemble")
    if not ensemble:
        return None
    return str(ensemble.get("mode") or "final")


def running_members(manifest: Mapping[str, Any]) -> list[int]:
    """The exits that decide on the running mean (empty unless the mode is running_mean)."""
    if ensemble_mode(manifest) != RUNNING_MEAN:
        return []
    return [int(k) for k in manifest["ensemble"]["members"]]


def check_criterion(criterion: str) -> None:
    if criterion not in CRITERIA:
        raise InputDataError(f"the {criterion} criterion cannot score a running-mean ensemble; "
                             f"use one of {', '.join(CRITERIA)}")


# --------------------------------------------------------------------------- integers


def sum_threshold_q(threshold: float | None, final: bool, criterion: str, classes: int,
                    members: int) -> int:
    """The integer a running-mean score of ``members`` summed exits is compared with."""
    if final:
        return ALWAYS
    if threshold is None:
        return NEVER
    if criterion in ("max_softmax", "margin"):
        return int(min(256 * members, max(0, math.ceil(threshold * 256 * members))))
    return threshold_q(threshold, False, criterion, classes)


def sum_float_threshold(score: float, criterion: str, classes: int, members: int) -> float:
    """A float threshold whose :func:`sum_threshold_q` is exactly ``score`` (half a step
    below it, so float rounding in ``ceil`` cannot move it)."""
    if criterion in ("max_softmax", "margin"):
        return (score - 0.5) / (256 * members)
    allowed = -score + 0.5
    return 1.0 - allowed / (math.log(max(classes, 2)) * ENTROPY_ONE)


def sum_score(sums: np.ndarray, members: int, criterion: str) -> np.ndarray:
    """Integer score of summed int8 probabilities (sum of q + 128 over ``members`` exits)."""
    s = np.asarray(sums).astype(np.int64)
    if criterion == "max_softmax":
        return s.max(axis=-1)
    if criterion == "margin":
        if s.shape[-1] < 2:
            return s[..., 0]
        top = np.sort(s, axis=-1)
        return top[..., -1] - top[..., -2]
    if criterion == "entropy":
        mean = (2 * s + members) // (2 * members)  # round half up, as the C does
        return -ENTROPY_LUT[mean].astype(np.int64).sum(axis=-1)
    raise ValueError(f"unknown exit criterion {criterion!r}")


# --------------------------------------------------------------------------- aggregation


def add_member(total: np.ndarray | None, values: np.ndarray,
               logit_scale: float | None) -> np.ndarray:
    """The running sum after one more member: int8 logits (``logit_scale`` given) add
    their int8 softmax as q + 128 (int64), float logits their softmax (float64)."""
    if logit_scale is not None:
        part = int8_probabilities(values, logit_scale).astype(np.int64) + 128
    else:
        part = softmax(values)
    return part if total is None else total + part


def mean_probabilities(total: np.ndarray, members: int) -> np.ndarray:
    """The running mean as probabilities (float; int8 sums in units of 1/256)."""
    if np.issubdtype(total.dtype, np.integer):
        return total / (256.0 * members)
    return total / members


def score(total: np.ndarray, members: int, criterion: str) -> np.ndarray:
    """The decision score of a running sum: integer for int8 sums, float otherwise."""
    if np.issubdtype(total.dtype, np.integer):
        return sum_score(total, members, criterion)
    return score_from_probabilities(total / members, criterion)


def running_scores(values: list[np.ndarray], logit_scales: list[float | None],
                   members: list[int], criterion: str
                   ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per exit: the score and the prediction each exit decides with, every sample.

    ``values`` are every exit's raw outputs (int8 where ``logit_scales`` has a
    scale). Exits in ``members`` use the running mean of the members up to
    them; the others are returned as None entries for the caller to score alone.
    """
    scores: list[np.ndarray] = []
    predictions: list[np.ndarray] = []
    total: np.ndarray | None = None
    for k, (v, scale) in enumerate(zip(values, logit_scales)):
        if k not in members:
            scores.append(None)  # type: ignore[arg-type]
            predictions.append(None)  # type: ignore[arg-type]
            continue
        total = add_member(total, v, scale)
        m = members.index(k) + 1
        scores.append(score(total, m, criterion))
        predictions.append(np.argmax(total, axis=-1))
    return scores, predictions


def set_running_mean(manifest: dict[str, Any], on: bool) -> None:
    """Turn the running-mean mode on or off in a manifest, in place.

    On: a bundle without an ensemble gets one over all its exits (marked
    ``created_for: running_mean``); a QUTE ensemble keeps its members and
    switches mode. Off: an ensemble created for the running mean goes away; a
    QUTE one returns to its ``final`` mode.
    """
    ensemble = manifest.get("ensemble")
    if not on:
        if ensemble and ensemble.get("mode") == RUNNING_MEAN:
            if ensemble.get("created_for") == RUNNING_MEAN:
                manifest.pop("ensemble")
            else:
                ensemble.pop("mode")
        return
    if not ensemble:
        if len(manifest["exits"]) < 2:
            raise BundleError("a running-mean ensemble needs at least two exits; this bundle "
                              "has one")
        ensemble = {"members": list(range(len(manifest["exits"]))),
                    "aggregation": "mean_softmax", "created_for": RUNNING_MEAN}
        manifest["ensemble"] = ensemble
    ensemble["mode"] = RUNNING_MEAN
