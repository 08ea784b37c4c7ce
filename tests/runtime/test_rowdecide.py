"""The compiled batch-1 helper (eedge/runtime/_rowdecide.c) against its Python twin.

The whole-cascade equality (compiled and pure-Python paths against the batch code,
every criterion, threshold, window and runtime) is in test_fast_path.py; here are the
helper's own contracts: it is built, it compiles warning-free, its decisions are the
Python decisions wherever it takes one, and it declines (None) whatever it cannot read.
"""

from __future__ import annotations

import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from eedge.runtime import cascade_one
from eedge.runtime.cascade_one import ExitPlan, OneSample

SOURCE = Path(cascade_one.__file__).with_name("_rowdecide.c")
CODES = {"max_softmax": 0, "margin": 1, "gate": 2}


@pytest.fixture(scope="module")
def helper():  # type: ignore[no-untyped-def]
    if cascade_one.compiled is None:
        pytest.fail("eedge.runtime._rowdecide is not built: `pip install -e .` (make setup) "
                    "compiles it; without it the runtime falls back to pure Python")
    return cascade_one.compiled


def test_compiles_warning_free(tmp_path: Path) -> None:
    include = sysconfig.get_paths()["include"]
    for std in ("c99", "c11"):
        subprocess.run(["gcc", f"-std={std}", "-O2", "-Wall", "-Wextra", "-Werror",
                        "-Wconversion", "-Wshadow", "-fPIC", f"-I{include}", "-c",
                        str(SOURCE), "-o", str(tmp_path / f"{std}.o")], check=True)


def _plan(classes: int, gate: int | None, final: bool) -> ExitPlan:
    return ExitPlan(0, None, None, classes, gate, final, None, 1e-12 * (classes + 8))


class _Policy:
    """The few cascade fields OneSample.decide reads."""

    def __init__(self, criterion: str, threshold: float | None, low: float | None) -> None:
        self.criteria, self.thresholds, self.window_low = [criterion], [threshold], [low]


def _python_decision(row: np.ndarray, plan: ExitPlan, criterion: str,
                     threshold: float | None, low: float | None) -> object:
    one = OneSample.__new__(OneSample)
    one.cascade = _Policy(criterion, threshold, low)  # type: ignore[assignment]
    decision = one.decide(plan, row, True)
    return decision if decision is False or decision is None else decision[::2][:2]


def test_decisions_are_the_python_decisions(helper) -> None:  # type: ignore[no-untyped-def]
    """Random rows (some with ties, some near the threshold): wherever the helper decides,
    Python's decide gives the same class and rejection; it declines only near an edge."""
    rng = np.random.default_rng(0)
    declined = decided = 0
    for case in range(4000):
        classes = int(rng.integers(1, 14))
        criterion = ("max_softmax", "margin", "gate")[case % 3]
        gate = classes if criterion == "gate" or case % 7 == 0 else None
        row = (rng.standard_normal((1, classes + (gate is not None))) *
               rng.choice([0.5, 3.0, 30.0])).astype(np.float32)
        if case % 11 == 0:
            row[0, : classes // 2] = row[0, 0]  # ties: the first maximum wins
        final = case % 13 == 0
        threshold = None if case % 5 == 0 else float(rng.random())
        low = float(rng.random()) * 0.5 if case % 4 == 0 else None
        plan = _plan(classes, gate, final)
        got = helper.float_decision(row, classes, -1 if gate is None else gate,
                                    CODES[criterion], threshold, low, plan.margin, final)
        expected = _python_decision(row, plan, criterion, threshold, low)
        if got is None:
            declined += 1
            continue
        decided += 1
        assert got == (expected if expected is False else
                       (expected[0], expected[1])), (case, row, threshold, low)
    assert decided > 3900 and declined < 100


def test_exact_edges_are_left_to_python(helper) -> None:  # type: ignore[no-untyped-def]
    """A threshold at the score (or a window edge there) is Python's exact decision."""
    row = np.array([[0.3, 2.0, -1.0, 0.5]], np.float32)
    values = row[0].astype(np.float64)
    score = float(np.exp(values.max()) / np.exp(values).sum())
    for threshold, low in ((score, None), (np.nextafter(score, 1.0), None), (0.1, score)):
        assert helper.float_decision(row, 4, -1, 0, threshold, low, 1e-11, False) is None
    assert helper.float_decision(row, 4, -1, 0, score - 1e-6, None, 1e-11, False) == (1, False)
    assert helper.float_decision(row, 4, -1, 0, score + 1e-6, None, 1e-11, False) is False
    assert helper.float_decision(row, 4, -1, 0, None, score + 1e-6, 1e-11, True) == (1, True)


@pytest.mark.parametrize("tensor", [
    np.array([[1.0, np.nan, 0.0]], np.float32), np.array([[1.0, np.inf, 0.0]], np.float32),
    np.array([[700.0, 1.0, 0.0]], np.float32),                 # beyond +-600: Python scores
    np.array([[1.0, 2.0, 0.0]], np.float64),                   # not float32
    np.zeros((3, 2), np.float32).T,                            # not C-contiguous
    np.zeros((1, 2), np.float32),                              # shorter than the classes
    [[1.0, 2.0, 3.0]],                                         # no buffer
])
def test_declines_what_it_cannot_read(helper, tensor) -> None:  # type: ignore[no-untyped-def]
    assert helper.float_decision(tensor, 3, -1, 0, 0.5, None, 1e-11, False) is None


def test_declines_bad_layouts_and_rejects_bad_arguments(helper) -> None:  # type: ignore[no-untyped-def]
    row = np.zeros((1, 4), np.float32)
    assert helper.float_decision(row, 3, 1, 2, 0.5, None, 1e-11, False) is None  # gate != classes
    assert helper.float_decision(row, 4, -1, 2, 0.5, None, 1e-11, False) is None  # gate, no column
    assert helper.float_decision(row, 0, -1, 0, 0.5, None, 1e-11, False) is None
    assert helper.float_decision(row, 4, -1, 9, 0.5, None, 1e-11, False) is None
    with pytest.raises(TypeError):
        helper.float_decision(row, 4, -1, 0, "high", None, 1e-11, False)
    with pytest.raises(TypeError):
        helper.float_decision(row, 4)


def test_sum_squares(helper) -> None:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    assert helper.sum_squares(x) == pytest.approx(float(np.vdot(x, x)), rel=1e-6)
    huge = np.full((1, 64), 3e38, np.float32)  # float32 BLAS overflows; double does not
    assert np.isfinite(helper.sum_squares(huge))
    for bad in (np.nan, np.inf):
        y = x.copy()
        y[0, 1, 2, 3] = bad
        assert not np.isfinite(helper.sum_squares(y))
    for declined in (x.astype(np.float64), x.transpose(0, 2, 3, 1), np.zeros(1025, np.float32),
                     b"abcd"):
        assert helper.sum_squares(declined) is None


def test_run_stages_errors_propagate(helper) -> None:  # type: ignore[no-untyped-def]
    """A stage that raises, or an input missing from the store, is the caller's error."""
    def broken(_arrays: list[np.ndarray]) -> list[np.ndarray]:
        raise RuntimeError("stage failed")

    stages = ((broken, ("input",), ("out",), -1, None),)
    with pytest.raises(RuntimeError, match="stage failed"):
        helper.run_stages(stages, 0, {"input": np.zeros(1)}, [], [], [], [], True)
    with pytest.raises(KeyError, match="input"):
        helper.run_stages(stages, 0, {}, [], [], [], [], True)
    with pytest.raises(TypeError):
        helper.run_stages(stages, 0, [], [], [], [], [], True)
    # malformed stage tuples and exit arguments are refused, never read out of bounds
    store = {"input": np.zeros(1)}
    for bad in (((broken, ("input",), ("out",), -1),),             # 4 fields
                ((broken, "input", ("out",), -1, None),),          # names not a tuple
                [[broken, ("input",), ("out",), -1, None]]):       # a list, not a tuple
        with pytest.raises(TypeError, match="a stage is"):
            helper.run_stages(bad, 0, store, [], [], [], [], True)

    def ones(_arrays: list[np.ndarray]) -> list[np.ndarray]:
        return [np.ones((1, 3), np.float32)]

    with pytest.raises(ValueError, match=">= 0"):
        helper.run_stages(stages, -1, store, [], [], [], [], True)
    with pytest.raises(TypeError, match="tuple of 4 or 7"):
        helper.run_stages(((ones, ("input",), ("e",), 0, (3, -1, 1e-11)),), 0, store, [],
                          ["max_softmax"], [0.5], [None], True)


def test_run_stages_runs_times_and_stops(helper) -> None:  # type: ignore[no-untyped-def]
    """Stages run in order with their inputs from the store and outputs into it; the loop
    stops where a row leaves, where only Python decides, or after the last stage."""
    calls: list[str] = []

    def stage(name: str, logits: list[float]):  # type: ignore[no-untyped-def]
        def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
            calls.append(name)
            return [np.array([logits], np.float32), arrays[0] + 1]
        return run

    args = (3, -1, 1e-11, False)
    stages = ((stage("a", [0.0, 0.0, 0.0]), ("x",), ("e0", "h0"), 0, args),
              (stage("b", [0.0, 9.0, 0.0]), ("h0",), ("e1", "h1"), 1, args),
              (stage("c", [1.0, 0.0, 0.0]), ("h1",), ("e2",), 2, (3, -1, 1e-11, True)))
    store = {"x": np.zeros(2)}
    seconds: list[float] = []
    policy = (["max_softmax"] * 3, [0.5, 0.5, None], [None] * 3)
    assert helper.run_stages(stages, 0, store, seconds, *policy, True) == (1, (1, False))
    assert calls == ["a", "b"] and len(seconds) == 2 and all(t >= 0 for t in seconds)
    assert np.array_equal(store["h1"], np.full(2, 2.0))
    assert helper.run_stages(stages, 0, dict(store), [], *policy, False) == (2, (0, False))
    entropy = (["entropy", "max_softmax", "max_softmax"], *policy[1:])
    assert helper.run_stages(stages, 0, dict(store), [], *entropy, True) == (0, None)
    assert helper.run_stages(stages[:1], 0, dict(store), [], *policy, True) == (1, None)


@pytest.mark.parametrize("layout,shape", [("NCHW", (1, 3, 4, 5)), ("NCL", (1, 6, 7)),
                                          ("NLC", (1, 7, 6)), (None, (1, 40))])
def test_quantize_is_quantize_input_channels_last(helper, layout: str | None,  # type: ignore[no-untyped-def]
                                                   shape: tuple[int, ...]) -> None:
    """Bytes equal to quantize_input then to_channels_last: halves (ties round away from
    zero), their neighbours one ulp up, saturation at both ends, -0.0, values far beyond
    int8 and beyond float32 / scale (inf quotients saturate too)."""
    from eedge.ir.graph import QuantParams
    from eedge.ir.layout import to_channels_last
    from eedge.reference.int8_kernels import quantize_input

    rng = np.random.default_rng(2)
    size = int(np.prod(shape))
    for scale, zero_point in ((0.0078125, -128), (0.0123, 3), (3.7e-5, 127), (100.0, -7)):
        halves = np.float32(scale) * (rng.integers(-400, 400, size) / 2).astype(np.float32)
        specials = np.resize(np.array([-0.0, 0.0, 3e38, -3e38, 1e30, -1e-30], np.float32),
                             size)
        for values in (halves, np.nextafter(halves, np.float32(np.inf)), specials,
                       rng.standard_normal(size).astype(np.float32) * 1e4):
            x = values.reshape(shape)
            expected = to_channels_last(quantize_input(x, QuantParams((scale,), (zero_point,))),
                                        layout)
            out = np.empty(expected.shape, np.int8)
            channels = shape[1] if (layout, len(shape)) in (("NCHW", 4), ("NCL", 3)) else 1
            assert helper.quantize(x, out, np.float32(scale), zero_point, channels) is True
            assert np.array_equal(out, expected), (scale, zero_point, layout)


def test_quantize_declines_what_it_cannot_write(helper) -> None:  # type: ignore[no-untyped-def]
    x = np.ones((1, 4, 2), np.float32)
    good = np.empty((1, 2, 4), np.int8)
    assert helper.quantize(x, good, 0.1, 0, 4) is True
    for out, channels in ((np.empty(7, np.int8), 1), (np.empty(8, np.uint8), 1),
                          (np.empty(8, np.int16), 1), (good, 3), (good, 0),
                          (np.empty(8, np.int8)[::-1], 1)):
        assert helper.quantize(x, out, 0.1, 0, channels) is None
    readonly = np.empty(8, np.int8)
    readonly.flags.writeable = False
    assert helper.quantize(x, readonly, 0.1, 0, 1) is None
    assert helper.quantize(x.astype(np.float64), good, 0.1, 0, 4) is None
    assert helper.quantize(np.full((1, 8), np.nan, np.float32), good, 0.1, 0, 1) is None
    assert helper.quantize(x, good, 0.1, 300, 4) is None  # zero point beyond int8


def test_int8_decisions_are_the_python_decisions(helper) -> None:  # type: ignore[no-untyped-def]
    """Random int8 rows (ties, gates, windows, finals, budget offsets): run_stages decides
    every int8 exit as Python's _decide_int8 does, for max_softmax, margin and gate."""
    from eedge.policies.int8_softmax import exp_table

    rng = np.random.default_rng(4)
    for case in range(1500):
        classes = int(rng.integers(1, 12))
        criterion = ("max_softmax", "margin", "gate")[case % 3]
        gate = classes if criterion == "gate" or case % 5 == 0 else None
        scale = float(rng.choice([0.02, 0.0625, 0.17, 0.5]))
        quant = (scale, int(rng.integers(-20, 20)))
        row = rng.integers(-128, 128, (1, classes + (gate is not None))).astype(np.int8)
        if case % 7 == 0:
            row[0, : classes // 2 + 1] = row[0, 0]  # ties: the first maximum wins
        final = case % 11 == 0
        threshold = None if case % 6 == 0 else float(rng.random())
        low = float(rng.random()) * 0.4 if case % 4 == 0 else None
        plan = ExitPlan(0, exp_table(scale), quant, classes, gate, final, None, 1e-12)
        one = OneSample.__new__(OneSample)
        one.cascade = _Policy(criterion, threshold, low)  # type: ignore[assignment]
        one.cascade.threshold_offset_q = int(rng.integers(-4, 5))  # type: ignore[attr-defined]
        one._limits = {}
        expected = one.decide(plan, row, True)
        args = one._compiled_args(plan)
        stage = ((lambda _arrays, r=row: [r]), ("x",), ("e",), 0, args)
        position, decided = helper.run_stages((stage,), 0, {"x": row}, [],
                                              *(one.cascade.criteria, one.cascade.thresholds,
                                                one.cascade.window_low), True)
        if expected is False:
            assert (position, decided) == (1, None), case
        else:
            assert position == 0 and decided == (expected[0], expected[2]), case


def test_int8_callbacks_that_return_garbage_are_refused(helper) -> None:  # type: ignore[no-untyped-def]
    from eedge.policies.int8_softmax import exp_table, row_scale

    table = exp_table(0.1)
    row = np.array([[5, -3, 9]], np.int8)

    def run(_arrays: list[np.ndarray]) -> list[np.ndarray]:
        return [row]

    def stage(scale_fn, limits_fn):  # type: ignore[no-untyped-def]
        args = (3, -1, False, table.exps, table.parts, scale_fn, limits_fn)
        return ((run, ("x",), ("e",), 0, args),)

    policy = (["max_softmax"], [0.5], [None])
    store = {"x": row}
    assert helper.run_stages(stage(row_scale, lambda *_: (0, None)), 0, store, [], *policy,
                             True) == (0, (2, False))
    with pytest.raises(TypeError, match="row_scale"):
        helper.run_stages(stage(lambda _t: 7, lambda *_: (0, None)), 0, store, [], *policy,
                          True)
    with pytest.raises(TypeError, match="limits"):
        helper.run_stages(stage(row_scale, lambda *_: 0), 0, store, [], *policy, True)
    # a table that is not 256 int64 values: Python decides
    short = (3, -1, False, table.exps[:10], table.parts, row_scale, lambda *_: (0, None))
    assert helper.run_stages(((run, ("x",), ("e",), 0, short),), 0, store, [], *policy,
                             True) == (0, None)
