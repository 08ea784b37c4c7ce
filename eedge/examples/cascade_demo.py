"""Cascade demo: three independent CNNs, window-based deferral, vs the largest model alone.

Reproduces the setting of Xia & Bouganis (window-based early-exit cascades) on
digits: three CNNs of increasing size are trained independently (on digits
plus corrupted copies), exported the way a user would (``torch.onnx.export``
with its defaults), cascaded into one bundle (:func:`eedge.cascade.build_cascade`,
what ``eedge cascade build`` runs), and given a window-deferral policy for
selective classification at a target risk: after member k the running mean of
members 0..k's probabilities scores the sample; above the window it is
answered, below it is rejected, inside it goes on to member k + 1.

The policy is chosen on the validation split (:func:`eedge.policies.selective.calibrate_window`)
and measured on the test split, clean and corrupted, by the bundle's own
runtime; the largest model alone gets its selective threshold from the same
validation data. Reported per system: accuracy, AURC, coverage and risk at the
calibrated operating point, the best coverage at the target risk on the test
data itself (an oracle threshold, for reference) and expected MACs.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eedge.examples.cascade_members import SIZES, export_member, train_member
from eedge.examples.corruptions import KINDS, corrupt
from eedge.examples.digits import DigitsSplits, load_digits_splits

Progress = Callable[[str], None]
TARGET_RISK = 0.02
EPOCHS = 20
CALIBRATION_SAMPLES = 256


@dataclass
class SystemResult:
    """One system (a single model, or the cascade) on one test set."""

    name: str
    accuracy: float            # predictions on every sample (rejected or not)
    aurc: float                # area under the risk-coverage curve of its score
    coverage: float            # at the operating point calibrated on validation data
    risk: float                # at that operating point (target: TARGET_RISK)
    oracle_coverage: float     # the largest coverage at risk <= target on this test set
    expected_macs: float       # at the calibrated operating point
    oracle_macs: float = 0.0   # of the oracle point (the cascade: its cheapest such policy)
    exit_rates: list[float] = field(default_factory=list)


@dataclass
class CascadeDemoReport:
    target_risk: float
    members: list[dict[str, Any]]              # name, MACs, test accuracy alone
    results: dict[str, list[SystemResult]]     # test set -> systems
    window: dict[str, Any]                     # tau, lows, highs (validation)
    reached: dict[str, bool]  # test set -> cascade covers >= largest at target risk, fewer MACs
    seconds: dict[str, float]
    bundle: str | None = None
    int8_agreement: float | None = None        # int8 vs float cascade decisions (test)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _with_corrupted(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The images plus one corrupted copy: each kind on a quarter of them, severity 1 or 2."""
    rng = np.random.default_rng(seed)
    parts = [corrupt(x[i::len(KINDS)], kind, int(rng.integers(1, 3)), seed + i)
             for i, kind in enumerate(KINDS)]
    labels = [y[i::len(KINDS)] for i in range(len(KINDS))]
    return (np.concatenate([x] + parts).astype(np.float32), np.concatenate([y] + labels))


def run_cascade_demo(out: Path | None = None, seed: int = 0, epochs: int = EPOCHS,
                     target_risk: float = TARGET_RISK, progress: Progress | None = None,
                     int8: bool = True) -> CascadeDemoReport:
    say = progress or (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="eedge-cascade-") as tmp:
        work = Path(out) if out is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        return _run(work, out is not None, seed, epochs, target_risk, say, int8)


def _run(work: Path, keep: bool, seed: int, epochs: int, target_risk: float, say: Progress,
         int8: bool) -> CascadeDemoReport:
    from eedge.cascade import build_cascade

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    data = load_digits_splits(seed=seed)
    x_train, y_train = _with_corrupted(data.x_train, data.y_train, seed)
    x_val, y_val = _with_corrupted(data.x_val, data.y_val, seed + 10)
    x_test, y_test = _with_corrupted(data.x_test, data.y_test, seed + 20)
    clean = len(data.x_test)
    if keep:  # the images the report's numbers come from, to check them with the bundle
        np.savez(work / "test.npz", x=x_test, y=y_test)
        np.savez(work / "val.npz", x=x_val, y=y_val)
    paths = []
    for k, size in enumerate(SIZES):
        say(f"training the {size} CNN ({epochs} epochs, {len(x_train)} images)")
        model = train_member(size, x_train, y_train, epochs, seed + k)
        path = work / f"{size}.onnx"
        export_member(model, path)  # torch.onnx.export's defaults: weights in .onnx.data
        paths.append(path)
    seconds["train_and_export"] = time.perf_counter() - start
    say("eedge cascade build " + " ".join(p.name for p in paths))
    t = time.perf_counter()
    bundle = build_cascade(paths, work / "bundle", force=True, int8=int8,
                           formats=("onnx",), calibration=x_train[:CALIBRATION_SAMPLES],
                           progress=say).bundle
    seconds["cascade_build"] = time.perf_counter() - t
    say(f"calibrating the window deferral for risk {target_risk:.0%} on validation data")
    t = time.perf_counter()
    window = calibrate_deferral(bundle, x_val, y_val, target_risk, running=True)
    own = calibrate_deferral(bundle, x_val, y_val, target_risk, running=False)
    bundle = write_deferral(bundle, window)
    seconds["calibrate"] = time.perf_counter() - t
    t = time.perf_counter()
    taus = _single_taus(bundle, x_val, y_val, target_risk)
    sets = {"digits + corrupted": (x_test, y_test), "clean only": (x_test[:clean], y_test[:clean]),
            "corrupted only": (x_test[clean:], y_test[clean:])}
    results = {name: evaluate_systems(bundle, x, y, taus, target_risk, own)
               for name, (x, y) in sets.items()}
    seconds["evaluate"] = time.perf_counter() - t
    reached = {name: _reaches(rows) for name, rows in results.items()}
    members = [{"name": m["name"], "macs": m["macs"],
                "test_accuracy": results["digits + corrupted"][k].accuracy}
               for k, m in enumerate(bundle.manifest["cascade"]["members"])]
    agreement = _int8_agreement(bundle, x_test) if int8 else None
    seconds["total"] = time.perf_counter() - start
    return CascadeDemoReport(target_risk, members, results,
                             {"tau": window.window_low[-1], "lows": window.window_low,
                              "highs": window.thresholds, "validation": window.chosen},
                             reached, seconds,
                             str(bundle.path) if keep else None, agreement)


def _member_logits(bundle: Any, x: np.ndarray) -> list[np.ndarray]:
    from eedge.runtime.cascade import Cascade

    return Cascade(bundle, runtime="onnx").run_all_exits(x)


def _costs(bundle: Any) -> list[float]:
    return [float(e["cumulative_macs"]) for e in bundle.exits]


def calibrate_deferral(bundle: Any, x: np.ndarray, y: np.ndarray, target_risk: float,
                       running: bool = True) -> Any:
    """The window policy for ``target_risk`` on max-softmax scores, chosen by
    :func:`eedge.policies.selective.calibrate_selective` (what ``eedge calibrate --risk R
    --ensemble running-mean|none`` runs) with the float runtime: on the running mean of the
    members so far (``running``), or on each member's own score (the last member then
    decides as the largest model alone does). The bundle on disk is not changed."""
    from eedge.ir.bundle import Bundle
    from eedge.policies.costs import mac_costs
    from eedge.policies.running_mean import set_running_mean
    from eedge.policies.selective import calibrate_selective

    manifest = json.loads(json.dumps(bundle.manifest))
    set_running_mean(manifest, running)
    mode = Bundle(path=bundle.path, manifest=manifest)
    costs = mac_costs(mode)
    # max_coverage_drop=0: the cascade must cover what its last exit alone (the ensemble of
    # all members, or the largest member) covers at the target risk, not 1 % less
    return calibrate_selective(mode, x, y, costs.values, costs.unit, target_risk=target_risk,
                               runtime="onnx", max_coverage_drop=0.0)


def write_deferral(bundle: Any, result: Any) -> Any:
    """Store the policy in the manifest (``eedge.policies.selective.write_selective``):
    exit k answers at >= its threshold and rejects below its window_low, the final exit
    rejects below tau; with the ensemble mode the policy was calibrated for."""
    from eedge.ir.bundle import update_manifest
    from eedge.policies.running_mean import set_running_mean
    from eedge.policies.selective import write_selective

    bundle = update_manifest(bundle, lambda m: set_running_mean(m, result.running_mean))
    return write_selective(bundle, result, f"cascade demo (selective risk "
                                           f"{result.target_value:g})")


def _scores(logits: list[np.ndarray], y: np.ndarray, running: bool
            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per exit: the max-softmax score it decides on and whether its answer is right."""
    from eedge.policies import running_mean
    from eedge.policies.criteria import softmax

    if running:
        scores, predictions = running_mean.running_scores(
            logits, [None] * len(logits), list(range(len(logits))), "max_softmax")
    else:
        probs = [softmax(z) for z in logits]
        scores, predictions = [p.max(-1) for p in probs], [p.argmax(-1) for p in probs]
    return scores, [p == y for p in predictions]


def _single_taus(bundle: Any, x: np.ndarray, y: np.ndarray, target_risk: float) -> list[float]:
    """Each member's own selective threshold for ``target_risk`` on validation data, then
    the ensemble's (mean of all members); infinite (reject everything) where no threshold
    reaches the risk."""
    from eedge.policies.criteria import softmax
    from eedge.policies.selective import coverage_at_risk

    probs = [softmax(z) for z in _member_logits(bundle, x)]
    taus = []
    for p in probs + [np.mean(probs, axis=0)]:
        _, tau = coverage_at_risk(p.max(-1), p.argmax(-1) == y, target_risk)
        taus.append(float("inf") if tau is None else float(tau))
    return taus


def evaluate_systems(bundle: Any, x: np.ndarray, y: np.ndarray, taus: list[float],
                     target_risk: float, own: Any = None) -> list[SystemResult]:
    """Each member alone, the cascade with its window policy (the bundle's runtime), and
    the full ensemble (every member, no early exit); ``taus`` are the members' and then the
    ensemble's selective thresholds (calibrated on validation data). With ``own`` (a window
    calibrated on each member's own scores) also that cascade, decided by
    :func:`eedge.policies.selective.simulate` on the members' outputs."""
    from eedge.policies.criteria import softmax
    from eedge.policies.selective import aurc, coverage_at_risk
    from eedge.runtime.cascade import Cascade

    logits = _member_logits(bundle, x)
    costs = _costs(bundle)
    names = [m["name"] for m in bundle.manifest["cascade"]["members"]]
    rows = []
    for k, (name, z) in enumerate(zip(names, logits)):
        p = softmax(z)
        score, right = p.max(-1), p.argmax(-1) == y
        accepted = score >= taus[k]
        rows.append(_row(name, right, score, accepted,
                         float(bundle.stages[k]["macs"]), target_risk, aurc, coverage_at_risk))
    cascade = Cascade(bundle, runtime="onnx").infer(x)
    right = cascade.predictions == y
    row = _row("cascade", right, cascade.confidence, ~cascade.rejected,
               float(np.mean(np.asarray(costs)[cascade.exit_index])), target_risk, aurc,
               coverage_at_risk,
               [float(np.mean(cascade.exit_index == k)) for k in range(len(costs))])
    # the oracle for the cascade: the cheapest window policy reaching the target risk at the
    # full ensemble's coverage, chosen on this test set itself (as the single models' oracle
    # thresholds are)
    best = calibrate_deferral(bundle, x, y, target_risk, running=True).chosen
    row.oracle_coverage, row.oracle_macs = float(best["coverage"]), float(best["expected_cost"])
    rows.append(row)
    if own is not None:
        rows.append(_own_row(bundle, x, logits, y, costs, own, target_risk))
    mean = np.mean([softmax(z) for z in logits], axis=0)
    rows.append(_row("ensemble", mean.argmax(-1) == y, mean.max(-1),
                     mean.max(-1) >= taus[-1], costs[-1], target_risk, aurc, coverage_at_risk))
    return rows


def _own_row(bundle: Any, x: np.ndarray, logits: list[np.ndarray], y: np.ndarray,
             costs: list[float], own: Any, target_risk: float) -> SystemResult:
    """The cascade whose members decide on their own scores (no ensemble), with the
    policy ``own`` calibrated on validation data, decided by
    :func:`eedge.policies.selective.simulate` (as the runtimes decide)."""
    from eedge.policies.selective import aurc, simulate

    scores, correct = _scores(logits, y, running=False)
    o = simulate(scores, correct, own.window_low, own.thresholds, costs)
    confidence = np.stack(scores)[o.exit_index, np.arange(len(y))]
    best = calibrate_deferral(bundle, x, y, target_risk, running=False).chosen
    return SystemResult("cascade-own", o.accuracy, float(aurc(confidence, o.correct)),
                        o.coverage, o.risk, float(best["coverage"]), o.expected_cost,
                        float(best["expected_cost"]), o.exit_rates())


def _row(name: str, right: np.ndarray, score: np.ndarray, accepted: np.ndarray, macs: float,
         target_risk: float, aurc: Any, coverage_at_risk: Any,
         exit_rates: list[float] | None = None) -> SystemResult:
    n = int(accepted.sum())
    risk = float(np.sum(accepted & ~right) / n) if n else 0.0
    oracle, _ = coverage_at_risk(score, right, target_risk)
    return SystemResult(name, float(np.mean(right)), float(aurc(score, right)),
                        float(np.mean(accepted)), risk, float(oracle), macs, macs,
                        exit_rates or [])


def _reaches(rows: list[SystemResult]) -> bool:
    """The issue's criterion: the cascade's coverage at the target risk is at least the
    largest model's, with fewer expected MACs (both at their best operating point on the
    test set; the validation-calibrated points are reported beside it)."""
    large, cascade = rows[len(SIZES) - 1], rows[len(SIZES)]
    return cascade.oracle_coverage >= large.oracle_coverage and \
        cascade.oracle_macs < large.oracle_macs


def _int8_agreement(bundle: Any, x: np.ndarray) -> float:
    """Share of samples the int8 cascade decides like the float one (exit, class, reject)."""
    from eedge.runtime.cascade import Cascade

    a = Cascade(bundle, runtime="onnx").infer(x)
    b = Cascade(bundle, runtime="int8-reference").infer(x)
    same = (a.exit_index == b.exit_index) & (a.predictions == b.predictions) & \
        (a.rejected == b.rejected)
    return float(np.mean(same))


def renderables(report: CascadeDemoReport) -> list[Any]:
    """What ``eedge demo --cascade`` prints: one table per test set, then the verdict."""
    from rich.table import Table

    from eedge.cli.tables import human_count

    risk = f"{report.target_risk:.0%}"
    out: list[Any] = []
    for name, rows in report.results.items():
        table = Table(title=f"{name} test images: selective classification at {risk} risk",
                      caption="cascade: decisions on the running mean of the members so far; "
                              "cascade-own: each member on its own score. cov, risk, MACs: at "
                              "the operating point calibrated on validation data; best cov: "
                              f"the largest coverage at <= {risk} risk on these images, and "
                              "its MACs")
        for column in ("system", "acc", "AURC", "cov", "risk", "MACs", "best cov", "MACs"):
            table.add_column(column, justify="right")
        for r in rows:
            table.add_row(r.name, f"{r.accuracy:.2%}", f"{r.aurc:.4f}", f"{r.coverage:.1%}",
                          f"{r.risk:.2%}", human_count(r.expected_macs),
                          f"{r.oracle_coverage:.1%}", human_count(r.oracle_macs))
        out.append(table)
    for name, rows in report.results.items():
        large, cascade = rows[len(SIZES) - 1], rows[len(SIZES)]
        verdict = "reaches" if report.reached[name] else "does not reach"
        out.append(f"{name}: the cascade {verdict} the large model's best coverage at {risk} "
                   f"risk ({cascade.oracle_coverage:.1%} vs {large.oracle_coverage:.1%}); its "
                   f"point costs {cascade.oracle_macs / large.oracle_macs:.0%} of the large "
                   f"model's MACs ({human_count(cascade.oracle_macs)} vs "
                   f"{human_count(large.oracle_macs)})")
        own = next((r for r in rows if r.name == "cascade-own"), None)
        if own is not None:
            out.append(f"  without the running mean (each member on its own score): "
                       f"{own.oracle_coverage:.1%} at {own.oracle_macs / large.oracle_macs:.0%}"
                       f" of the MACs")
    w = report.window
    lows = ", ".join("-" if v is None else f"{v:.3f}" for v in w["lows"][:-1])
    highs = ", ".join("-" if v is None else f"{v:.3f}" for v in w["highs"][:-1])
    out.append(f"window (validation): tau {w['tau']:.3f}; per early exit low {lows}, high "
               f"{highs}; decisions on the running mean of the members so far")
    if report.int8_agreement is not None:
        out.append(f"int8 cascade (TFLite Micro arithmetic) decides like the float one on "
                   f"{report.int8_agreement:.1%} of the test samples")
    out.append(f"took {report.seconds['total']:.1f} s (training and export "
               f"{report.seconds['train_and_export']:.1f} s)")
    if report.bundle:
        out.append(f"kept: the members (*.onnx), the cascade bundle {report.bundle} and the "
                   "validation/test images (val.npz, test.npz) beside them")
    return out
