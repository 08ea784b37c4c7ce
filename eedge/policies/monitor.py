"""An accuracy-drop monitor: flags when the ensemble's confidence sags over a window.

Under distribution shift a calibrated ensemble grows less confident, so the
mean confidence over the last ``window`` inferences falling below ``rho``
signals that accuracy has probably dropped. ``rho`` is chosen on clean data
for a target false-alarm rate. The integer form (confidence as the ensemble's
summed int8 probabilities, 256 x members per unit) is what the firmware runs.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

import numpy as np

from eedge.errors import InputDataError


def rolling_means(confidences: np.ndarray, window: int) -> np.ndarray:
    c = np.asarray(confidences, dtype=np.float64)
    if len(c) < window:
        return np.zeros(0)
    sums = np.convolve(c, np.ones(window), mode="valid")
    return sums / window


def calibrate_rho(clean_confidences: np.ndarray, window: int,
                  false_alarm: float = 0.01) -> float:
    """The threshold that full windows of clean data fall below ``false_alarm`` of the time."""
    means = rolling_means(clean_confidences, window)
    if means.size == 0:
        raise InputDataError(f"need at least {window} clean samples to calibrate the monitor")
    return float(np.quantile(means, false_alarm))


class Monitor:
    """Float monitor for Python runtimes."""

    def __init__(self, window: int, rho: float) -> None:
        self.window, self.rho = window, rho
        self.values: deque[float] = deque(maxlen=window)

    def update(self, confidence: float) -> bool:
        self.values.append(float(confidence))
        return len(self.values) == self.window and sum(self.values) / self.window < self.rho


def rho_q(rho: float, window: int, members: int) -> int:
    """Integer window-sum threshold: flag when sum of window confidences_q < this."""
    return int(math.floor(rho * 256 * members * window))


class IntegerMonitor:
    """The firmware's monitor: a ring of integer confidences and their running sum."""

    def __init__(self, window: int, rho: float, members: int) -> None:
        self.window, self.threshold = window, rho_q(rho, window, members)
        self.values: deque[int] = deque(maxlen=window)

    def update(self, confidence_q: int) -> bool:
        self.values.append(int(confidence_q))
        return len(self.values) == self.window and sum(self.values) < self.threshold

    def run(self, confidences_q: Iterable[int]) -> list[bool]:
        return [self.update(c) for c in confidences_q]
