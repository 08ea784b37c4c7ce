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
from typing import Any

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


class EnsembleStream:
    """A bundle's ensemble on one runtime: confidences over input streams, and the monitor.

    The cascade is built once and serves calibration and every check, so each
    stream of inputs is inferred exactly once. On int8 runtimes the monitor
    runs on the ensemble's integer probability sums the firmware uses, so the
    device flags exactly the windows Python does.
    """

    def __init__(self, bundle: Any, runtime: str | None = None) -> None:
        from eedge.runtime.cascade import Cascade

        ensemble = bundle.manifest.get("ensemble")
        if not ensemble:
            raise InputDataError(f"{bundle.path} has no exit ensemble to monitor: export it "
                                 "with `eedge export ... --ensemble K,K,...`")
        if ensemble.get("mode") == "running_mean":
            raise InputDataError(f"{bundle.path}'s ensemble decides on a running mean at every "
                                 "member; the monitor watches a QUTE ensemble (the last member "
                                 "decides): turn the mode off with `eedge calibrate ... "
                                 "--ensemble none`")
        self.bundle = bundle
        self.cascade = Cascade(bundle, runtime=runtime)
        self.members = len(ensemble["members"])
        self.integer = str(self.cascade.runtime).startswith("int8")

    def infer(self, x: np.ndarray) -> Any:
        return self.cascade.infer(x)

    def choose_rho(self, clean: Any, window: int, false_alarm: float) -> float:
        """rho from the inference result of clean inputs."""
        if window < 1:
            raise InputDataError("the monitor window must be at least 1 sample")
        if not 0 < false_alarm < 1:
            raise InputDataError("the false-alarm target must lie strictly between 0 and 1")
        return calibrate_rho(clean.confidence, window, false_alarm)

    def stored_monitor(self) -> dict[str, Any]:
        monitor = (self.bundle.manifest.get("ensemble") or {}).get("monitor")
        if not monitor:
            raise InputDataError(f"{self.bundle.path} has no calibrated monitor: run "
                                 "`eedge monitor BUNDLE --data clean.npz` first")
        return dict(monitor)

    def flags(self, result: Any, monitor: dict[str, Any] | None = None) -> np.ndarray:
        """The monitor's flag after each input of an inferred stream, in order.

        ``monitor`` (window, rho) defaults to the one stored in the bundle.
        """
        monitor = monitor or self.stored_monitor()
        if self.integer:
            return np.array(IntegerMonitor(monitor["window"], monitor["rho"], self.members).run(
                result.confidence_q), dtype=bool)
        float_monitor = Monitor(monitor["window"], monitor["rho"])
        return np.array([float_monitor.update(c) for c in result.confidence], dtype=bool)

    def flagged_share(self, result: Any, monitor: dict[str, Any] | None = None) -> float:
        """Share of full windows flagged (the false-alarm or detection rate)."""
        monitor = monitor or self.stored_monitor()
        full = self.flags(result, monitor)[monitor["window"] - 1:]
        if full.size == 0:
            raise InputDataError(f"need at least {monitor['window']} inputs to fill one "
                                 "monitor window")
        return float(np.mean(full))


def calibrate_bundle_monitor(bundle: Any, clean: np.ndarray, window: int, false_alarm: float,
                             runtime: str | None = None) -> tuple[Any, float]:
    """Choose rho on clean inputs and store the monitor in the bundle's manifest."""
    stream = EnsembleStream(bundle, runtime)
    rho = stream.choose_rho(stream.infer(clean), window, false_alarm)
    return store_monitor(bundle, window, rho, false_alarm), rho


def store_monitor(bundle: Any, window: int, rho: float, false_alarm: float) -> Any:
    """Write the monitor into the manifest (atomically); returns the updated bundle."""
    from eedge.ir.bundle import update_manifest

    def add_monitor(manifest: dict[str, Any]) -> None:
        manifest["ensemble"]["monitor"] = {"window": window, "rho": rho,
                                           "false_alarm_target": false_alarm}

    return update_manifest(bundle, add_monitor)
