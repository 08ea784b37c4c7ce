"""Run a cascade over many samples in slices, reporting how far it got.

A whole data set in one call gives no sign of life: on a ResNet-18,
``--runtime int8-reference`` spends seconds per stage. Every sample's result
depends only on that sample (exits are decided per row), so running slices
and joining the results gives the same decisions as one call, while a
:data:`~eedge.progress.Tick` after each slice drives a progress bar. Slices
are also taken when nobody watches, so what is computed never depends on
whether a terminal is attached.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from eedge.progress import Tick, quiet_tick
from eedge.runtime.cascade import Cascade, CascadeResult

MAX_ROWS = 256   # large enough that per-call overhead stays negligible
UPDATES = 50     # about this many progress updates for a large input


def slice_rows(samples: int) -> int:
    """Rows per slice: about ``UPDATES`` slices, each of 1..``MAX_ROWS`` rows."""
    return max(1, min(MAX_ROWS, -(-samples // UPDATES)))


def _batched(cascade: Cascade, x: np.ndarray | Mapping[str, np.ndarray]) -> bool:
    """Only a batch-first array is sliced; one unbatched sample or named inputs run whole."""
    return isinstance(x, np.ndarray) and x.ndim == len(cascade.inputs[0]["shape"]) and \
        len(cascade.inputs) == 1


def infer(cascade: Cascade, x: np.ndarray | Mapping[str, np.ndarray], early_exit: bool = True,
          tick: Tick | None = None) -> CascadeResult:
    """``cascade.infer`` over slices of ``x``, ticking (samples done, samples) after each."""
    tick = tick or quiet_tick
    if not _batched(cascade, x):
        result = cascade.infer(x, early_exit=early_exit)
        tick(1, 1)
        return result
    assert isinstance(x, np.ndarray)
    n, rows = len(x), slice_rows(len(x))
    parts = []
    tick(0, n)
    for start in range(0, max(n, 1), rows):
        parts.append(cascade.infer(x[start:start + rows], early_exit=early_exit))
        tick(min(start + rows, n), n)
    return join_results(parts, [len(x[s:s + rows]) for s in range(0, max(n, 1), rows)])


def run_all_exits(cascade: Cascade, x: np.ndarray | Mapping[str, np.ndarray],
                  raw: bool = False, tick: Tick | None = None) -> list[np.ndarray]:
    """``cascade.run_all_exits`` over slices of ``x`` (every exit's logits, every sample)."""
    tick = tick or quiet_tick
    if not _batched(cascade, x):
        logits = cascade.run_all_exits(x, raw=raw)
        tick(1, 1)
        return logits
    assert isinstance(x, np.ndarray)
    n, rows = len(x), slice_rows(len(x))
    parts: list[list[np.ndarray]] = []
    tick(0, n)
    for start in range(0, max(n, 1), rows):
        parts.append(cascade.run_all_exits(x[start:start + rows], raw=raw))
        tick(min(start + rows, n), n)
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
