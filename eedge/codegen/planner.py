"""Static memory planning: every activation gets an offset in one arena.

Lifetimes run over the whole cascade (all stages in order), so a hand-off
stays resident exactly until its last reader, whichever stage that is, and
stage outputs stay until the end of their stage (the exit decision and the
test harness read them there). RESHAPE is free: its output is an alias of
its input's buffer. Buffers are placed greedily, largest first, at the
lowest offset that does not overlap any buffer alive at the same time --
the strategy of TFLite Micro's greedy planner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ALIGNMENT = 16


@dataclass
class Buffer:
    """One region of the arena, shared by a tensor and its aliases."""

    tensors: list[str]
    size: int
    first: int   # first step it must hold data (-1: before the first node)
    last: int    # last step it is read
    offset: int = -1


@dataclass
class MemoryPlan:
    offsets: dict[str, int]
    arena_bytes: int
    buffers: list[Buffer] = field(default_factory=list)
    fusions: list[Any] = field(default_factory=list)  # banded conv + ADD joins (codegen.banded)

    def overlapping_live_pairs(self) -> list[tuple[str, str]]:
        """Pairs of tensors alive at the same step that share bytes (must be empty)."""
        bad = []
        for i, a in enumerate(self.buffers):
            for b in self.buffers[i + 1:]:
                live = a.first <= b.last and b.first <= a.last
                overlap = a.offset < b.offset + b.size and b.offset < a.offset + a.size
                if live and overlap:
                    bad.append((a.tensors[0], b.tensors[0]))
        return bad


def _align(value: int) -> int:
    return (value + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def place(buffers: list[Buffer]) -> int:
    """Assign offsets in place; returns the arena size."""
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i].size, buffers[i].first, i))
    placed: list[Buffer] = []
    for i in order:
        buf = buffers[i]
        conflicts = sorted((b for b in placed if b.first <= buf.last and buf.first <= b.last),
                           key=lambda b: b.offset)
        offset = 0
        for other in conflicts:
            if offset + buf.size <= other.offset:
                break
            offset = max(offset, _align(other.offset + other.size))
        buf.offset = offset
        placed.append(buf)
    return max((_align(b.offset + b.size) for b in buffers), default=0)


def plan_memory(tensor_sizes: Mapping[str, int], steps: Sequence[tuple[list[str], list[str]]],
                inputs: Sequence[str], keep_until: Mapping[str, int],
                aliases: Mapping[str, str]) -> MemoryPlan:
    """Plan the arena.

    ``steps`` are the nodes in execution order as (activation inputs, outputs);
    ``keep_until`` extends a tensor's life to a step (stage ends, exits);
    ``aliases`` maps an output to the input whose buffer it reuses.
    """
    root: dict[str, str] = {}

    def find(t: str) -> str:
        while t in root:
            t = root[t]
        return t

    for out, src in aliases.items():
        root[out] = src
    first: dict[str, int] = {t: -1 for t in inputs}
    last: dict[str, int] = {t: -1 for t in inputs}
    for step, (reads, writes) in enumerate(steps):
        for t in writes:
            first.setdefault(t, step)
            last[t] = max(last.get(t, step), step)
        for t in reads:
            last[t] = max(last.get(t, step), step)
    for t, step in keep_until.items():
        last[t] = max(last.get(t, step), step)
    groups: dict[str, Buffer] = {}
    for t in first:
        r = find(t)
        buf = groups.get(r)
        if buf is None:
            groups[r] = Buffer([t], tensor_sizes[t], first[t], last[t])
        else:
            buf.tensors.append(t)
            buf.size = max(buf.size, tensor_sizes[t])
            buf.first, buf.last = min(buf.first, first[t]), max(buf.last, last[t])
    buffers = list(groups.values())
    arena = place(buffers)
    offsets = {t: b.offset for b in buffers for t in b.tensors}
    return MemoryPlan(offsets=offsets, arena_bytes=arena, buffers=buffers)
