"""``eedge calibrate`` and ``eedge evaluate``: thresholds from data, and how they do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.markup import escape
from rich.table import Table

from eedge.cli.console import debug_option, json_option, out_console, print_json
from eedge.cli.options import FiniteFloat
from eedge.cli.progress import progress
from eedge.cli.tables import human_cost, human_count
from eedge.errors import InputDataError
from eedge.io.arrays import load_labelled
from eedge.policies.costs import ExitCosts, latency_costs, mac_costs
from eedge.policies.criteria import CRITERIA
from eedge.policies.labels import check_labels
from eedge.runtime.stage_runners import RUNTIMES


def exit_costs(bundle: Any, budget_kind: str, profile: Path | None, target: str | None,
               x: np.ndarray) -> ExitCosts:
    """Cost of a sample leaving at each exit: MACs, or latency from a profile.

    QEMU (instructions) and board (cycles) profiles give milliseconds through
    the per-stage estimates from the target's clock; ExitCosts.basis says so.
    """
    if budget_kind == "macs":
        return mac_costs(bundle)
    if profile is not None:
        try:
            report = json.loads(profile.read_text())
        except (OSError, ValueError) as exc:
            raise InputDataError(f"{profile} is not a report from `eedge profile --report` "
                                 f"({exc})") from exc
        return latency_costs(bundle, report, str(profile))
    if target is not None:
        from eedge.profiling.drivers import profile_target
        from eedge.profiling.report import build_report
        from eedge.targets import load_target

        profiles = profile_target(bundle, load_target(target), x[:1], None, 1, 20, 200,
                                  lambda _m: None)
        return latency_costs(bundle, build_report(profiles, bundle, None),
                             f"the measurement on {target}")
    raise InputDataError("--budget-ms needs latencies: pass --profile REPORT.json (from "
                         "`eedge profile --report`) or --target T to measure them now")


@click.command("calibrate")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="Held-out data: .npz with x (inputs) and y (integer labels).")
@click.option("--max-accuracy-drop", type=FiniteFloat(0, 1),
              help="Cheapest thresholds whose accuracy is within this of the final exit's.")
@click.option("--budget-macs", type=FiniteFloat(min=0),
              help="Most accurate thresholds within MACs/sample.")
@click.option("--budget-ms", type=FiniteFloat(min=0),
              help="Most accurate thresholds within ms/sample.")
@click.option("--profile", "profile", type=click.Path(path_type=Path),
              help="Latencies for --budget-ms (a report from `eedge profile --report`).")
@click.option("--target", "target", help="Measure latencies for --budget-ms on this target.")
@click.option("--criterion", type=click.Choice(list(CRITERIA)), default="max_softmax",
              show_default=True, help="How an exit scores its confidence.")
@click.option("--runtime", type=click.Choice(list(RUNTIMES)),
              help="Runtime whose decisions are calibrated (default: onnx, else int8).")
@click.option("--confidence-z", type=FiniteFloat(0, 100), default=2.0, show_default=True,
              help="With --max-accuracy-drop: bound the drop by this many standard errors "
                   "(0 trusts the calibration data at face value).")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="PNG of accuracy vs expected cost with the chosen point.")
@click.option("--risk", type=FiniteFloat(0, 1),
              help="Selective classification: a selective threshold and per-exit windows "
                   "with at most this risk (error rate among accepted samples), cheapest in "
                   "expected MACs.")
@click.option("--coverage", type=FiniteFloat(0, 1),
              help="Selective classification: accept at least this share of samples, "
                   "cheapest in expected MACs.")
@click.option("--max-coverage-drop", type=FiniteFloat(0, 1), default=0.01, show_default=True,
              help="With --risk: coverage the windows may lose against no early exit.")
@click.option("--max-risk-increase", type=FiniteFloat(0, 1), default=0.0, show_default=True,
              help="With --coverage: risk the windows may add against no early exit.")
@click.option("--risk-z", type=FiniteFloat(0, 100), default=0.0, show_default=True,
              help="With --risk: keep the risk's Wilson upper bound (this many standard "
                   "errors) within the target, not just the measured risk.")
@click.option("--ensemble", type=click.Choice(["running-mean", "none"]),
              help="running-mean: every exit decides on the mean of the exits' probabilities "
                   "so far (stored in the bundle); none: turn that off.")
@click.option("--dry-run", is_flag=True, help="Report without writing thresholds.")
@json_option
@debug_option
def calibrate(bundle: Path, data: Path, max_accuracy_drop: float | None,
              budget_macs: float | None, budget_ms: float | None, profile: Path | None,
              target: str | None, criterion: str, runtime: str | None, confidence_z: float,
              plot_path: Path | None, risk: float | None, coverage: float | None,
              max_coverage_drop: float, max_risk_increase: float, risk_z: float,
              ensemble: str | None, dry_run: bool, as_json: bool) -> None:
    """Choose per-exit thresholds for BUNDLE on held-out data and store them in it.

    \b
    Examples:
      eedge calibrate bundle --data val.npz --max-accuracy-drop 0.01
      eedge calibrate bundle --data val.npz --budget-macs 50000 --criterion margin
      eedge calibrate bundle --data val.npz --budget-ms 0.02 --profile host.json --plot c.png
      eedge calibrate bundle --data val.npz --risk 0.02 --ensemble running-mean
    """
    from eedge.ir.bundle import load_bundle
    from eedge.policies.apply import record_thresholds
    from eedge.policies.calibrate import calibrate as run, plot_calibration

    chosen = [v for v in (max_accuracy_drop, budget_macs, budget_ms, risk, coverage)
              if v is not None]
    if len(chosen) != 1:
        raise InputDataError("give exactly one of --max-accuracy-drop, --budget-macs, "
                             "--budget-ms, --risk, --coverage")
    if chosen[0] < 0:
        raise InputDataError("budgets and accuracy drops must be non-negative")
    loaded = load_bundle(bundle)
    if ensemble is not None:  # decided (and written) with the mode asked for
        from eedge.cli.selective_cmd import with_ensemble_mode

        loaded = with_ensemble_mode(loaded, ensemble)
    x, y = load_labelled(data)
    check_labels(y, [e["num_classes"] for e in loaded.exits], str(data))
    if risk is not None or coverage is not None:
        from eedge.cli.selective_cmd import calibrate_selective_command

        calibrate_selective_command(loaded, x, y, risk, coverage, max_coverage_drop,
                                    max_risk_increase, criterion, runtime, plot_path,
                                    dry_run, as_json, risk_z)
        return
    kind = "macs" if budget_ms is None else "ms"
    costs = exit_costs(loaded, kind, profile, target, x)
    objective = "max_accuracy_drop" if max_accuracy_drop is not None else "budget"
    with progress("scoring every exit, then searching thresholds", quiet=as_json) as shown:
        result = run(loaded, x, y, objective, chosen[0], costs.values, costs.unit, criterion,
                     runtime, confidence_z, costs.basis, tick=shown.tick)
    if plot_path is not None:
        plot_calibration(result, plot_path)
    if not dry_run:
        record_thresholds(loaded, result.chosen.thresholds, criterion,
                          f"calibrated ({objective} {chosen[0]:g})", result.to_json())
    if as_json:
        print_json(result.to_json())
        return
    show(result)
    out_console.print("thresholds not written (--dry-run)" if dry_run else
                      f"thresholds written to {escape(str(bundle))}/manifest.json")


def show(result: Any) -> None:
    c = result.chosen
    unit = result.cost_unit
    table = Table(title=f"{result.criterion} thresholds ({result.objective}, "
                        f"{result.samples} samples, {result.evaluated} settings tried)")
    for name in ("exit", "threshold", "exit rate"):
        table.add_column(name, justify="right")
    for k, (t, rate) in enumerate(zip(c.thresholds, c.exit_rates)):
        final = k == len(c.thresholds) - 1
        table.add_row(f"exit{k}", "final" if final else ("never" if t is None else f"{t:.4f}"),
                      f"{rate:.1%}")
    out_console.print(table)
    estimate = " (estimate)" if result.cost_basis else ""
    out_console.print(f"accuracy {c.accuracy:.2%} (final exit alone {result.final_accuracy:.2%})"
                      f", expected cost {human_cost(c.cost, unit)}/sample{estimate}")
    g = result.best_global
    if g is not None:
        out_console.print(f"best single global threshold: accuracy {g.accuracy:.2%}, cost "
                          f"{human_cost(g.cost, unit)}{estimate}")
    front = ", ".join(f"{human_cost(p.cost, unit)}:{p.accuracy:.3f}"
                      for p in result.pareto[:12])
    out_console.print(f"Pareto front (cost:accuracy) {front}{' ...' if len(result.pareto) > 12 else ''}")
    if result.cost_basis:
        out_console.print(f"costs are estimates: {result.cost_basis}")


@click.command("evaluate")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="Test data: .npz with x and y.")
@click.option("--runtime", type=click.Choice(list(RUNTIMES)), help="Runtime to evaluate.")
@click.option("--profile", "profile", type=click.Path(path_type=Path),
              help="A report from `eedge profile --report`, for expected latency.")
@click.option("--uncertainty", is_flag=True,
              help="Also F1, Brier, NLL and failure-detection AUROC/AUPRC, per exit and for "
                   "the cascade (its ensemble, if it has one).")
@click.option("--selective", is_flag=True,
              help="Also selective classification: risk–coverage, AURC, coverage at --risk "
                   "and expected MACs of the cascade against the final exit alone.")
@click.option("--risk", "selective_risk", type=FiniteFloat(0, 1), default=0.02,
              show_default=True, help="With --selective: the risk to report coverage at.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="With --selective: PNG of the risk–coverage curves.")
@json_option
@debug_option
def evaluate(bundle: Path, data: Path, runtime: str | None, profile: Path | None,
             uncertainty: bool, selective: bool, selective_risk: float, plot_path: Path | None,
             as_json: bool) -> None:
    """Accuracy, exit rates, calibration error and expected cost of BUNDLE's cascade.

    \b
    Example:
      eedge evaluate demo-out/bundle --data demo-out/test.npz
      eedge evaluate bundle --data test.npz --selective --risk 0.02 --plot rc.png
    """
    from eedge.ir.bundle import load_bundle
    from eedge.metrics import expected_calibration_error
    from eedge.policies.criteria import softmax
    from eedge.runtime import batched
    from eedge.runtime.cascade import Cascade

    if plot_path is not None and not selective:
        raise click.UsageError("--plot draws risk–coverage curves: add --selective")
    loaded = load_bundle(bundle)
    x, y = load_labelled(data)
    if len(y) == 0:
        raise InputDataError(f"{data} holds no samples")
    y = check_labels(y, [e["num_classes"] for e in loaded.exits], str(data))
    cascade = Cascade(loaded, runtime=runtime)
    with progress(f"every exit on {len(x)} samples ({cascade.runtime})",
                  quiet=as_json) as shown:
        logits = [cascade.class_logits(k, lg)  # without a learned gate's column
                  for k, lg in enumerate(batched.run_all_exits(cascade, x, tick=shown.tick))]
        shown.say(f"the cascade on {len(x)} samples ({cascade.runtime})")
        decided = batched.infer(cascade, x, tick=shown.tick)
    macs = [e["cumulative_macs"] for e in loaded.exits]
    report: dict[str, Any] = {"runtime": cascade.runtime, "samples": int(len(y)), "exits": []}
    for k, lg in enumerate(logits):
        probs = softmax(lg)
        here = decided.exit_index == k
        report["exits"].append({
            "index": k, "accuracy": float(np.mean(np.argmax(lg, axis=-1) == y)),
            "ece": expected_calibration_error(probs, y), "exit_rate": float(np.mean(here)),
            "accuracy_when_exiting": float(np.mean(decided.predictions[here] == y[here]))
            if here.any() else None,
            "threshold": cascade.thresholds[k], "criterion": cascade.criteria[k]})
    rates = [e["exit_rate"] for e in report["exits"]]
    report["cascade_accuracy"] = float(np.mean(decided.predictions == y))
    report["expected_macs"] = float(np.dot(rates, macs))
    report["full_macs"] = float(macs[-1])
    if uncertainty:
        from eedge.metrics import uncertainty_report

        for e, lg in zip(report["exits"], logits):
            e["uncertainty"] = uncertainty_report(softmax(lg), y)
        report["cascade_uncertainty"] = uncertainty_report(
            decided.probabilities.astype(np.float64), y)
    if profile is not None:
        costs = exit_costs(loaded, "ms", profile, None, x)
        report["expected_latency"] = {"value": float(np.dot(rates, costs.values)),
                                      "unit": costs.unit, "no_exit": costs.values[-1],
                                      "estimated": costs.estimated, "basis": costs.basis}
    if selective:
        from eedge.cli.selective_cmd import selective_section

        report["selective"] = selective_section(loaded, cascade, decided, x, y, selective_risk,
                                                plot_path, quiet=as_json)
    if as_json:
        print_json(report)
        return
    table = Table(title=f"{len(y)} samples ({cascade.runtime} runtime)")
    for name in ("exit", "accuracy", "ECE", "criterion", "threshold", "exit rate",
                 "acc when exiting"):
        table.add_column(name, justify="right")
    for e in report["exits"]:
        table.add_row(f"exit{e['index']}", f"{e['accuracy']:.2%}", f"{e['ece']:.4f}",
                      e["criterion"], "-" if e["threshold"] is None else f"{e['threshold']:.4f}",
                      f"{e['exit_rate']:.1%}", "-" if e["accuracy_when_exiting"] is None
                      else f"{e['accuracy_when_exiting']:.2%}")
    out_console.print(table)
    out_console.print(f"cascade accuracy {report['cascade_accuracy']:.2%}; expected MACs "
                      f"{human_count(report['expected_macs'])} vs {human_count(report['full_macs'])}"
                      f" ({1 - report['expected_macs'] / report['full_macs']:.1%} saved)")
    if uncertainty:
        table = Table(title="uncertainty")
        for name in ("", "accuracy", "macro F1", "Brier", "NLL", "ECE", "AUROC", "AUPRC"):
            table.add_column(name, justify="right")
        rows = [(f"exit{e['index']}", e["uncertainty"]) for e in report["exits"]]
        rows.append(("cascade", report["cascade_uncertainty"]))
        for label, u in rows:
            table.add_row(label, *(("-" if u[k] is None else f"{u[k]:.4f}") for k in (
                "accuracy", "macro_f1", "brier", "nll", "ece", "failure_auroc",
                "failure_auprc")))
        out_console.print(table)
    if "expected_latency" in report:
        lat = report["expected_latency"]
        out_console.print(f"expected latency {human_cost(lat['value'], lat['unit'])} vs "
                          f"{human_cost(lat['no_exit'], lat['unit'])} without exits"
                          + (f" ({lat['basis']})" if lat["estimated"] else ""))
    if selective:
        from eedge.cli.selective_cmd import show_selective

        show_selective(report["selective"], plot_path)
