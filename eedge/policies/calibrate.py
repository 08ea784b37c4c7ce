"""Choose per-exit thresholds on held-out data for an accuracy or cost budget.

Scores come from the runtime the bundle will be deployed with: float scores
for ONNX/LiteRT float, the device's integer scores for int8, so a threshold
calibrated here means exactly the same decision in the C runtime. For every
early exit the candidates are score quantiles plus a shared grid (which also
makes every "one global threshold" setting a candidate, so per-exit search
can never do worse than it); combinations are searched exhaustively when
there are few exits and by coordinate descent otherwise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from eedge.errors import InputDataError
from eedge.ir.bundle import Bundle
from eedge.ir.graph import QuantParams
from eedge.policies.criteria import (CRITERIA, gate_score, score_from_probabilities, softmax,
                                     split_gate)
from eedge.policies.fixed_point import (ENTROPY_ONE, gate_float_threshold, gate_threshold_q,
                                        int8_probabilities, int8_score)
from eedge.policies import running_mean
from eedge.policies.labels import check_labels
from eedge.progress import Tick
from eedge.runtime import batched
from eedge.runtime.cascade import Cascade

NEVER = math.inf
GRID = np.round(np.linspace(0.0, 1.0, 101), 4)
EXHAUSTIVE_LIMIT = 40_000
QUANTILES = 41


@dataclass
class OperatingPoint:
    thresholds: list[float | None]   # float thresholds, as stored in the manifest
    accuracy: float
    cost: float
    exit_rates: list[float]


@dataclass
class Calibration:
    criterion: str
    objective: str
    cost_unit: str
    samples: int
    final_accuracy: float
    chosen: OperatingPoint
    best_global: OperatingPoint | None
    pareto: list[OperatingPoint] = field(default_factory=list)
    evaluated: int = 0
    cost_basis: str | None = None   # how estimated costs were estimated; None if measured

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["pareto"] = [{"cost": p.cost, "accuracy": p.accuracy} for p in self.pareto]
        data["cost_estimated"] = self.cost_basis is not None
        return data


@dataclass
class ExitScores:
    """Per exit: comparable scores, correctness, and how to map a score to a threshold."""

    scores: list[np.ndarray]
    correct: list[np.ndarray]
    integer: bool
    classes: list[int]
    # per exit, int8 runtimes with the gate criterion: the gate's (scale, zero point)
    gate_quant: list[tuple[float, int] | None] = field(default_factory=list)

    # per exit, a running-mean ensemble: how many members its decision averages (0: alone);
    # then scores/correct are the ensemble's, own_scores/own_correct the exit's alone
    members: list[int] = field(default_factory=list)
    own_scores: list[np.ndarray] = field(default_factory=list)
    own_correct: list[np.ndarray] = field(default_factory=list)

    def quant(self, k: int) -> tuple[float, int] | None:
        return self.gate_quant[k] if k < len(self.gate_quant) else None

    def running(self, k: int) -> int:
        return self.members[k] if k < len(self.members) else 0


def collect_scores(bundle: Bundle, runtime: str, x: np.ndarray, y: np.ndarray,
                   criterion: str, tick: Tick | None = None) -> ExitScores:
    if criterion not in CRITERIA:
        raise InputDataError(f"unknown criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
    y = check_labels(y, [int(e["num_classes"]) for e in bundle.exits], "the labels (y)",
                     len(x))
    cascade = Cascade(bundle, runtime=runtime)
    cascade.set_policy(criterion)  # refuses the gate criterion on early exits without a gate
    raw = batched.run_all_exits(cascade, x, raw=True, tick=tick)  # in slices, for `tick`
    scores, correct, classes, gates = [], [], [], []
    integer = False
    for k, (stage_index, values) in enumerate(zip([e["stage"] for e in bundle.exits], raw)):
        spec = cascade.io[stage_index]["outputs"][0]
        values, gate = split_gate(values, cascade.gates[k])
        correct.append(np.argmax(values, axis=-1) == y)
        classes.append(values.shape[-1])
        scoring = "max_softmax" if criterion == "gate" and gate is None else criterion
        if spec.get("quant"):
            integer = True
            quant = QuantParams.from_json(spec["quant"])
            gates.append((quant.scale[0], quant.zero_point[0]) if gate is not None else None)
            if scoring == "gate":  # the device compares the int8 gate logit itself
                scores.append(gate.astype(np.float64))  # type: ignore[union-attr]
                continue
            q = int8_probabilities(values, quant.scale[0])
            scores.append(int8_score(q, scoring).astype(np.float64))
        else:
            gates.append(None)
            scores.append(gate_score(gate) if scoring == "gate" else
                          score_from_probabilities(softmax(values), scoring))
    data = ExitScores(scores, correct, integer, classes, gates)
    if cascade.running_members:  # decide as the runtimes do: on the running mean
        _running_mean_scores(data, cascade, raw, y, criterion)
    return data


def _running_mean_scores(data: ExitScores, cascade: Cascade, raw: list[np.ndarray],
                         y: np.ndarray, criterion: str) -> None:
    """Replace the member exits' scores and correctness by the running mean's."""
    running_mean.check_criterion(criterion)
    members = cascade.running_members
    scales = [QuantParams.from_json(spec["quant"]).scale[0] if spec.get("quant") else None
              for spec in (cascade.io[e["stage"]]["outputs"][0] for e in cascade.exits)]
    scores, predictions = running_mean.running_scores(
        [cascade.class_logits(k, v) for k, v in enumerate(raw)], scales, members, criterion)
    data.own_scores, data.own_correct = list(data.scores), list(data.correct)
    data.members = [members.index(k) + 1 if k in members else 0 for k in range(len(raw))]
    for k in members:
        data.scores[k] = scores[k].astype(np.float64)
        data.correct[k] = predictions[k] == y


def integer_threshold(t: float, criterion: str, classes: int,
                      gate: tuple[float, int] | None = None, members: int = 0) -> float:
    """The integer score a float threshold means on the device (see fixed_point.py);
    ``members``: of a running-mean ensemble's sum (see running_mean.py)."""
    if members:
        return float(running_mean.sum_threshold_q(t, False, criterion, classes, members))
    if criterion == "gate" and gate is not None:
        return float(gate_threshold_q(t, gate[0], gate[1]))
    if criterion == "max_softmax":
        return float(math.ceil(t * 256) - 128)
    if criterion == "margin":
        return float(math.ceil(t * 256))
    return float(-math.floor((1.0 - t) * math.log(max(classes, 2)) * ENTROPY_ONE))


def float_threshold(score: float, criterion: str, classes: int,
                    gate: tuple[float, int] | None = None, members: int = 0) -> float:
    """A float threshold whose device integer is exactly ``score`` (inverse of the above)."""
    if members:
        return running_mean.sum_float_threshold(score, criterion, classes, members)
    if criterion == "gate" and gate is not None:
        return gate_float_threshold(int(score), gate[0], gate[1])
    if criterion == "max_softmax":
        return (score + 128) / 256
    if criterion == "margin":
        return score / 256
    allowed = -score + 0.5
    return 1.0 - allowed / (math.log(max(classes, 2)) * ENTROPY_ONE)


def _candidates(data: ExitScores, k: int, criterion: str) -> np.ndarray:
    scores = data.scores[k]
    quantiles = np.quantile(scores, np.linspace(0, 1, QUANTILES), method="nearest")
    grid = GRID if not data.integer else np.array(
        [integer_threshold(t, criterion, data.classes[k], data.quant(k), data.running(k))
         for t in GRID])
    return np.unique(np.concatenate([quantiles, grid, [NEVER]]))


def evaluate(data: ExitScores, thresholds: Sequence[float], costs: Sequence[float]
             ) -> tuple[float, float, np.ndarray]:
    """Accuracy, mean cost and exit index of every sample under score thresholds."""
    n = len(data.correct[0])
    leaves = np.stack([s >= t for s, t in zip(data.scores[:-1], thresholds)] +
                      [np.ones(n, bool)])
    exit_index = np.argmax(leaves, axis=0)
    correct = np.stack(data.correct)[exit_index, np.arange(n)]
    return float(correct.mean()), float(np.asarray(costs)[exit_index].mean()), exit_index


def drop_upper_bound(data: ExitScores, exit_index: np.ndarray, z: float) -> float:
    """Upper bound on the accuracy drop vs the final exit, paired (McNemar-style).

    Only samples where the cascade and the final exit disagree move the drop; with
    b = cascade wrong & final right and c = the reverse, the drop is (b - c) / n
    and its standard error about sqrt(b + c) / n.
    """
    n = len(exit_index)
    cascade = np.stack(data.correct)[exit_index, np.arange(n)]
    final = data.correct[-1]
    b = int(np.sum(~cascade & final))
    c = int(np.sum(cascade & ~final))
    return (b - c + z * math.sqrt(b + c)) / n


Point = tuple[tuple[float, ...], float, float, float]  # thresholds, accuracy, cost, drop bound


def _point(data: ExitScores, combo: Sequence[float], costs: Sequence[float], z: float) -> Point:
    accuracy, cost, exit_index = evaluate(data, combo, costs)
    return (tuple(combo), accuracy, cost, drop_upper_bound(data, exit_index, z))


def _search(data: ExitScores, costs: Sequence[float], criterion: str, z: float
            ) -> list[Point]:
    candidates = [_candidates(data, k, criterion) for k in range(len(data.scores) - 1)]
    points = []
    if math.prod(len(c) for c in candidates) <= EXHAUSTIVE_LIMIT:
        for combo in itertools.product(*candidates):
            points.append(_point(data, combo, costs, z))
        return points
    # coordinate descent from "no early exit", sweeping every candidate of one exit
    current = [NEVER] * len(candidates)
    for _ in range(3):
        for k, options in enumerate(candidates):
            for value in options:
                trial = list(current)
                trial[k] = value
                points.append(_point(data, trial, costs, z))
            current = list(min(points, key=lambda p: (p[2], -p[1]))[0])
    return points


def _choose(points: list[Point], objective: str, limit: float, final_accuracy: float,
            cost_unit: str) -> Point:
    if objective == "max_accuracy_drop":
        # the drop's upper bound must stay within the limit (no early exit always does)
        feasible = [p for p in points if p[3] <= limit + 1e-12]
        return min(feasible, key=lambda p: (p[2], -p[1]))
    feasible = [p for p in points if p[2] <= limit]
    if not feasible:
        cheapest = min(p[2] for p in points)
        raise InputDataError(f"no thresholds meet a budget of {limit:g} {cost_unit} per sample; "
                             f"the cheapest possible is {cheapest:g} (everything leaving at "
                             "the first exit): raise the budget")
    return max(feasible, key=lambda p: (p[1], -p[2]))


def pareto_front(points: list[Point]) -> list[Point]:
    front, best = [], -1.0
    for p in sorted(points, key=lambda p: (p[2], -p[1])):
        if p[1] > best + 1e-12:
            front.append(p)
            best = p[1]
    return front


def calibrate(bundle: Bundle, x: np.ndarray, y: np.ndarray, objective: str, limit: float,
              costs: Sequence[float], cost_unit: str, criterion: str = "max_softmax",
              runtime: str | None = None, z: float = 2.0,
              cost_basis: str | None = None, tick: Tick | None = None) -> Calibration:
    """Search per-exit thresholds; ``objective`` is max_accuracy_drop or budget.

    For an accuracy-drop budget the drop is bounded with ``z`` standard errors
    (paired with the final exit), so thresholds that only fit the calibration
    samples by luck are not chosen; z = 0 takes the drop at face value.
    ``cost_basis`` says how the costs were estimated (e.g. milliseconds from
    QEMU instructions), None when they were measured or counted.
    """
    if len(y) == 0:
        raise InputDataError("the calibration data is empty")
    if objective not in ("max_accuracy_drop", "budget"):
        raise ValueError(objective)
    runtime = runtime or ("onnx" if all("onnx" in s["files"] for s in bundle.stages)
                          else "int8-reference")
    data = collect_scores(bundle, runtime, x, y, criterion, tick)
    final_accuracy = float(data.correct[-1].mean())
    points = _search(data, costs, criterion, z)
    combo = _choose(points, objective, limit, final_accuracy, cost_unit)[0]
    front = pareto_front(points)

    def point(thresholds: Sequence[float]) -> OperatingPoint:
        accuracy, cost, exit_index = evaluate(data, thresholds, costs)
        rates = [float(np.mean(exit_index == k)) for k in range(len(data.scores))]
        floats: list[float | None] = []
        for k, t in enumerate(thresholds):
            if math.isinf(t):
                floats.append(None)
            elif data.integer:
                floats.append(float(min(1.0, max(0.0, float_threshold(
                    t, criterion, data.classes[k], data.quant(k), data.running(k))))))
            else:
                floats.append(float(min(1.0, max(0.0, t))))
        return OperatingPoint(floats + [None], accuracy, cost, rates)

    global_points = []
    for t in list(GRID) + [NEVER]:
        combo_t = [t if not data.integer or math.isinf(t) else
                   integer_threshold(t, criterion, data.classes[k], data.quant(k),
                                     data.running(k))
                   for k in range(len(data.scores) - 1)]
        global_points.append(_point(data, combo_t, costs, z))
    try:
        best_global = point(_choose(global_points, objective, limit, final_accuracy,
                                    cost_unit)[0])
    except InputDataError:
        best_global = None
    return Calibration(criterion, objective, cost_unit, len(y), final_accuracy, point(combo),
                       best_global, [point(p[0]) for p in front], len(points), cost_basis)


def plot_calibration(result: Calibration, path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p.cost for p in result.pareto], [p.accuracy for p in result.pareto], "o-",
            color="#4477aa", markersize=3, label="Pareto front (per-exit thresholds)")
    if result.best_global is not None:
        ax.plot(result.best_global.cost, result.best_global.accuracy, "s", color="#ccbb44",
                label="best single global threshold")
    ax.plot(result.chosen.cost, result.chosen.accuracy, "*", color="#cc6677", markersize=14,
            label="chosen")
    ax.axhline(result.final_accuracy, color="grey", linestyle=":", label="final exit alone")
    ax.set_xlabel(f"expected cost per sample ({result.cost_unit})")
    ax.set_ylabel("cascade accuracy (calibration data)")
    ax.set_title(f"{result.criterion}, {result.objective}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
