"""One sample at a time (eedge.runtime.cascade_one) decides exactly as the batch code.

``Cascade.infer`` takes a scalar path for batch 1 (eedge.runtime.cascade_one,
``OneSample.infer``/``decide``). Every field of its result must equal, bit for
bit, the row the batch path gives the same sample, for every criterion,
threshold, window, gate, runtime (float ONNX Runtime and int8), ensemble mode,
head bundle and the input checks. The batch path is the reference because it
is the one the other tests check against ONNX Runtime, TFLite Micro and the C.
Tests marked with the ``path`` fixture run twice: with the compiled stage loop and
decisions (eedge/runtime/_rowdecide.c) and with the pure-Python path alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from gated_model import bundle_path, inputs

from eedge.errors import InputDataError
from eedge.ir.bundle import Bundle, load_bundle, update_manifest
from eedge.policies import running_mean
from eedge.policies.criteria import gate_score, score_from_probabilities, softmax
from eedge.runtime import cascade_one
from eedge.runtime.cascade import Cascade, CascadeResult

CRITERIA = ("max_softmax", "margin", "entropy", "gate")
RUNTIMES = ("onnx", "int8")
N = 120


@pytest.fixture(params=["compiled", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The batch-1 path under test: the compiled helper, or pure Python without it."""
    if request.param == "compiled" and cascade_one.compiled is None:
        pytest.fail("eedge.runtime._rowdecide is not built (`pip install -e .` builds it)")
    if request.param == "python":
        monkeypatch.setattr(cascade_one, "compiled", None)
    return str(request.param)


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.ascontiguousarray(inputs(N), dtype=np.float32)


@pytest.fixture(scope="module")
def cascades() -> dict[str, Cascade]:
    bundle = load_bundle(bundle_path())
    return {runtime: Cascade(bundle, runtime=runtime) for runtime in RUNTIMES}


def _scores(cascade: Cascade, x: np.ndarray, criterion: str) -> list[np.ndarray]:
    """Float scores per exit (to place thresholds where they split the samples)."""
    out = []
    for k, logits in enumerate(cascade.run_all_exits(x)):
        column = cascade.gates[k]
        if criterion == "gate" and column is not None:
            out.append(gate_score(logits[:, column]))
        else:
            classes = logits if column is None else logits[:, :column]
            name = "max_softmax" if criterion == "gate" else criterion
            out.append(score_from_probabilities(softmax(classes), name))
    return out


def _assert_rows_equal(batch: CascadeResult, singles: list[CascadeResult]) -> None:
    """Every per-sample field of the batch result equals the one-sample results, bitwise."""
    for field in ("predictions", "probabilities", "exit_index", "confidence", "rejected",
                  "confidence_q"):
        rows = np.concatenate([getattr(s, field) for s in singles])
        expected = getattr(batch, field)
        assert rows.dtype == expected.dtype, field
        assert np.array_equal(rows.view(np.uint8), expected.view(np.uint8)), field
    pending = [i for i, s in enumerate(singles) if s.pending.size]
    assert pending == batch.pending.tolist()
    for s in singles:
        assert s.stage_samples == [int(r > 0) for r in s.stage_samples]
        assert len(s.stage_seconds) == len(s.stage_samples)
        assert all(t == 0.0 for t, r in zip(s.stage_seconds, s.stage_samples) if not r)
    for name, rows in batch.handoff.items():
        one = np.concatenate([s.handoff[name] for s in singles if s.pending.size])
        assert np.array_equal(one, rows), name


def _outcome(cascade: Cascade, x: np.ndarray) -> tuple[object, ...]:
    """The first row's decision, or the error message."""
    try:
        r = cascade.infer(x)
    except InputDataError as exc:
        return ("error", str(exc))
    return (int(r.exit_index[0]), int(r.predictions[0]), r.probabilities[0].tobytes())


def _compare(cascade: Cascade, x: np.ndarray, early_exit: bool = True) -> CascadeResult:
    batch = cascade.infer(x, early_exit=early_exit)
    singles = [cascade.infer(x[i:i + 1], early_exit=early_exit) for i in range(len(x))]
    _assert_rows_equal(batch, singles)
    # one sample without the batch axis takes the same path
    for i in (0, len(x) - 1):
        _assert_rows_equal(singles[i], [cascade.infer(x[i], early_exit=early_exit)])
    return batch


@pytest.mark.usefixtures("path")
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("criterion", CRITERIA)
def test_every_criterion_threshold_and_window(cascades: dict[str, Cascade], x: np.ndarray,
                                              runtime: str, criterion: str) -> None:
    cascade = cascades[runtime]
    scores = _scores(cascade, x, criterion)
    seen: set[int] = set()
    settings = [(0.5, 0.5, None, None), (0.3, 0.7, 0.15, None), (0.6, 0.4, None, 0.35),
                (0.2, 0.9, 0.1, 0.3), (None, 0.5, None, None), (0.0, None, None, None)]
    try:
        cascade.set_policy(criterion)
        for q0, q1, w0, w2 in settings:
            thresholds = [None if q0 is None else float(np.quantile(scores[0], q0)),
                          None if q1 is None else float(np.quantile(scores[1], q1)), None]
            lows = [None if w0 is None else float(np.quantile(scores[0], w0)), None,
                    None if w2 is None else float(np.quantile(scores[2], w2))]
            cascade.set_thresholds(thresholds)
            cascade.set_policy(window_low=lows)
            for offset in ((0, 3, -5) if runtime == "int8" else (0,)):
                cascade.threshold_offset_q = offset
                batch = _compare(cascade, x)
                seen |= set(batch.exit_index.tolist())
            _compare(cascade, x[:20], early_exit=False)
    finally:
        cascade.set_policy("max_softmax", [None] * 3)
        cascade.set_thresholds([None] * 3)
        cascade.threshold_offset_q = 0
    assert seen == {0, 1, 2}, "the settings should send samples to every exit"


@pytest.mark.usefixtures("path")
@pytest.mark.parametrize("criterion", CRITERIA)
def test_float_scores_equal_the_batch_scores_to_the_last_bit(cascades: dict[str, Cascade],
                                                             x: np.ndarray,
                                                             criterion: str) -> None:
    """A threshold exactly at a sample's float64 score takes it; one ulp above does not:
    the one-sample score is the batch's float64 value, not an approximation of it."""
    cascade = cascades["onnx"]
    score = _scores(cascade, x, criterion)[0]
    checked = 0
    try:
        cascade.set_policy(criterion)
        for i in range(0, N, 3):
            s = float(score[i])
            above = float(np.nextafter(s, np.inf))
            if above > 1.0:
                continue
            for threshold, leaves in ((s, True), (above, False)):
                cascade.set_thresholds([threshold, None, None])
                assert bool(cascade.infer(x[i:i + 1]).exit_index[0] == 0) is leaves
                assert bool(cascade.infer(x[i:i + 2]).exit_index[0] == 0) is leaves
            cascade.set_thresholds([None, None, None])
            cascade.set_policy(window_low=[above, None, None])  # below the window: rejected
            assert cascade.infer(x[i:i + 1]).rejected[0]
            cascade.set_policy(window_low=[s, None, None])
            assert cascade.infer(x[i:i + 1]).exit_index[0] != 0
            cascade.set_policy(window_low=[None] * 3)
            checked += 1
    finally:
        cascade.set_policy("max_softmax", [None] * 3)
        cascade.set_thresholds([None] * 3)
    assert checked > 20


@pytest.fixture(scope="module")
def ensembles(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Bundle], np.ndarray]:
    """A three-exit int8 bundle as a running-mean and as a QUTE (final) ensemble."""
    import onnx
    from conftest import exported_onnx
    from zoo import example_input

    from eedge.export import export_onnx

    root = tmp_path_factory.mktemp("ensembles")
    onnx.save(exported_onnx("sequential"), root / "m.onnx")
    calib = example_input(seed=1, batch=32, name="sequential")
    base = export_onnx(root / "m.onnx", root / "base", int8=True, calibration=calib).bundle
    out = {}
    for mode in ("running_mean", "final"):
        copy = root / mode
        shutil.copytree(base.path, copy)

        def change(manifest: dict, mode: str = mode) -> None:
            running_mean.set_running_mean(manifest, True)
            manifest["ensemble"]["mode"] = mode
            for entry in manifest["exits"]:
                entry["policy"] = {"criterion": "margin", "threshold": 0.002}
            manifest["exits"][-1]["policy"]["window_low"] = 0.001

        out[mode] = update_manifest(load_bundle(copy), change)
    return out, example_input(seed=4, batch=60, name="sequential")


@pytest.mark.parametrize("mode", ["running_mean", "final"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ensembles(ensembles: tuple[dict[str, Bundle], np.ndarray], mode: str,
                   runtime: str) -> None:
    bundles, x = ensembles
    cascade = Cascade(bundles[mode], runtime=runtime)
    for criterion in ("max_softmax", "margin", "entropy"):
        cascade.set_policy(criterion)
        scores = _scores(cascade, x, criterion)
        cascade.set_thresholds([float(np.median(s)) for s in scores[:2]] + [None])
        cascade.set_policy(window_low=[None, None, float(np.quantile(scores[2], 0.3))])
        _compare(cascade, x)


@pytest.mark.usefixtures("path")
def test_head_bundle_pending_and_handoff(tmp_path: Path, x: np.ndarray) -> None:
    from eedge.split.bundles import export_halves

    head, _ = export_halves(load_bundle(bundle_path()), 1, tmp_path / "split")
    for runtime in RUNTIMES:
        cascade = Cascade(head, runtime=runtime)
        scores = _scores(cascade, x, "max_softmax")
        cascade.set_thresholds([float(np.quantile(scores[0], 0.6)),
                                float(np.quantile(scores[1], 0.6))])
        batch = _compare(cascade, x[:60])
        assert 0 < batch.pending.size < 60 and batch.handoff


@pytest.mark.usefixtures("path")
def test_input_checks_and_conversions(cascades: dict[str, Cascade], x: np.ndarray) -> None:
    """NaN/inf inputs are refused with the batch path's message; other dtypes, layouts and
    non-contiguous arrays give the same results as the float32 sample."""
    for cascade in cascades.values():
        one = cascade.infer(x[3:4])
        strided = np.stack([x[3:4], x[3:4]], axis=-1)[..., 0]
        assert not strided.flags.c_contiguous
        for variant in (x[3:4].astype(np.float64), x[3:4].tolist(), strided, x[3]):
            same = cascade.infer(variant)
            _assert_rows_equal(one, [same])
        for bad in (np.nan, np.inf, -np.inf):
            sample = x[3:4].copy()
            sample.reshape(-1)[7] = bad
            with pytest.raises(InputDataError) as single:
                cascade.infer(sample)
            with pytest.raises(InputDataError) as batch:
                cascade.infer(np.concatenate([sample, x[:2]]))
            assert str(single.value) == str(batch.value)
        # finite but huge (float64 input beyond float32 included): the same outcome
        for big in (np.full_like(x[3:4], 1e20), np.full(x[3:4].shape, 1e39)):
            assert _outcome(cascade, np.concatenate([big, x[:1]])) == _outcome(cascade, big)
        with pytest.raises(InputDataError):
            cascade.infer(x[3:4, ..., :5])
    unchecked = Cascade(load_bundle(bundle_path()), runtime="onnx", check_finite=False)
    sample = x[3:4].copy()
    sample.reshape(-1)[7] = np.nan
    _assert_rows_equal(unchecked.infer(np.concatenate([sample, sample])),
                       [unchecked.infer(sample), unchecked.infer(sample)])


@pytest.mark.usefixtures("path")
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_plain_exits_decide_without_the_batch_code(cascades: dict[str, Cascade],
                                                   x: np.ndarray, runtime: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The equality above is the fast path's, not a fallback's: with the batch decision
    disabled, one sample still runs for every criterion."""
    cascade = cascades[runtime]

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("batch decision called for one sample")

    monkeypatch.setattr(Cascade, "_decide", refuse)
    try:
        for criterion in CRITERIA:
            cascade.set_policy(criterion, [0.1, None, 0.2])
            cascade.set_thresholds([0.9, 0.5, None])
            exits = {int(cascade.infer(x[i:i + 1]).exit_index[0]) for i in range(40)}
            assert exits <= {0, 1, 2} and exits
        with pytest.raises(AssertionError, match="batch decision"):
            cascade.infer(x[:2])
    finally:
        cascade.set_policy("max_softmax", [None] * 3)
        cascade.set_thresholds([None] * 3)


def test_the_float_estimate_is_well_within_its_margin() -> None:
    """_decide_float only trusts the scalar estimate 1e-12 (C + 8) away from a threshold; it
    is within 1e-15 (C + 8) of the exact score on rows of every scale and offset it is used
    for (maximum within +-600), 1000x to spare."""
    from eedge.runtime.cascade_one import estimate_score

    rng = np.random.default_rng(0)
    worst = 0.0
    for classes in (1, 2, 3, 10, 100, 1000):
        for spread in (0.01, 1.0, 10.0, 300.0):
            rows = rng.standard_normal((300, classes)) * spread
            tops = np.concatenate([rng.uniform(-600, 600, 100), rng.uniform(-5, 5, 100),
                                   np.full(50, 599.99), np.full(50, -599.99)])
            rows = (rows - rows.max(axis=1, keepdims=True) + tops[:, None]).astype(np.float32)
            gates = (rng.standard_normal(300) * spread * 3).astype(np.float32)
            probs = softmax(rows)
            exact = {c: score_from_probabilities(probs, c) for c in ("max_softmax", "margin")}
            exact["gate"] = gate_score(gates)
            for i in range(len(rows)):
                row = rows[i].tolist()
                assert -600 <= max(row) <= 600
                for criterion, scores in exact.items():
                    estimate = estimate_score(row, max(row), float(gates[i]), criterion)
                    worst = max(worst, abs(estimate - float(scores[i])) / (classes + 8))
    assert worst <= 1e-15, worst


def test_row_sums_are_numpy_sums_to_the_last_bit() -> None:
    """The float scores divide by numpy's pairwise sum replayed in Python: equal to
    ``np.sum(rows, axis=-1)`` (the softmax's denominator) on rows of every width the
    summation splits differently (under 8, blocks of 8, over 128, recursion), of exps
    spread over many magnitudes, subnormals and zeros included."""
    from eedge.runtime.cascade_one import numpy_sums_match, row_sum

    assert numpy_sums_match()
    rng = np.random.default_rng(7)
    differing = 0
    for n in (1, 2, 7, 8, 9, 15, 16, 17, 100, 127, 128, 129, 255, 256, 257, 1000, 1031):
        spread = rng.choice([0.1, 3.0, 30.0, 300.0])  # exp(logit - max): in (0, 1]
        rows = np.exp(-np.abs(rng.standard_normal((40, n))) * spread)
        rows[:5, : max(1, n // 3)] = 0.0
        rows[5:10, : max(1, n // 2)] = 5e-324
        expected = np.sum(rows, axis=-1)
        for row, s in zip(rows.tolist(), expected.tolist()):
            assert row_sum(row) == s, n
            differing += sum(row) != s  # a plain left-to-right sum is not numpy's
    assert differing > 50


def test_input_quantization_equals_quantize_input() -> None:
    """The one-sample quantization is QUANTIZE's bytes (quantize_input), halves, ties just
    below halves, saturation and quotients near float32's end included."""
    from eedge.ir.graph import QuantParams
    from eedge.reference.int8_kernels import quantize_input
    from eedge.runtime.cascade_one import quantize_one

    rng = np.random.default_rng(0)
    for scale, zero_point in ((0.0078125, -128), (0.0123, 3), (0.5, 0), (3.7e-5, 127),
                              (1e-30, -5), (100.0, 7)):
        quant = QuantParams((scale,), (zero_point,))
        steps = np.float32(scale) * (np.arange(-300, 300) / 2).astype(np.float32)
        near = np.concatenate([steps, np.nextafter(steps, np.float32(np.inf)),
                               np.nextafter(steps, np.float32(-np.inf))])
        samples = [near, rng.standard_normal(500).astype(np.float32) * scale * 200,
                   np.array([0.0, -0.0, 3e38, -3e38, 1e-45, 6e33], np.float32)]
        for x in samples:
            x = x.astype(np.float32)[None]
            scale32 = np.float32(scale)
            limit = np.float32(min(1e37 * float(scale32), 3e38))
            assert np.array_equal(quantize_one(x, (scale32, limit, zero_point)),
                                  quantize_input(x, quant)), (scale, zero_point)


@pytest.mark.parametrize("layout,shape", [("NCHW", (1, 3, 4, 5)), ("NCL", (1, 6, 7)),
                                          ("NLC", (1, 6, 7)), (None, (1, 9))])
def test_small_input_quantization_equals_quantize_input(layout: str | None,
                                                        shape: tuple[int, ...]) -> None:
    """Inputs within 32000 scales of zero: quantize_small (and quantize_one, clamping or not)
    gives quantize_input's bytes in to_channels_last's layout (C-contiguous), halves and
    saturation at the zero point's ends included; the bound admits exactly such inputs."""
    from eedge.ir.graph import QuantParams
    from eedge.ir.layout import to_channels_last
    from eedge.reference.int8_kernels import quantize_input
    from eedge.runtime.cascade_one import SmallQuantizer, quantize_one, quantize_small

    rng = np.random.default_rng(1)
    size = int(np.prod(shape))
    reach = int(31999 / np.sqrt(size))  # in scales: the sum of squares stays in the bound
    for scale, zero_point in ((0.0078125, -128), (0.0123, 3), (0.5, 0), (3.7e-5, 127),
                              (100.0, -7)):
        plan = SmallQuantizer.of(np.float32(scale), zero_point)
        halves = np.float32(scale) * (rng.integers(-2 * reach, 2 * reach, size) / 2
                                      ).astype(np.float32)
        for values in (halves, np.nextafter(halves, np.float32(np.inf)),
                       rng.uniform(-reach, reach, size).astype(np.float32) * np.float32(scale)):
            x = values.astype(np.float32).reshape(shape)
            assert np.vdot(x, x) < plan.bound
            expected = to_channels_last(quantize_input(x, QuantParams((scale,), (zero_point,))),
                                        layout)
            limit = np.float32(min(1e37 * scale, 3e38))
            for got in (quantize_small(x, plan, layout),
                        quantize_one(x, (np.float32(scale), limit, zero_point), layout),
                        quantize_one(x, (np.float32(scale), limit, zero_point), layout,
                                     clamp=False)):
                assert got.flags.c_contiguous and got.dtype == np.int8
                assert np.array_equal(got, expected), (scale, zero_point, layout)
        top = np.zeros(shape, np.float32)  # one value near the table's end, one past it
        top.reshape(-1)[:2] = np.float32(31999.5 * scale), np.float32(-3.5 * scale)
        assert np.vdot(top, top) < plan.bound
        assert np.array_equal(quantize_small(top, plan, layout), to_channels_last(
            quantize_input(top, QuantParams((scale,), (zero_point,))), layout))
        top.reshape(-1)[0] = np.float32(32001 * scale)
        assert not np.vdot(top, top) < plan.bound


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_compiled_path_decides_exits_itself(cascades: dict[str, Cascade], x: np.ndarray,
                                            runtime: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With the helper built, float exits far from their thresholds and int8 exits (exact
    integers: never near) never reach Python's decide, for every criterion but entropy
    (the speed is the helper's, not a fallback's); without it, they all do."""
    if cascade_one.compiled is None:
        pytest.fail("eedge.runtime._rowdecide is not built (`pip install -e .` builds it)")
    cascade = cascades[runtime]
    calls: list[int] = []
    original = cascade_one.OneSample.decide

    def counted(self, *args):  # type: ignore[no-untyped-def]
        calls.append(1)
        return original(self, *args)

    monkeypatch.setattr(cascade_one.OneSample, "decide", counted)
    try:
        for criterion in ("max_softmax", "margin", "gate"):
            cascade.set_policy(criterion, [0.05, None, None])
            cascade.set_thresholds([0.5, 0.5, None])
            exits = [int(cascade.infer(x[i:i + 1]).exit_index[0]) for i in range(40)]
            assert len(set(exits)) > 1, criterion
        assert not calls
        monkeypatch.setattr(cascade_one, "compiled", None)
        cascade.infer(x[:1])
        assert calls
    finally:
        cascade.set_policy("max_softmax", [None] * 3)
        cascade.set_thresholds([None] * 3)
