"""Learned gates vs max-softmax thresholds on the same gated model, at equal expected MACs.

For each seed: train the gated digits CNN (eedge.examples.gated_digits, the
helper in eedge.train.gates), export it with torch.onnx.export's defaults and
`eedge export` (float ONNX and int8 stages), and score every exit once per
runtime with the runtime's own scores (float sigmoid / softmax on ONNX
Runtime; the device's integer scores on the int8 reference, i.e. what the C
runtime compares). Then, for both criteria on the *same* exits:

- ``matched``: every pair of per-exit thresholds (score quantiles of that data,
  plus "never") is evaluated on the evaluation set itself; at each MAC budget
  the most accurate setting whose expected MACs stay within it is reported
  with its ECE. Both criteria get the same search, so this compares the best
  each score can do at equal expected MACs (an upper envelope).
- ``calibrated``: thresholds chosen by `eedge.policies.calibrate` for the
  budget on the half of the validation split the gates were not refitted on
  (the gates see the other half), then applied unchanged to clean and
  corrupted test data (what a deployment does; MACs then drift with the data).

ECE is over the deciding exit's class probabilities (15 bins,
eedge.metrics.expected_calibration_error). A simulated decision is checked
against the runtime's own cascade on one setting per criterion, so the table
is what the runtimes decide.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from eedge.examples.corruptions import KINDS, corrupt
from eedge.examples.gated_digits import export_onnx, train_gated_digits
from eedge.export import export_onnx as eedge_export
from eedge.ir.bundle import Bundle
from eedge.ir.graph import QuantParams
from eedge.metrics import expected_calibration_error
from eedge.policies.calibrate import calibrate, collect_scores
from eedge.policies.criteria import softmax, split_gate
from eedge.policies.fixed_point import int8_probabilities
from eedge.runtime.cascade import Cascade

SEEDS = (0, 1, 2)
BUDGETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)     # fractions of the whole network's MACs
CRITERIA = ("gate", "max_softmax")
RUNTIMES = ("onnx", "int8-reference")
SEVERITY = 3
QUANTILES = 40


def _datasets(data: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    sets = {"clean": (data.x_test, data.y_test)}
    xs = [corrupt(data.x_test, kind, SEVERITY, seed=1) for kind in KINDS]
    sets[f"corrupted-{SEVERITY}"] = (np.concatenate(xs), np.tile(data.y_test, len(KINDS)))
    return sets


def _exit_probabilities(bundle: Bundle, runtime: str, x: np.ndarray) -> list[np.ndarray]:
    """Each exit's class probabilities as the runtime reports them (int8: (q + 128) / 256)."""
    cascade = Cascade(bundle, runtime=runtime)
    out = []
    for k, (e, values) in enumerate(zip(bundle.exits, cascade.run_all_exits(x, raw=True))):
        values, _ = split_gate(values, cascade.gates[k])
        spec = cascade.io[e["stage"]]["outputs"][0]
        if spec.get("quant"):
            q = int8_probabilities(values, QuantParams.from_json(spec["quant"]).scale[0])
            out.append((q.astype(np.float64) + 128) / 256)
        else:
            out.append(softmax(values))
    return out


def _settings(scores: list[np.ndarray]) -> list[tuple[float, float]]:
    grids = [np.unique(np.concatenate([np.quantile(s, np.linspace(0, 1, QUANTILES),
                                                   method="nearest"), [np.inf]]))
             for s in scores[:-1]]
    return list(itertools.product(*grids))


def _decide(scores: list[np.ndarray], thresholds: tuple[float, ...]) -> np.ndarray:
    n = len(scores[0])
    leaves = np.stack([s >= t for s, t in zip(scores[:-1], thresholds)] + [np.ones(n, bool)])
    return np.argmax(leaves, axis=0)


def _operating_points(scores: list[np.ndarray], probs: list[np.ndarray], y: np.ndarray,
                      costs: np.ndarray) -> list[dict[str, Any]]:
    points = []
    rows = np.arange(len(y))
    stacked = np.stack(probs)
    for thresholds in _settings(scores):
        exit_index = _decide(scores, thresholds)
        chosen = stacked[exit_index, rows]
        points.append({"thresholds": [float(t) for t in thresholds],
                       "macs": float(costs[exit_index].mean()),
                       "accuracy": float(np.mean(np.argmax(chosen, -1) == y)),
                       "ece": expected_calibration_error(chosen, y),
                       "exit_rates": [float(np.mean(exit_index == k)) for k in range(3)]})
    return points


def _best_within(points: list[dict[str, Any]], budget: float) -> dict[str, Any] | None:
    feasible = [p for p in points if p["macs"] <= budget]
    return max(feasible, key=lambda p: (p["accuracy"], -p["macs"])) if feasible else None


def _check_simulation(bundle: Bundle, runtime: str, criterion: str, x: np.ndarray,
                      scores: list[np.ndarray], thresholds: list[float], float_t: list) -> None:
    """The simulated exits equal the runtime cascade's on one calibrated setting."""
    cascade = Cascade(bundle, thresholds=float_t, runtime=runtime)
    cascade.set_policy(criterion)
    ran = cascade.infer(x).exit_index
    if not np.array_equal(ran, _decide(scores, tuple(thresholds))):
        raise AssertionError(f"simulated decisions differ from the {runtime} cascade "
                             f"({criterion})")


def one_seed(seed: int, workdir: Path) -> dict[str, Any]:
    trained = train_gated_digits(seed=seed, gate_fraction=0.5)
    onnx_file = export_onnx(trained.model, workdir / f"gated-{seed}.onnx")
    bundle = eedge_export(onnx_file, workdir / f"bundle-{seed}", int8=True,
                          calibration=trained.data.x_val, force=True).bundle
    costs = np.array([e["cumulative_macs"] for e in bundle.exits], dtype=np.float64)
    full = costs[-1]
    data = trained.data
    sets = _datasets(data)
    result: dict[str, Any] = {"seed": seed, "exit_macs": costs.tolist(), "runtimes": {}}
    for runtime in RUNTIMES:
        per_runtime: dict[str, Any] = {"exit_accuracy": {}, "matched": {}, "calibrated": {}}
        probs = {name: _exit_probabilities(bundle, runtime, x) for name, (x, _) in sets.items()}
        for name, (x, y) in sets.items():
            per_runtime["exit_accuracy"][name] = [float(np.mean(np.argmax(p, -1) == y))
                                                  for p in probs[name]]
        for criterion in CRITERIA:
            scored = {name: collect_scores(bundle, runtime, x, y, criterion)
                      for name, (x, y) in sets.items()}
            for name, (x, y) in sets.items():
                points = _operating_points(scored[name].scores, probs[name], y, costs)
                per_runtime["matched"].setdefault(name, {})[criterion] = {
                    str(b): _best_within(points, b * full) for b in BUDGETS}
            for b in BUDGETS:
                held = slice(trained.gate_rows, None)  # validation rows the gates never saw
                cal = calibrate(bundle, data.x_val[held], data.y_val[held], "budget", b * full,
                                costs.tolist(), "MACs", criterion=criterion, runtime=runtime)
                floats = cal.chosen.thresholds
                cascade = Cascade(bundle, thresholds=floats, runtime=runtime)
                cascade.set_policy(criterion)
                entry = {}
                for name, (x, y) in sets.items():
                    decided = cascade.infer(x)
                    entry[name] = {
                        "macs": float(costs[decided.exit_index].mean()),
                        "accuracy": float(np.mean(decided.predictions == y)),
                        "ece": expected_calibration_error(
                            decided.probabilities.astype(np.float64), y)}
                per_runtime["calibrated"].setdefault(criterion, {})[str(b)] = entry
                if b == BUDGETS[len(BUDGETS) // 2]:
                    integer = [collect_threshold(t, scored["clean"], k, criterion)
                               for k, t in enumerate(floats[:-1])]
                    _check_simulation(bundle, runtime, criterion, sets["clean"][0],
                                      scored["clean"].scores, integer, floats)
        result["runtimes"][runtime] = per_runtime
    return result


def collect_threshold(t: float | None, data: Any, k: int, criterion: str) -> float:
    """A stored float threshold as the score it compares (integer scores on int8)."""
    from eedge.policies.calibrate import integer_threshold

    if t is None:
        return np.inf
    return integer_threshold(t, criterion, data.classes[k], data.quant(k)) if data.integer \
        else t


def gates_bench(workdir: Path, seeds: tuple[int, ...] = SEEDS) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    per_seed = [one_seed(seed, workdir) for seed in seeds]
    return {"seeds": list(seeds), "budgets": list(BUDGETS), "severity": SEVERITY,
            "per_seed": per_seed, "summary": summarise(per_seed)}


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of accuracy, ECE and MACs per runtime, data set, criterion, budget."""
    summary: dict[str, Any] = {}
    first = per_seed[0]["runtimes"]
    for runtime, entry in first.items():
        for name in entry["matched"]:
            for criterion in CRITERIA:
                for b in map(str, BUDGETS):
                    for mode in ("matched", "calibrated"):
                        values = []
                        for seed in per_seed:
                            r = seed["runtimes"][runtime][mode]
                            p = r[name][criterion][b] if mode == "matched" else \
                                r[criterion][b][name]
                            if p is not None:
                                values.append((p["accuracy"], p["ece"], p["macs"]))
                        if len(values) == len(per_seed):
                            arr = np.array(values)
                            summary.setdefault(runtime, {}).setdefault(mode, {}).setdefault(
                                name, {}).setdefault(criterion, {})[b] = {
                                "accuracy": float(arr[:, 0].mean()),
                                "accuracy_std": float(arr[:, 0].std()),
                                "per_seed_accuracy": arr[:, 0].tolist(),
                                "ece": float(arr[:, 1].mean()),
                                "macs": float(arr[:, 2].mean())}
    return summary


def show_gates(results: dict[str, Any], console: Console) -> None:
    full = results["per_seed"][0]["exit_macs"][-1]
    for runtime, modes in results["summary"].items():
        for mode, sets in modes.items():
            how = ("thresholds swept on each set, best within the budget" if mode == "matched"
                   else "thresholds calibrated on clean held-out val for the budget")
            table = Table(title=f"learned gate vs max-softmax, {runtime}, {how} (mean of "
                                f"{len(results['seeds'])} seeds; corrupted = 4 kinds at "
                                f"severity {results['severity']})")
            for column in ("data", "budget", "gate acc", "msp acc", "gate ECE", "msp ECE",
                           "gate MACs", "msp MACs", "better", "seeds gate +/=/-"):
                table.add_column(column, justify="right")
            for name, by in sets.items():
                for b in map(str, results["budgets"]):
                    g, m = by.get("gate", {}).get(b), by.get("max_softmax", {}).get(b)
                    if g is None or m is None:
                        continue
                    diff = g["accuracy"] - m["accuracy"]
                    better = "gate" if diff > 0.0005 else ("msp" if diff < -0.0005 else "tie")
                    pairs = list(zip(g["per_seed_accuracy"], m["per_seed_accuracy"]))
                    seeds = (f"{sum(a > c for a, c in pairs)}/{sum(a == c for a, c in pairs)}/"
                             f"{sum(a < c for a, c in pairs)}")
                    table.add_row(name, f"{float(b):.0%}", f"{g['accuracy']:.2%}",
                                  f"{m['accuracy']:.2%}", f"{g['ece']:.4f}", f"{m['ece']:.4f}",
                                  f"{g['macs'] / full:.1%}", f"{m['macs'] / full:.1%}", better,
                                  seeds)
            console.print(table)


if __name__ == "__main__":
    import json
    import tempfile

    # python bench/gates_bench.py [SEEDS] [OUT.json]: this bench alone (`make bench` runs it too)
    seeds = tuple(int(s) for s in sys.argv[1].split(",")) if len(sys.argv) > 1 else SEEDS
    with tempfile.TemporaryDirectory(prefix="eedge-gates-") as tmp:
        out = gates_bench(Path(tmp), seeds)
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text(json.dumps(out, indent=2) + "\n")
    show_gates(out, Console(width=170))
