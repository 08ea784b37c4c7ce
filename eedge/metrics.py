"""Classification and calibration metrics (numpy only)."""

from __future__ import annotations

import numpy as np

from eedge.errors import InputDataError


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    if len(labels) == 0:
        raise InputDataError("no samples to evaluate")
    return float(np.mean(np.argmax(probs, axis=-1) == labels))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: |accuracy - confidence| per equal-width confidence bin, weighted by bin size."""
    if len(labels) == 0:
        raise InputDataError("no samples to evaluate")
    confidence = probs.max(axis=-1)
    correct = np.argmax(probs, axis=-1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)
