"""The arena planner never lets two live tensors share bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from eedge.codegen.planner import Buffer, place, plan_memory


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5000), st.integers(-1, 30), st.integers(0, 30)),
                min_size=1, max_size=40))
def test_live_buffers_never_overlap(specs: list[tuple[int, int, int]]) -> None:
    buffers = [Buffer([f"t{i}"], size, min(a, b), max(a, b)) for i, (size, a, b) in
               enumerate(specs)]
    arena = place(buffers)
    for i, a in enumerate(buffers):
        assert a.offset % 16 == 0 and a.offset + a.size <= arena
        for b in buffers[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
    # never worse than giving every buffer its own region
    assert arena <= sum((b.size + 15) // 16 * 16 for b in buffers)


def test_chain_reuses_memory_and_aliases_share_a_buffer() -> None:
    sizes = {"x": 100, "a": 100, "b": 100, "c": 100, "r": 100}
    steps = [(["x"], ["a"]), (["a"], ["b"]), (["b"], ["r"]), (["r"], ["c"])]
    plan = plan_memory(sizes, steps, ["x"], {}, {"r": "b"})
    assert plan.offsets["r"] == plan.offsets["b"]
    assert plan.arena_bytes <= 2 * 112, "a chain needs two buffers, not five"
    assert plan.overlapping_live_pairs() == []


def test_keep_until_extends_a_lifetime() -> None:
    sizes = {"x": 64, "exit": 64, "h": 64, "y": 64}
    steps = [(["x"], ["exit"]), (["x"], ["h"]), (["h"], ["y"])]
    plan = plan_memory(sizes, steps, ["x"], {"exit": 2}, {})
    assert plan.overlapping_live_pairs() == []
    assert plan.offsets["exit"] not in (plan.offsets["h"], plan.offsets["y"])
