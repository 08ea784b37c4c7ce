"""Predict a cascade's latency distribution from its stages' and its own measured costs.

A sample that leaves at exit e costs the stages up to e's stage plus the
cascade's overhead on that path (decisions, routing, input checks: measured
once per target and runtime by :mod:`eedge.profiling.cascade_timing`). The
mean is exact arithmetic on the measured means; the median and the tail come
from resampling: each draw picks a path by the exit rates and a moment of the
measurement, then the *pass* of the stage timings (all stages of one pass
together, so a slow moment that hit several stages of a pass stays
correlated, as in a real inference) and the overhead measurement of that
path timed at that moment. A p50 of the stage times cannot predict a mean
with a heavy tail, nor the median of a mixture of paths; this can.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eedge.errors import InputDataError

DRAWS = 20_000
QUANTILES = {"p50": 50, "p90": 90, "p99": 99}


def distribution(values: np.ndarray | Sequence[float]) -> dict[str, float]:
    """Mean and the quantiles eedge reports (ms)."""
    array = np.asarray(values, dtype=np.float64)
    out = {"mean": float(array.mean())}
    out.update({k: float(np.percentile(array, q)) for k, q in QUANTILES.items()})
    return out


def path_overheads(overhead_ms: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """Overhead samples per exit; an exit that could not be timed borrows the nearest one
    deeper in the cascade (else shallower): its decisions are the closest in cost."""
    measured = [k for k, o in enumerate(overhead_ms) if len(o)]
    if not measured:
        raise InputDataError("no exit path of the cascade could be timed for its overhead")
    out = []
    for k, samples in enumerate(overhead_ms):
        if len(samples):
            out.append(np.asarray(samples, np.float64))
            continue
        deeper = [m for m in measured if m > k]
        out.append(np.asarray(overhead_ms[deeper[0] if deeper else measured[-1]], np.float64))
    return out


def _check(stage_ms: Sequence[Sequence[float]], exit_rates: Sequence[float],
           exit_stages: Sequence[int], overheads: list[np.ndarray]) -> np.ndarray:
    stages = np.asarray(stage_ms, dtype=np.float64)
    if stages.ndim != 2 or stages.shape[1] == 0:
        raise InputDataError("stage timings must be one equally long list of passes per stage")
    if len(exit_rates) != len(exit_stages) or len(overheads) != len(exit_stages):
        raise InputDataError("give one exit rate, stage and overhead list per exit")
    if abs(sum(exit_rates) - 1) > 1e-6 or min(exit_rates) < 0:
        raise InputDataError("exit rates must be non-negative and sum to 1")
    return stages


def predict_batch1(stage_ms: Sequence[Sequence[float]], overhead_ms: Sequence[Sequence[float]],
                   exit_rates: Sequence[float], exit_stages: Sequence[int],
                   draws: int = DRAWS, seed: int = 0) -> dict[str, Any]:
    """Latency per sample at batch 1: mean, p50, p90, p99 (ms), and the overhead share.

    A draw takes a moment t of the measurement (uniform over it) and combines the
    stage pass and the overhead sample of its path that were timed at that moment
    (both lists are in time order and spread evenly over the run): a machine's speed
    drifts, and a real inference's stages and overhead share the moment they run at.
    Drawn independently, slow stage passes met fast overheads, which made the sum's
    median up to ~10 % larger than the measured one on a drifting machine.
    """
    overheads = path_overheads(overhead_ms)
    stages = _check(stage_ms, exit_rates, exit_stages, overheads)
    rates = np.asarray(exit_rates, np.float64)
    cumulative = np.cumsum(stages, axis=0)            # [stage, pass]: stages 0..s of a pass
    path_stage_mean = cumulative.mean(axis=1)[list(exit_stages)]
    path_overhead_mean = np.array([o.mean() for o in overheads])
    rng = np.random.default_rng(seed)
    path = rng.choice(len(rates), size=draws, p=rates / rates.sum())
    moment = rng.random(draws)
    latency = cumulative[np.asarray(exit_stages)[path], at_moment(moment, stages.shape[1])]
    for k, samples in enumerate(overheads):
        chosen = path == k
        latency[chosen] += samples[at_moment(moment[chosen], samples.size)]
    out = distribution(latency)
    out["mean"] = float(rates @ (path_stage_mean + path_overhead_mean))  # exact, no sampling
    stages_run = float(rates @ (np.asarray(exit_stages, np.float64) + 1))
    overhead = float(rates @ path_overhead_mean)
    out.update({"stages_ms": float(rates @ path_stage_mean), "overhead_ms": overhead,
                "stages_per_sample": stages_run,
                "overhead_per_stage_us": 1e3 * overhead / stages_run,
                "overhead_by_exit_ms": path_overhead_mean.tolist()})
    return out


def at_moment(moment: np.ndarray, count: int) -> np.ndarray:
    """Indices into a time-ordered list of ``count`` measurements at the moments
    ``moment`` (fractions of the run in [0, 1))."""
    return np.minimum((moment * count).astype(np.int64), count - 1)


def predict_batch(stage_ms: Sequence[Sequence[float]], stage_batch_ms: Sequence[Sequence[float]],
                  overhead_batch_ms: Sequence[Sequence[float]], exit_rates: Sequence[float],
                  exit_stages: Sequence[int], batch: int, draws: int = DRAWS // 4,
                  seed: int = 0, overhead_pair_ms: Sequence[Sequence[float]] | None = None
                  ) -> dict[str, Any]:
    """Latency per sample (a batch's time / its size) for batches of ``batch`` rows.

    Each draw deals ``batch`` samples to exits by the rates; stage s then runs on
    the m_s rows still active, and costs the batch-1 and batch-B pass times
    interpolated linearly in m_s (a stage's cost is a call overhead plus work per
    row). The overhead is built the same way: exit 0's (all B rows decide there),
    plus, for each later exit k that rows reach, the extra cost of the path to k
    over the path to k-1 (routing the rows on, deciding them), interpolated between
    its value for batches of 2 (``overhead_pair_ms``: the batch code's fixed cost per
    call; batch 1 takes another code path) and of B by the rows that reach k.
    Charging a batch the overhead of its deepest row's path as measured with all B
    rows forced there predicted the residual 96x96 model 15-30 % slow (its hand-offs
    are copied row by row); scaling from batch 1's scalar path predicted the demo
    20-27 % fast (the batch code's numpy calls cost the same for 1 row as for 8).
    """
    overheads = path_overheads(overhead_batch_ms)
    ones = _check(stage_ms, exit_rates, exit_stages, overheads)
    small, small_rows = overheads, batch
    if overhead_pair_ms and batch > 2:
        small, small_rows = path_overheads(overhead_pair_ms), 2
    full = np.asarray(stage_batch_ms, dtype=np.float64)
    if batch < 2 or full.shape[0] != ones.shape[0]:
        raise InputDataError("batch timings need a batch of at least 2 and every stage")
    rates = np.asarray(exit_rates, np.float64)
    rng = np.random.default_rng(seed)
    path = rng.choice(len(rates), size=(draws, batch), p=rates / rates.sum())
    depth = np.asarray(exit_stages)[path]                               # [draw, row]
    total = np.zeros(draws)
    moment = rng.random(draws)  # as in predict_batch1: one moment per draw
    one_pass, full_pass = at_moment(moment, ones.shape[1]), at_moment(moment, full.shape[1])
    for s in range(ones.shape[0]):
        total += _interpolated(ones[s][one_pass], full[s][full_pass],
                               (depth >= s).sum(axis=1), 1, batch)
    at = [samples[at_moment(moment, samples.size)] for samples in overheads]
    at_small = [samples[at_moment(moment, samples.size)] for samples in small]
    total += at[0]
    for k in range(1, len(overheads)):
        total += _interpolated(at_small[k] - at_small[k - 1], at[k] - at[k - 1],
                               (path >= k).sum(axis=1), small_rows, batch)
    return distribution(total / batch)


def _interpolated(low: np.ndarray, high: np.ndarray, rows: np.ndarray, low_rows: int,
                  batch: int) -> np.ndarray:
    """A cost measured at ``low_rows`` and ``batch`` rows, at ``rows`` rows: linear between
    them, ``low`` below ``low_rows``, nothing at 0 rows."""
    if batch == low_rows:
        return np.where(rows > 0, high, 0.0)
    share = (np.maximum(rows, low_rows) - low_rows) / (batch - low_rows)
    return np.where(rows > 0, low + (high - low) * share, 0.0)


def compare(predicted: dict[str, float], measured: dict[str, float]) -> dict[str, float]:
    """predicted / measured for every statistic both have."""
    return {k: predicted[k] / measured[k] for k in ("mean", *QUANTILES)
            if k in predicted and k in measured and measured[k] > 0}


def end_to_end(timing: dict[str, Any], exit_stages: Sequence[int]) -> dict[str, Any]:
    """Predicted and measured latency per sample, side by side (a CascadeTiming's JSON).

    The exit rates are those of the measured stream itself (the cascade's own
    decisions on the data, on the device), so the comparison checks the timing
    model, not the rates.
    """
    exits = np.asarray(timing["exit_index"])
    n_exits = len(timing["overhead_ms"])
    rates = [float(np.mean(exits == k)) for k in range(n_exits)]
    batch1 = predict_batch1(timing["stage_ms"], timing["overhead_ms"], rates, exit_stages)
    measured = distribution(timing["measured_ms"])
    out: dict[str, Any] = {
        "exit_rates": rates, "samples": int(exits.size) // max(1, int(timing["rounds"])),
        "rounds": timing["rounds"],
        "overhead": {k: batch1.pop(k) for k in ("stages_ms", "overhead_ms",
                                                "stages_per_sample", "overhead_per_stage_us",
                                                "overhead_by_exit_ms")},
        "batch1": {"predicted": batch1, "measured": measured,
                   "ratio": compare(batch1, measured), "runs": len(timing["measured_ms"])}}
    batch = int(timing["batch"])
    if batch > 1 and timing["measured_batch_ms"]:
        predicted = predict_batch(timing["stage_ms"], timing["stage_batch_ms"],
                                  timing["overhead_batch_ms"], rates, exit_stages, batch,
                                  overhead_pair_ms=timing.get("overhead_pair_ms"))
        measured_b = distribution(np.asarray(timing["measured_batch_ms"]) / batch)
        out[f"batch{batch}"] = {"predicted": predicted, "measured": measured_b,
                                "ratio": compare(predicted, measured_b),
                                "runs": len(timing["measured_batch_ms"])}
    return out
