"""Summaries of repeated timings, and the expected latency of an early-exit cascade."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    values = np.asarray(samples_ms, dtype=np.float64)
    return {"mean": float(values.mean()), "p50": float(np.percentile(values, 50)),
            "p90": float(np.percentile(values, 90)), "p99": float(np.percentile(values, 99)),
            "std": float(values.std()), "min": float(values.min()), "runs": int(values.size)}


def reach_probabilities(exit_rates: Sequence[float], exit_stages: Sequence[int],
                        stages: int) -> list[float]:
    """P(a sample runs stage k): one minus the share that left at earlier exits."""
    reach = []
    for k in range(stages):
        left = sum(rate for rate, s in zip(exit_rates, exit_stages) if s < k)
        reach.append(max(0.0, 1.0 - left))
    return reach


def expected_latency(stage_latency: Sequence[float], exit_rates: Sequence[float],
                     exit_stages: Sequence[int]) -> dict[str, Any]:
    """E[latency] = sum_k P(reach stage k) * t_k, next to running every stage."""
    reach = reach_probabilities(exit_rates, exit_stages, len(stage_latency))
    return {"expected": float(sum(p * t for p, t in zip(reach, stage_latency))),
            "no_exit": float(sum(stage_latency)), "reach_probability": reach}
