"""Selective classification on a cascade: risk–coverage metrics and window-based deferral.

A selective classifier may abstain: it *accepts* a sample (answers) when its
score reaches a selective threshold tau and *rejects* it otherwise. Coverage
is the share of samples accepted, (selective) risk the error rate among them.

Window-based deferral (Xia & Bouganis, ICCV 2023) makes a cascade cheap for
this task. At early exit k the sample's score s_k (the exit's own, or the
running mean of the ensemble so far) is compared with a window
[low_k, high_k] around tau: above ``high_k`` it leaves *accepted*, below
``low_k`` it leaves *rejected*, inside it goes on to the next member. The
final exit accepts when s >= tau. Only the samples near the decision boundary
pay for the later members.

In a bundle's manifest this is the exits' existing policy: ``threshold`` is
``high_k`` and ``window_low`` is ``low_k``; on the final exit ``window_low``
is tau (everything leaves there; below tau it leaves rejected). The Python
runtimes and the generated C decide exactly so; :func:`simulate` here decides
the same way on precomputed per-exit scores, which is what calibration
searches over.

Entry points:
- metrics: :func:`risk_coverage`, :func:`aurc`, :func:`coverage_at_risk`,
  :func:`risk_at_coverage`;
- deferral on scores: :func:`simulate` (one policy), :func:`calibrate_window`
  (choose tau and the windows for a target risk or coverage, minimising
  expected cost);
- on a bundle: :func:`calibrate_selective` (score the exits as the bundle's
  runtime decides, running mean included, and calibrate), :func:`write_selective`
  (store it in the manifest), :func:`selective_report` and
  :func:`plot_risk_coverage` (``eedge evaluate --selective``),
  :func:`standalone_macs` (what an exit costs run on its own).

All functions work on any comparable scores (float scores in [0, 1], or the
integer scores the int8 runtimes compare): higher means more confident.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eedge.errors import InputDataError

EXHAUSTIVE_LIMIT = 20_000   # window combinations tried one by one; beyond: coordinate descent
WINDOW_QUANTILES = 13       # candidate edges per side of tau per exit
TAU_CANDIDATES = 8          # selective thresholds near the reference one that are tried


# --------------------------------------------------------------------------- metrics


@dataclass
class RiskCoverage:
    """The risk–coverage curve: one point per distinct score used as the threshold.

    Point j accepts every sample with score >= ``thresholds[j]`` (thresholds
    descending, so coverage grows). Tied scores are accepted together: a
    threshold cannot split them.
    """

    thresholds: np.ndarray   # (P,) descending
    coverage: np.ndarray     # (P,) increasing, last = 1
    risk: np.ndarray         # (P,) error rate among the accepted

    def to_json(self, points: int = 101) -> dict[str, list[float]]:
        """At most ``points`` points (evenly spread over the curve), for reports."""
        index = np.unique(np.linspace(0, len(self.coverage) - 1,
                                      min(points, len(self.coverage))).round().astype(int))
        return {"coverage": [float(v) for v in self.coverage[index]],
                "risk": [float(v) for v in self.risk[index]],
                "threshold": [float(v) for v in self.thresholds[index]]}


def _check_scores(scores: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    c = np.asarray(correct, dtype=bool).reshape(-1)
    if s.size == 0:
        raise InputDataError("no samples to compute a risk–coverage curve on")
    if s.size != c.size:
        raise InputDataError(f"{s.size} scores for {c.size} correctness flags")
    if not np.isfinite(s).all():
        raise InputDataError("scores must be finite to rank samples by confidence")
    return s, c


def risk_coverage(scores: np.ndarray, correct: np.ndarray) -> RiskCoverage:
    """Risk and coverage at every distinct score threshold (most confident first)."""
    s, c = _check_scores(scores, correct)
    order = np.argsort(-s, kind="stable")
    s, errors = s[order], (~c[order]).astype(np.int64)
    # the last index of each run of equal scores: a threshold accepts whole runs
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    accepted = ends + 1
    return RiskCoverage(s[ends], accepted / s.size, np.cumsum(errors)[ends] / accepted)


def aurc(scores: np.ndarray, correct: np.ndarray) -> float:
    """Area under the risk–coverage curve (lower is better).

    The step integral sum_j (coverage_j - coverage_{j-1}) * risk_j: without
    ties this is the usual mean over i = 1..N of the risk of the i most
    confident samples (Geifman et al.); tied scores count as one step, since
    no threshold separates them.
    """
    curve = risk_coverage(scores, correct)
    widths = np.diff(np.concatenate([[0.0], curve.coverage]))
    return float(np.sum(widths * curve.risk))


def risk_upper_bound(risk: np.ndarray | float, accepted: np.ndarray | float,
                     z: float) -> np.ndarray:
    """Wilson score upper bound on a risk measured on ``accepted`` samples (z standard
    errors; z = 0: the risk itself). Unlike the normal approximation it is above 0 when no
    accepted sample was wrong, which is when a small calibration set flatters most."""
    p = np.asarray(risk, dtype=np.float64)
    if z == 0:
        return p
    n = np.maximum(np.asarray(accepted, dtype=np.float64), 1.0)
    z2 = z * z
    return (p + z2 / (2 * n) + z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))) / (1 + z2 / n)


def coverage_at_risk(scores: np.ndarray, correct: np.ndarray,
                     target_risk: float, z: float = 0.0) -> tuple[float, float | None]:
    """Largest coverage whose risk is at most ``target_risk``, and its threshold.

    With ``z`` > 0 the risk's Wilson upper bound must be (see :func:`risk_upper_bound`).
    (0.0, None) when even the most confident group of samples is too risky:
    the only way to meet the target is to reject everything.
    """
    curve = risk_coverage(scores, correct)
    bound = risk_upper_bound(curve.risk, curve.coverage * len(np.ravel(scores)), z)
    ok = np.flatnonzero(bound <= target_risk + 1e-12)
    if ok.size == 0:
        return 0.0, None
    j = int(ok[-1])
    return float(curve.coverage[j]), float(curve.thresholds[j])


def risk_at_coverage(scores: np.ndarray, correct: np.ndarray,
                     target_coverage: float) -> tuple[float, float]:
    """Risk of the smallest coverage at least ``target_coverage``, and its threshold."""
    curve = risk_coverage(scores, correct)
    j = int(np.flatnonzero(curve.coverage >= target_coverage - 1e-12)[0])
    return float(curve.risk[j]), float(curve.thresholds[j])


# --------------------------------------------------------------------------- deferral


@dataclass
class SelectiveOutcome:
    """What a window policy does on labelled data."""

    exit_index: np.ndarray   # (N,) exit each sample left at
    accepted: np.ndarray     # (N,) answered (not rejected)
    correct: np.ndarray      # (N,) the prediction at that exit is right
    costs: Sequence[float]

    @property
    def coverage(self) -> float:
        return float(np.mean(self.accepted))

    @property
    def risk(self) -> float:
        """Error rate among accepted samples (0 when nothing is accepted)."""
        n = int(self.accepted.sum())
        return float(np.sum(self.accepted & ~self.correct) / n) if n else 0.0

    @property
    def accuracy(self) -> float:
        """Accuracy of the predictions on every sample, rejected or not."""
        return float(np.mean(self.correct))

    @property
    def expected_cost(self) -> float:
        return float(np.asarray(self.costs, dtype=np.float64)[self.exit_index].mean())

    def exit_rates(self) -> list[float]:
        return [float(np.mean(self.exit_index == k)) for k in range(len(self.costs))]

    def summary(self) -> dict[str, Any]:
        return {"coverage": self.coverage, "risk": self.risk, "accuracy": self.accuracy,
                "expected_cost": self.expected_cost, "exit_rates": self.exit_rates()}


def _edge(value: float | None, default: float) -> float:
    return default if value is None else float(value)


def simulate(scores: Sequence[np.ndarray], correct: Sequence[np.ndarray],
             lows: Sequence[float | None], highs: Sequence[float | None],
             costs: Sequence[float]) -> SelectiveOutcome:
    """Decide every sample as the runtimes do, on precomputed per-exit scores.

    ``highs[k]`` (the exit threshold; None: never accept early) and ``lows[k]``
    (None: never reject early) for the early exits; ``lows[-1]`` is tau (None:
    accept everything at the final exit); ``highs[-1]`` is ignored (the final
    exit takes everything). A sample with s >= high leaves accepted, one with
    s < low leaves rejected (rejection wins if both hold, as in the runtimes).
    """
    k_exits = len(scores)
    if not (len(correct) == len(lows) == len(highs) == len(costs) == k_exits):
        raise InputDataError("give one score array, correctness array, window edge pair "
                             "and cost per exit")
    n = len(scores[0])
    exit_index = np.full(n, k_exits - 1, dtype=np.int64)
    rejected = np.zeros(n, dtype=bool)
    undecided = np.ones(n, dtype=bool)
    for k in range(k_exits):
        s = np.asarray(scores[k])
        reject = s < _edge(lows[k], -math.inf)
        leave = reject | (s >= _edge(highs[k], math.inf)) if k < k_exits - 1 \
            else np.ones(n, dtype=bool)
        here = undecided & leave
        exit_index[here] = k
        rejected[here] = reject[here]
        undecided &= ~leave
    right = np.stack([np.asarray(c, dtype=bool) for c in correct])[exit_index, np.arange(n)]
    return SelectiveOutcome(exit_index, ~rejected, right, list(costs))


@dataclass
class WindowCalibration:
    """The chosen selective threshold and windows, and how they do on the calibration data."""

    target: str                  # "risk" or "coverage"
    target_value: float
    tau: float                   # on the final exit's score scale
    lows: list[float | None]     # per exit, on that exit's score scale; lows[-1] == tau
    highs: list[float | None]    # per exit; highs[-1] is None
    chosen: dict[str, Any]       # coverage, risk, accuracy, expected_cost, exit_rates
    full: dict[str, Any]         # the same policy without early exits (final exit, tau)
    evaluated: int = 0
    reference_tau: float = 0.0   # tau of the final exit alone for the target
    notes: list[str] = field(default_factory=list)


def _final_operating_point(scores: np.ndarray, correct: np.ndarray, target: str,
                           value: float, z: float) -> float:
    if target == "risk":
        coverage, tau = coverage_at_risk(scores, correct, value, z)
        if tau is None:
            curve = risk_coverage(scores, correct)
            best = float(risk_upper_bound(curve.risk, curve.coverage * len(scores), z).min())
            bound = f" (its {z:g}-sigma upper bound)" if z else ""
            raise InputDataError(f"no selective threshold reaches risk {value:g}{bound} on the "
                                 f"calibration data (the lowest is {best:.4g}): raise --risk"
                                 + (" or lower --risk-z, or use more data" if z else ""))
        return tau
    _, tau = risk_at_coverage(scores, correct, value)
    return tau


def _edge_candidates(s: np.ndarray, keep: np.ndarray, extra: float | None) -> list[float | None]:
    values = s[keep]
    out: list[float | None] = [extra]
    if values.size:
        qs = np.quantile(values, np.linspace(0, 1, WINDOW_QUANTILES), method="nearest")
        out += [float(v) for v in np.unique(qs)]
    return out


def calibrate_window(scores: Sequence[np.ndarray], correct: Sequence[np.ndarray],
                     costs: Sequence[float], target_risk: float | None = None,
                     target_coverage: float | None = None, max_coverage_drop: float = 0.01,
                     max_risk_increase: float = 0.0,
                     common: Sequence[Callable[[np.ndarray], np.ndarray]] | None = None,
                     risk_z: float = 0.0) -> WindowCalibration:
    """Choose tau and per-exit windows: cheapest expected cost that meets the target.

    With ``target_risk`` r: the reference is the final exit alone at its
    largest coverage C with risk <= r; a policy is feasible when its risk is
    <= r and its coverage >= C - ``max_coverage_drop``. With
    ``target_coverage`` c: the reference is the final exit's risk R at coverage
    c; feasible means coverage >= c and risk <= R + ``max_risk_increase``.
    Among feasible policies the one with the lowest expected cost wins (then
    higher coverage, then lower risk). "No early exit" at the reference tau is
    always feasible, so there is always an answer.

    ``common[k]`` maps exit k's scores onto one scale shared by all exits
    (identity by default). It is used only to keep low_k <= tau <= high_k:
    int8 scores of different exits live on different integer scales.

    ``risk_z`` > 0 (with a target risk): the risk's Wilson upper bound, not the
    risk itself, must stay within the target, so windows that meet it on the
    calibration samples only by luck are not chosen.
    """
    if (target_risk is None) == (target_coverage is None):
        raise InputDataError("give exactly one of a target risk or a target coverage")
    k_exits = len(scores)
    if k_exits < 1 or len(correct) != k_exits or len(costs) != k_exits:
        raise InputDataError("give one score array, correctness array and cost per exit")
    target = "risk" if target_risk is not None else "coverage"
    value = float(target_risk if target_risk is not None else target_coverage)  # type: ignore[arg-type]
    if not 0.0 <= value <= 1.0:
        raise InputDataError(f"the target {target} {value:g} is outside [0, 1]")
    identity: Callable[[np.ndarray], np.ndarray] = lambda v: np.asarray(v, np.float64)  # noqa: E731
    to_common = list(common) if common is not None else [identity] * k_exits
    final_s = np.asarray(scores[-1], dtype=np.float64)
    final_c = np.asarray(correct[-1], dtype=bool)
    tau_ref = _final_operating_point(final_s, final_c, target, value, risk_z)
    n = len(final_s)
    none_early: list[float | None] = [None] * (k_exits - 1)
    reference = simulate(scores, correct, none_early + [tau_ref], none_early + [None], costs)
    if target == "risk":
        def feasible(coverage: float, risk: float) -> bool:
            return float(risk_upper_bound(risk, coverage * n, risk_z)) <= value + 1e-12 and \
                coverage >= reference.coverage - max_coverage_drop - 1e-12
    else:
        def feasible(coverage: float, risk: float) -> bool:
            return coverage >= value - 1e-12 and \
                risk <= reference.risk + max_risk_increase + 1e-12

    # selective thresholds: the reference and its feasible neighbours on the final exit
    curve = risk_coverage(final_s, final_c)
    taus = [tau_ref]
    ok = [float(t) for t, cov, r in zip(curve.thresholds, curve.coverage, curve.risk)
          if t != tau_ref and feasible(float(cov), float(r))]
    if ok:
        taus += [ok[int(i)] for i in np.unique(np.linspace(0, len(ok) - 1,
                                                           min(TAU_CANDIDATES, len(ok)))
                                               .round().astype(int))]

    def meets(o: SelectiveOutcome) -> bool:
        return feasible(o.coverage, o.risk)

    def key(o: SelectiveOutcome) -> tuple[float, float, float]:
        return (o.expected_cost, -o.coverage, o.risk)

    best: tuple[tuple[float, float, float], float, list[float | None], list[float | None],
                SelectiveOutcome] | None = None
    evaluated = 0
    for tau in taus:
        tau_common = float(to_common[-1](np.array([tau]))[0])
        lows_c, highs_c = [], []
        for k in range(k_exits - 1):
            s = np.asarray(scores[k], dtype=np.float64)
            sc = to_common[k](s)
            lows_c.append(_edge_candidates(s, sc <= tau_common, None))
            highs_c.append(_edge_candidates(s, sc >= tau_common, None))

        def run(lows: Sequence[float | None], highs: Sequence[float | None]) -> SelectiveOutcome:
            return simulate(scores, correct, list(lows) + [tau], list(highs) + [None], costs)

        size = math.prod(len(a) * len(b) for a, b in zip(lows_c, highs_c))
        trials: list[tuple[list[float | None], list[float | None], SelectiveOutcome]] = []
        if size <= EXHAUSTIVE_LIMIT:
            for combo in itertools.product(*[list(itertools.product(a, b))
                                             for a, b in zip(lows_c, highs_c)]):
                lows = [c[0] for c in combo]
                highs = [c[1] for c in combo]
                trials.append((lows, highs, run(lows, highs)))
        else:  # coordinate descent from "no early exit", one exit's window at a time
            lows, highs = list(none_early), list(none_early)
            current = run(lows, highs)
            trials.append((list(lows), list(highs), current))
            for _ in range(3):
                for k in range(k_exits - 1):
                    for low, high in itertools.product(lows_c[k], highs_c[k]):
                        tl, th = list(lows), list(highs)
                        tl[k], th[k] = low, high
                        outcome = run(tl, th)
                        trials.append((tl, th, outcome))
                        if meets(outcome) and (not meets(current) or key(outcome) < key(current)):
                            lows, highs, current = tl, th, outcome
        evaluated += len(trials)
        for lows, highs, outcome in trials:
            if meets(outcome) and (best is None or key(outcome) < best[0]):
                best = (key(outcome), tau, lows, highs, outcome)
    if best is None:  # cannot happen: no early exit at tau_ref is feasible by construction
        raise AssertionError("no feasible window policy")
    _, tau, lows, highs, outcome = best
    full = simulate(scores, correct, none_early + [tau], none_early + [None], costs)
    return WindowCalibration(target, value, tau, list(lows) + [tau], list(highs) + [None],
                             outcome.summary(), full.summary(), evaluated, tau_ref)



# --------------------------------------------------------------------------- bundles


def standalone_macs(manifest: dict[str, Any], k: int) -> int:
    """MACs of exit k run on its own: the stages its stage needs, transitively.

    For a cascade of independent models this is member k alone; for one
    multi-exit network, every stage up to exit k (earlier exit heads included,
    a slight overcount).
    """
    stages = manifest["stages"]
    producer = {t["name"]: s["index"] for s in stages for t in s["outputs"]}
    needed: set[int] = set()
    todo = [int(manifest["exits"][k]["stage"])]
    while todo:
        s = todo.pop()
        if s in needed:
            continue
        needed.add(s)
        todo += [producer[t["name"]] for t in stages[s]["inputs"] if t["name"] in producer]
    return int(sum(int(stages[s]["macs"]) for s in needed))


@dataclass
class SelectiveCalibration:
    """Chosen selective threshold and windows as stored in the manifest (float scores)."""

    criterion: str
    runtime: str
    samples: int
    target: str
    target_value: float
    thresholds: list[float | None]   # per exit: accept early at or above (high_k)
    window_low: list[float | None]   # per exit: reject below (low_k); the last is tau
    chosen: dict[str, Any]           # coverage, risk, accuracy, expected_cost, exit_rates
    no_early_exit: dict[str, Any]    # the same tau, every sample to the final exit
    final_alone: dict[str, Any]      # the final exit on its own at the target
    cost_unit: str
    running_mean: bool
    evaluated: int
    risk_z: float = 0.0              # the risk target bounds the risk's Wilson upper bound

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        data = asdict(self)
        data["objective"] = f"selective {self.target} {self.target_value:g}"
        return data


def _stored(value: float | None, to_float: Callable[[float], float]) -> float | None:
    return None if value is None else float(min(1.0, max(0.0, to_float(value))))


def _between(scores: np.ndarray, edge: float | None) -> float | None:
    """A float edge halfway between ``edge`` (an observed score) and the next lower one.

    The same samples fall on each side, but none sits exactly on the boundary, where
    the last bit of a float score (another batch size, another CPU) would decide.
    """
    if edge is None:
        return None
    lower = scores[scores < edge]
    return float((edge + lower.max()) / 2) if lower.size else float(edge) - 1e-9


def calibrate_selective(bundle: Any, x: np.ndarray, y: np.ndarray, costs: Sequence[float],
                        cost_unit: str = "MACs", target_risk: float | None = None,
                        target_coverage: float | None = None, criterion: str = "max_softmax",
                        runtime: str | None = None, max_coverage_drop: float = 0.01,
                        max_risk_increase: float = 0.0, tick: Any = None,
                        risk_z: float = 0.0
                        ) -> SelectiveCalibration:
    """Score every exit as the bundle's runtime decides (running mean included), choose
    tau and the windows (:func:`calibrate_window`), and express them as the manifest's
    float thresholds. On int8 runtimes the stored floats map back to the chosen integers;
    the reported outcome is re-simulated from the stored values, so it is what the
    runtimes and the C code will do on these samples."""
    from eedge.policies.calibrate import collect_scores, float_threshold, integer_threshold

    from eedge.policies.running_mean import ensemble_mode

    if len(y) == 0:
        raise InputDataError("the calibration data is empty")
    if ensemble_mode(bundle.manifest) == "final":
        raise InputDataError(f"{bundle.path} has a QUTE ensemble (its last member decides for "
                             "all, so exits cannot defer through windows): calibrate with "
                             "--ensemble running-mean, or export without --ensemble")
    runtime = runtime or ("onnx" if all("onnx" in s["files"] for s in bundle.stages)
                          else "int8-reference")
    data = collect_scores(bundle, runtime, x, y, criterion, tick)
    k_exits = len(data.scores)

    def to_float(k: int) -> Callable[[float], float]:
        if not data.integer:
            return float
        return lambda s: float_threshold(s, criterion, data.classes[k], data.quant(k),
                                         data.running(k))

    def to_score(k: int, t: float | None) -> float | None:
        if t is None or not data.integer:
            return t
        return integer_threshold(t, criterion, data.classes[k], data.quant(k), data.running(k))

    common = None if not data.integer else [
        (lambda v, f=to_float(k): np.array([f(float(s)) for s in np.atleast_1d(v)]))
        for k in range(k_exits)]
    window = calibrate_window(data.scores, data.correct, costs, target_risk, target_coverage,
                              max_coverage_drop, max_risk_increase, common, risk_z)
    lows, highs = list(window.lows), list(window.highs)
    if not data.integer:  # integer edges are exact; float ones move off the samples
        lows = [_between(data.scores[k], v) for k, v in enumerate(lows)]
        highs = [_between(data.scores[k], v) for k, v in enumerate(highs)]
    lows = [_stored(v, to_float(k)) for k, v in enumerate(lows)]
    highs = [_stored(v, to_float(k)) for k, v in enumerate(highs)]
    highs[-1] = None
    stored = simulate(data.scores, data.correct, [to_score(k, v) for k, v in enumerate(lows)],
                      [to_score(k, v) for k, v in enumerate(highs)], costs)
    full = simulate(data.scores, data.correct, [None] * (k_exits - 1) + [to_score(
        k_exits - 1, lows[-1])], [None] * k_exits, costs)
    own_s = (data.own_scores or data.scores)[-1]
    own_c = (data.own_correct or data.correct)[-1]
    if target_risk is not None:
        coverage, _ = coverage_at_risk(own_s, own_c, target_risk, risk_z)
        alone = {"coverage": coverage, "risk_target": target_risk, "risk_z": risk_z}
    else:
        risk, _ = risk_at_coverage(own_s, own_c, float(target_coverage))  # type: ignore[arg-type]
        alone = {"risk": risk, "coverage_target": target_coverage}
    alone["accuracy"] = float(np.mean(own_c))
    alone["aurc"] = aurc(own_s, own_c)
    alone["macs"] = standalone_macs(bundle.manifest, k_exits - 1)
    return SelectiveCalibration(criterion, runtime, int(len(y)), window.target,
                                window.target_value, highs, lows, stored.summary(),
                                full.summary(), alone, cost_unit, bool(data.members),
                                window.evaluated, risk_z)


def write_selective(bundle: Any, result: SelectiveCalibration, method: str) -> Any:
    """Store the windows and tau as every exit's policy (threshold, window_low)."""
    from eedge.ir.bundle import update_manifest
    from eedge.policies.apply import finite_or_null
    from eedge.policies.thresholds import check_thresholds

    criteria = [result.criterion] * len(result.thresholds)
    check_thresholds(result.thresholds, criteria)
    check_thresholds(result.window_low, criteria)

    def change(manifest: dict[str, Any]) -> None:
        for entry, high, low in zip(manifest["exits"], result.thresholds, result.window_low):
            entry["policy"] = {"criterion": result.criterion, "threshold": high,
                               "window_low": low, "method": method}
        manifest["calibration"] = finite_or_null(result.to_json())

    return update_manifest(bundle, change)


# --------------------------------------------------------------------------- evaluation


def _row(name: str, scores: np.ndarray, correct: np.ndarray, macs: float,
         target_risk: float) -> dict[str, Any]:
    coverage, _ = coverage_at_risk(scores, correct, target_risk)
    return {"name": name, "accuracy": float(np.mean(correct)), "aurc": aurc(scores, correct),
            "coverage_at_risk": coverage, "expected_macs": float(macs),
            "curve": risk_coverage(scores, correct).to_json()}


def selective_report(bundle: Any, cascade: Any, decided: Any, y: np.ndarray, x: np.ndarray,
                     target_risk: float, tick: Any = None) -> dict[str, Any]:
    """Risk–coverage comparison: the cascade as it decides vs the final exit alone (and,
    for a running-mean ensemble, all members without early exits).

    The cascade's curve ranks samples by the score at the exit where each left; its
    *operating point* is what its windows and tau actually accept.
    """
    from eedge.policies.calibrate import collect_scores

    criterion = cascade.criteria[-1]
    if criterion not in ("max_softmax", "margin", "entropy"):
        criterion = "max_softmax"
    data = collect_scores(bundle, cascade.runtime, x, y, criterion, tick)
    manifest = bundle.manifest
    cumulative = [float(e["cumulative_macs"]) for e in bundle.exits]
    own_s = (data.own_scores or data.scores)[-1]
    own_c = (data.own_correct or data.correct)[-1]
    rows = [_row("final exit alone", own_s, own_c, standalone_macs(manifest, len(cumulative) - 1),
                 target_risk)]
    if data.members:
        rows.append(_row("ensemble, no early exit", data.scores[-1], data.correct[-1],
                         cumulative[-1], target_risk))
    correct = decided.predictions == y
    accepted = ~decided.rejected
    cascade_row = _row("cascade", decided.confidence.astype(np.float64), correct,
                       float(np.mean(np.asarray(cumulative)[decided.exit_index])), target_risk)
    n_accepted = int(accepted.sum())
    cascade_row["operating_point"] = {
        "coverage": float(np.mean(accepted)),
        "risk": float(np.sum(accepted & ~correct) / n_accepted) if n_accepted else 0.0,
        "exit_rates": [float(np.mean(decided.exit_index == k)) for k in range(len(cumulative))]}
    rows.append(cascade_row)
    return {"runtime": cascade.runtime, "samples": int(len(y)), "criterion": criterion,
            "target_risk": target_risk, "running_mean": bool(data.members), "rows": rows}


def plot_risk_coverage(report: dict[str, Any], path: Any) -> None:
    """PNG of every row's risk–coverage curve and the cascade's operating point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in report["rows"]:
        curve = row["curve"]
        ax.plot(curve["coverage"], curve["risk"],
                label=f"{row['name']} (AURC {row['aurc']:.4f}, "
                      f"{row['expected_macs'] / 1e6:.3g} M MACs)")
        point = row.get("operating_point")
        if point:
            ax.plot(point["coverage"], point["risk"], "*", markersize=12, color="#cc6677",
                    label="cascade operating point")
    ax.axhline(report["target_risk"], color="grey", linestyle=":", label="target risk")
    ax.set_xlabel("coverage")
    ax.set_ylabel("selective risk")
    ax.set_title(f"risk–coverage ({report['criterion']}, {report['samples']} samples)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
