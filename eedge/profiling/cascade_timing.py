"""Time a cascade end to end next to its stages and its own overhead, in one run.

Three measurements, interleaved in rounds, and within a round in blocks of a
few streamed samples, so that a change of load or speed of the machine hits
all of them alike (the host is shared; a Pi runs other things; this VM's
speed drifted by tens of percent within a second):

- **stage passes**: the data's samples in turn through every stage inside
  ``Cascade.infer`` (no exit taking them), each stage's time as the cascade
  measures it, at batch 1 and, if asked, at the user's batch size;
- **overhead**: ``Cascade.infer`` on the data with the thresholds forced so
  the sample leaves at exit k, for every k in turn: what the cascade costs
  outside its stage calls on that path (input checks and conversion, exit
  decisions, routing the rows that stay, the result arrays), measured where it
  runs, between real stages;
- **stream**: ``Cascade.infer`` on the data in stream order, one sample per
  call and in batches of the user's size: what a user measures.

The first two feed the prediction (:mod:`eedge.profiling.prediction`); the
third is what it is checked against. Only numpy and eedge's runtime are
imported, so the same code runs on a device (see remote_runner.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from eedge.runtime.cascade import Cascade

Say = Callable[[str], None]
MAX_STREAM = 2000  # samples streamed at batch 1 over all rounds, for large data sets
BLOCK = 8  # streamed samples (or batches) per block of interleaved measurements
WARM = 4  # untimed batch-1 inferences that re-warm the caches after a round's batches


@dataclass
class CascadeTiming:
    """Milliseconds; per-exit lists are indexed by exit (empty: that exit cannot be forced)."""

    batch: int                                    # the user's batch size (1: batch 1 only)
    stage_ms: list[list[float]]                   # [stage][pass], batch 1
    overhead_ms: list[list[float]]                # [exit][repeat], batch 1
    measured_ms: list[float]                      # per sample, stream order, batch 1
    exit_index: list[int]                         # per measured sample, the deciding exit
    stage_batch_ms: list[list[float]] = field(default_factory=list)     # [stage][pass], batch B
    overhead_batch_ms: list[list[float]] = field(default_factory=list)  # [exit][repeat], batch B
    measured_batch_ms: list[float] = field(default_factory=list)        # per batch of B
    rounds: int = 1
    stage_round_sizes: list[int] = field(default_factory=list)     # stage passes per round
    overhead_round_sizes: list[int] = field(default_factory=list)  # repeats per exit, round
    # [exit][repeat], batches of 2 (B > 2): the batch code's overhead with few rows
    overhead_pair_ms: list[list[float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "CascadeTiming":
        return cls(**data)

    def round(self, r: int) -> "CascadeTiming":
        """Round ``r`` alone at batch 1, to check a prediction round by round (a burst of
        load on the machine then spoils one round, not the comparison)."""
        def part(values: list[float], sizes: list[int]) -> list[float]:
            start = sum(sizes[:r])
            return values[start:start + sizes[r]]

        samples = len(self.measured_ms) // self.rounds
        return CascadeTiming(
            1, [part(t, self.stage_round_sizes) for t in self.stage_ms],
            [part(t, self.overhead_round_sizes) if t else [] for t in self.overhead_ms],
            self.measured_ms[r * samples:(r + 1) * samples],
            self.exit_index[r * samples:(r + 1) * samples], rounds=1)


def stage_io(cascade: Cascade, x: np.ndarray) -> tuple[list[list[np.ndarray]],
                                                       list[list[np.ndarray]]]:
    """Inputs and outputs of every stage for the rows of ``x`` (every stage run once)."""
    store = cascade.stage_inputs(x)
    feeds, outs = [], []
    for stage, io in zip(cascade.stages, cascade.io):
        feeds.append([store[t["name"]] for t in io["inputs"]])
        outs.append(cascade.runners[stage["index"]].run(feeds[-1]))
        store.update({t["name"]: v for t, v in zip(io["outputs"], outs[-1])})
    return feeds, outs


def _time_stages(cascade: Cascade, samples: list[np.ndarray], feeds: list[list[np.ndarray]],
                 passes: int, times: list[list[float]]) -> None:
    """``passes`` inferences through every stage, each stage's time as ``Cascade.infer``
    measures it (its ``stage_seconds``), appended to ``times``.

    Pass j runs ``samples[j % len(samples)]``: the data in turn, as in the stream (one
    input over and over keeps every buffer in cache and times large stages ~8% fast).

    The stages run inside the cascade with no exit taking the sample (thresholds and
    windows off), so each sees the caches and the decisions between stages that a
    real inference has: timed alone in a tight loop, small stages look up to twice
    as fast as they run in the cascade. A stage the cascade skips (after an
    ensemble's last member) is timed by calling it directly on ``feeds``.
    """
    saved = (cascade.thresholds, cascade.window_low)
    cascade.thresholds = [None] * len(cascade.exits)
    cascade.window_low = [None] * len(cascade.exits)
    runners = [getattr(r, "run_borrowed", r.run) for r in
               (cascade.runners[s["index"]] for s in cascade.stages)]
    clock = time.perf_counter
    try:
        for j in range(passes):
            result = cascade.infer(samples[j % len(samples)])
            for k, (seconds, rows) in enumerate(zip(result.stage_seconds,
                                                    result.stage_samples)):
                if rows == 0:
                    start = clock()
                    runners[k](feeds[k])
                    seconds = clock() - start
                times[k].append(seconds * 1e3)
    finally:
        cascade.thresholds, cascade.window_low = saved


def forcing(k: int, exits: int) -> list[float | None]:
    """Thresholds that make every sample leave at exit k: 0 there, none before it."""
    return [None] * k + [0.0] + [None] * (exits - k - 1)


def forced_exits(cascade: Cascade, sample: np.ndarray) -> list[bool]:
    """Per exit, whether a threshold of 0 there (None before it) makes ``sample`` leave
    there: an ensemble member that never decides alone cannot be forced."""
    exits = len(cascade.exits)
    saved = (cascade.thresholds, cascade.window_low)
    cascade.window_low = [None] * exits
    try:
        forced = []
        for k in range(exits):
            cascade.thresholds = forcing(k, exits)
            forced.append(bool(np.all(cascade.infer(sample).exit_index == k)))
        return forced
    finally:
        cascade.thresholds, cascade.window_low = saved


def _time_overhead(cascade: Cascade, samples: list[np.ndarray], repeats: int,
                   times: list[list[float]], forced: list[bool]) -> None:
    """``Cascade.infer`` forced to leave at each exit in turn: its time outside the stage
    calls on that path (input checks, decisions, routing, the result arrays).

    The stages really run, on the data in turn, so the cascade's own code meets the
    caches the kernels leave, as in the stream (with the stages replayed from memory
    it ran about twice as fast, which under-predicted stage-heavy models by ~7%). Only
    the exits in ``forced`` (:func:`forced_exits`) are timed; the others keep an
    empty list.
    """
    if repeats < 1 or not samples:
        return
    exits = len(cascade.exits)
    saved = (cascade.thresholds, cascade.window_low)
    cascade.window_low = [None] * exits
    clock = time.perf_counter
    try:
        for j in range(repeats):
            sample = samples[j % len(samples)]
            for k in range(exits):
                if not forced[k]:
                    continue
                cascade.thresholds = forcing(k, exits)
                start = clock()
                result = cascade.infer(sample)
                total = clock() - start
                times[k].append((total - sum(result.stage_seconds)) * 1e3)
    finally:
        cascade.thresholds, cascade.window_low = saved


def _time_stream(cascade: Cascade, samples: list[np.ndarray], times: list[float],
                 exits: list[int] | None = None) -> None:
    """``Cascade.infer`` on each item in order; ``exits`` collects batch-1 decisions."""
    clock = time.perf_counter
    for item in samples:
        start = clock()
        result = cascade.infer(item)
        times.append((clock() - start) * 1e3)
        if exits is not None:
            exits.append(int(result.exit_index[0]))


class _Cursor:
    """Hands out items in order, wrapping around: each block continues where the last
    block of its kind stopped, so over a run every sample is used about equally."""

    def __init__(self, items: list[np.ndarray]) -> None:
        self.items, self.position = items, 0

    def take(self, count: int) -> list[np.ndarray]:
        start, self.position = self.position, self.position + count
        return [self.items[(start + i) % len(self.items)] for i in range(count)]


def split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` sizes differing by at most one, the larger ones spread evenly
    (20 passes over 45 blocks: every other block or so, not the first 20: the
    prediction pairs measurements by their place in time)."""
    return [(i + 1) * total // parts - i * total // parts for i in range(parts)]


def time_cascade(cascade: Cascade, x: np.ndarray, batch: int = 1, rounds: int = 5,
                 stage_passes: int = 200, overhead_repeats: int = 200, warmup: int = 20,
                 stream: bool = True, say: Say | None = None,
                 tick: Callable[[int, int], None] | None = None) -> CascadeTiming:
    """Stage passes, overhead and the stream, interleaved in ``rounds`` rounds.

    ``stage_passes`` and ``overhead_repeats`` are totals split over the rounds;
    every round streams ``x`` in order (batch 1, then batches of ``batch``): all of it,
    or for data sets over MAX_STREAM samples the next slice of MAX_STREAM / rounds.
    Within a round, batch 1 runs in blocks of BLOCK streamed samples, each with its
    share of stage passes and overhead repeats; then batch B in blocks of its own
    (stage passes, forced paths at B rows and at 2, BLOCK batches streamed).
    ``stream=False`` times the stages only (no data to stream: no exit rates).
    ``tick(done, rounds)`` reports rounds done.
    """
    say = say or (lambda _m: None)
    rounds = max(1, min(rounds, stage_passes))
    n_exits = len(cascade.exits)
    feeds, _ = stage_io(cascade, x[:1])
    per_round = min(len(x), -(-MAX_STREAM // rounds))
    singles = [x[i:i + 1] for i in range(len(x))]
    batches: list[np.ndarray] = []
    pairs: list[np.ndarray] = []
    feeds_b: list[list[np.ndarray]] = []
    if batch > 1 and stream:
        rows = min(batch, len(x))
        batches = [x[i:i + rows] for i in range(0, len(x) - rows + 1, rows)]
        feeds_b, _ = stage_io(cascade, x[:rows])
        if rows > 2:  # the batch code's routing costs a fixed part per call: 2 rows show it
            pairs = [x[i:i + 2] for i in range(0, len(x) - 1, 2)]
    timing = CascadeTiming(batch, [[] for _ in feeds], [[] for _ in range(n_exits)], [], [],
                           [[] for _ in feeds_b], [[] for _ in range(n_exits)] if batches
                           else [], [], rounds,
                           overhead_pair_ms=[[] for _ in range(n_exits)] if pairs else [])
    scratch: list[list[float]] = [[] for _ in feeds]
    say(f"timing {len(feeds)} stages in cascade order" + (
        ", the cascade's overhead per exit and the cascade end to end" if stream else "")
        + f" ({warmup} warm-up + {stage_passes} passes in {rounds} rounds)")
    if tick is not None:
        tick(0, rounds)
    pass_inputs = singles if stream else singles[:1]
    _time_stages(cascade, pass_inputs, feeds, warmup, scratch)
    if stream:
        _time_stream(cascade, singles[:warmup], [])
    forced = forced_exits(cascade, singles[0]) if stream else []
    cursors = {kind: _Cursor(items) for kind, items in
               (("pass", pass_inputs), ("overhead", singles), ("stream", singles),
                ("batch pass", batches), ("batch overhead", batches),
                ("batch stream", batches), ("pair overhead", pairs))}
    for r, (share, repeat_share) in enumerate(zip(split(stage_passes, rounds),
                                                  split(overhead_repeats, rounds))):
        timing.stage_round_sizes.append(share)
        timing.overhead_round_sizes.append(repeat_share if stream else 0)
        # a round is cut into blocks of about BLOCK streamed samples, each block timing
        # a share of the stage passes and overhead repeats next to its samples: the
        # speed of a shared machine drifts by tens of percent within a second, and
        # measurements taken seconds apart disagreed by that much
        if r and stream:  # the last round's batches left other data in the caches
            _time_stream(cascade, singles[:WARM], [])
        blocks = max(1, per_round // BLOCK) if stream else 1
        for passes, repeats, samples in zip(
                split(share, blocks), split(repeat_share, blocks), split(per_round, blocks)):
            _time_stages(cascade, cursors["pass"].take(passes), feeds, passes,
                         timing.stage_ms)
            if stream:
                _time_overhead(cascade, cursors["overhead"].take(repeats), repeats,
                               timing.overhead_ms, forced)
                _time_stream(cascade, cursors["stream"].take(samples), timing.measured_ms,
                             timing.exit_index)
        if batches:
            # batch B after the batch-1 blocks, in blocks of its own: interleaved with
            # batch 1 block by block, each batch-1 stage pass came right after a batch's
            # work and ran up to 1.8x slow (eedge profile's 200 passes: one per block)
            count = max(1, per_round // batch)
            blocks = max(1, count // BLOCK)
            for passes, repeats, samples in zip(split(max(1, share // 2), blocks),
                                                split(max(1, repeat_share // 2), blocks),
                                                split(count, blocks)):
                _time_stages(cascade, cursors["batch pass"].take(passes), feeds_b, passes,
                             timing.stage_batch_ms)
                _time_overhead(cascade, cursors["batch overhead"].take(repeats), repeats,
                               timing.overhead_batch_ms, forced)
                if pairs:
                    _time_overhead(cascade, cursors["pair overhead"].take(repeats), repeats,
                                   timing.overhead_pair_ms, forced)
                _time_stream(cascade, cursors["batch stream"].take(samples),
                             timing.measured_batch_ms)
        if tick is not None:
            tick(r + 1, rounds)
    return timing
