"""Run a cascade over many samples in slices, reporting how far it got.

A whole data set in one call gives no sign of life: on a ResNet-18,
``--runtime int8-reference`` spends seconds per stage. Every sample's result
depends only on that sample (exits are decided per row), so running slices
and joining the results gives the same decisions as one call, while a
:data:`~eedge.progress.Tick` after each slice drives a progress bar. Slices
are also taken when nobody watches, so what is computed never depends on
whether a terminal is attached.

Slices are sized by time, not count: each aims at ``SLICE_SECONDS``, so a big
model ticks every fraction of a second while a small one runs in a few large
slices (fixed small slices made the digits demo's int8-reference run 1.75x
slower: the reference executor's per-call cost dominates tiny models).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import numpy as np

from eedge.progress import Tick, quiet_tick
from eedge.runtime.cascade import Cascade, CascadeResult

SLICE_SECONDS = 0.2  # about five progress updates a second
FIRST_ROWS = 4       # the first slice measures the speed
MAX_ROWS = 4096      # bounds the memory of one slice
MAX_GROWTH = 8       # a slice is at most this many times the one before
T = TypeVar("T")


def _slices(samples: int) -> Iterator[slice]:
    """Consecutive slices covering ``samples`` rows, each sized to take about
    ``SLICE_SECONDS`` at the speed the previous ones ran (the caller runs each
    slice before asking for the next)."""
    start, rows = 0, min(FIRST_ROWS, max(samples, 1))
    while True:
        began = time.perf_counter()
        yield slice(start, start + rows)
        start += rows
        if start >= samples:
            return
        per_row = max(time.perf_counter() - began, 1e-6) / rows
        rows = int(min(MAX_ROWS, rows * MAX_GROWTH, max(1, SLICE_SECONDS / per_row)))


def _batched(cascade: Cascade, x: np.ndarray | Mapping[str, np.ndarray]) -> bool:
    """Only a batch-first array is sliced; one unbatched sample or named inputs run whole."""
    return isinstance(x, np.ndarray) and x.ndim == len(cascade.inputs[0]["shape"]) and \
        len(cascade.inputs) == 1


def _over_slices(cascade: Cascade, x: np.ndarray, run: Callable[[np.ndarray], T],
                 tick: Tick) -> tuple[list[T], list[int]]:
    """``run`` on consecutive slices of ``x``, ticking after each; results and sizes."""
    cascade.check_inputs(x)  # once on the whole array, so an error names the right sample
    n = len(x)
    parts, sizes = [], []
    tick(0, n)
    for rows in _slices(n):
        parts.append(run(x[rows]))
        sizes.append(len(x[rows]))
        tick(min(rows.stop, n), n)
    return parts, sizes


def infer(cascade: Cascade, x: np.ndarray | Mapping[str, np.ndarray], early_exit: bool = True,
          tick: Tick | None = None) -> CascadeResult:
    """``cascade.infer`` over slices of ``x``, ticking (samples done, samples) after each."""
    tick = tick or quiet_tick
    if not _batched(cascade, x):
        result = cascade.infer(x, early_exit=early_exit)
        tick(1, 1)
        return result
    assert isinstance(x, np.ndarray)
    parts, sizes = _over_slices(cascade, x, lambda rows: cascade.infer(
        rows, early_exit=early_exit), tick)
    return join_results(parts, sizes)


def run_all_exits(cascade: Cascade, x: np.ndarray | Mapping[str, np.ndarray],
                  raw: bool = False, tick: Tick | None = None) -> list[np.ndarray]:
    """``cascade.run_all_exits`` over slices of ``x`` (every exit's logits, every sample)."""
    tick = tick or quiet_tick
    if not _batched(cascade, x):
        logits = cascade.run_all_exits(x, raw=raw)
        tick(1, 1)
        return logits
    assert isinstance(x, np.ndarray)
    parts, _sizes = _over_slices(cascade, x, lambda rows: cascade.run_all_exits(
        rows, raw=raw), tick)
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def join_results(parts: list[CascadeResult], sizes: list[int]) -> CascadeResult:
    """One result from the results of consecutive slices (of ``sizes`` samples).

    Per-sample arrays are joined, per-stage costs added, and ``pending`` (row
    indices into the slice) shifted to index the whole input.
    """
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + sizes[:-1])
    values = {}
    for f in dataclasses.fields(CascadeResult):
        items = [getattr(p, f.name) for p in parts]
        if f.name == "pending":
            values[f.name] = np.concatenate([np.asarray(v, np.int64) + o
                                             for v, o in zip(items, offsets)])
        elif isinstance(items[0], np.ndarray):
            values[f.name] = np.concatenate(items)
        elif isinstance(items[0], list):
            values[f.name] = [sum(column) for column in zip(*items)]
        elif isinstance(items[0], dict):
            names = [k for item in items for k in item]
            values[f.name] = {k: np.concatenate([item[k] for item in items if k in item])
                              for k in dict.fromkeys(names)}
        else:
            raise TypeError(f"cannot join CascadeResult.{f.name} ({type(items[0]).__name__})")
    return CascadeResult(**values)
