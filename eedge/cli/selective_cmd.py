"""The selective-classification parts of ``eedge calibrate`` and ``eedge evaluate``.

``eedge calibrate --risk R`` (or ``--coverage C``) chooses the selective
threshold and the per-exit windows (eedge.policies.selective);
``eedge evaluate --selective`` reports risk–coverage, AURC, coverage at a risk
and expected MACs of the cascade against the final exit alone.
``--ensemble running-mean`` (calibrate) switches the bundle's exits to
running-mean ensemble decisions first. Kept apart from calibrate_cmd.py so
the commands there stay thin.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape
from rich.table import Table

from eedge.cli.console import out_console, print_json
from eedge.cli.progress import progress
from eedge.cli.tables import human_count


def with_ensemble_mode(bundle: Any, mode: str) -> Any:
    """The bundle with its ensemble mode changed in memory (written with the thresholds)."""
    from eedge.ir.bundle import Bundle
    from eedge.policies.running_mean import set_running_mean

    manifest = json.loads(json.dumps(bundle.manifest))
    set_running_mean(manifest, mode == "running-mean")
    return Bundle(path=bundle.path, manifest=manifest)


def calibrate_selective_command(bundle: Any, x: np.ndarray, y: np.ndarray, risk: float | None,
                                coverage: float | None, max_coverage_drop: float,
                                max_risk_increase: float, criterion: str, runtime: str | None,
                                plot_path: Path | None, dry_run: bool, as_json: bool,
                                risk_z: float = 0.0) -> None:
    from eedge.policies.costs import mac_costs
    from eedge.policies.selective import calibrate_selective, write_selective

    costs = mac_costs(bundle)
    with progress("scoring every exit, then searching windows", quiet=as_json) as shown:
        result = calibrate_selective(bundle, x, y, costs.values, costs.unit, risk, coverage,
                                     criterion, runtime, max_coverage_drop, max_risk_increase,
                                     tick=shown.tick, risk_z=risk_z)
    if plot_path is not None:
        _plot_calibration(result, plot_path)
    target = f"{result.target} {result.target_value:g}"
    if not dry_run:
        write_selective(bundle, result, f"calibrated (selective {target})")
    if as_json:
        print_json(result.to_json())
        return
    table = Table(title=f"selective {target}: {result.criterion} windows, {result.samples} "
                        f"samples{', running mean' if result.running_mean else ''}")
    for name in ("exit", "accept at ≥", "reject below", "exit rate"):
        table.add_column(name, justify="right")
    last = len(result.thresholds) - 1
    for k, (high, low, rate) in enumerate(zip(result.thresholds, result.window_low,
                                               result.chosen["exit_rates"])):
        accept = ("tau " + f"{low:.4f}" if low is not None else "all") if k == last else (
            "never" if high is None else f"{high:.4f}")
        reject = "-" if low is None else f"{low:.4f}"
        table.add_row(f"exit{k}", accept, reject, f"{rate:.1%}")
    out_console.print(table)
    c, f = result.chosen, result.no_early_exit
    out_console.print(f"cascade: coverage {c['coverage']:.2%}, risk {c['risk']:.2%}, accuracy "
                      f"{c['accuracy']:.2%}, expected {human_count(c['expected_cost'])} "
                      f"{result.cost_unit}")
    out_console.print(f"same tau without early exits: coverage {f['coverage']:.2%}, risk "
                      f"{f['risk']:.2%}, {human_count(f['expected_cost'])} {result.cost_unit}")
    alone = result.final_alone
    if "coverage" in alone:
        bound = f" (Wilson bound, z {result.risk_z:g})" if result.risk_z else ""
        out_console.print(f"final exit alone: coverage {alone['coverage']:.2%} at risk "
                          f"{result.target_value:.2%}{bound}, accuracy {alone['accuracy']:.2%}, "
                          f"{human_count(alone['macs'])} MACs")
    else:
        out_console.print(f"final exit alone: risk {alone['risk']:.2%} at coverage "
                          f"{result.target_value:.2%}, accuracy {alone['accuracy']:.2%}, "
                          f"{human_count(alone['macs'])} MACs")
    out_console.print("windows not written (--dry-run)" if dry_run else
                      f"windows written to {escape(str(bundle.path))}/manifest.json")


def _plot_calibration(result: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, point, marker in (("cascade (chosen windows)", result.chosen, "*"),
                                ("no early exit, same tau", result.no_early_exit, "s")):
        ax.plot(point["expected_cost"], point["coverage"], marker, markersize=10, label=name)
    ax.set_xlabel(f"expected {result.cost_unit} per sample")
    ax.set_ylabel("coverage")
    ax.set_title(f"selective {result.target} {result.target_value:g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def selective_section(bundle: Any, cascade: Any, decided: Any, x: np.ndarray, y: np.ndarray,
                      risk: float, plot_path: Path | None, quiet: bool) -> dict[str, Any]:
    from eedge.policies.selective import plot_risk_coverage, selective_report

    with progress("risk–coverage of every exit", quiet=quiet) as shown:
        report = selective_report(bundle, cascade, decided, y, x, risk, tick=shown.tick)
    if plot_path is not None:
        plot_risk_coverage(report, plot_path)
    return report


def show_selective(report: dict[str, Any], plot_path: Path | None) -> None:
    table = Table(title=f"selective classification ({report['criterion']})")
    for name in ("", "accuracy", "AURC", f"coverage @ {report['target_risk']:.1%} risk",
                 "MACs", "accepted, risk"):
        table.add_column(name, justify="right")
    for row in report["rows"]:
        point = row.get("operating_point")
        table.add_row(row["name"], f"{row['accuracy']:.2%}", f"{row['aurc']:.4f}",
                      f"{row['coverage_at_risk']:.2%}", human_count(row["expected_macs"]),
                      "-" if not point else f"{point['coverage']:.2%}, {point['risk']:.2%}")
    out_console.print(table)
    final, cascade = report["rows"][0], report["rows"][-1]
    point = cascade["operating_point"]
    ratio = cascade["expected_macs"] / final["expected_macs"] if final["expected_macs"] else 0
    out_console.print(f"cascade accepts {point['coverage']:.2%} at risk {point['risk']:.2%} for "
                      f"{ratio:.2f}x the final exit's MACs (the final exit alone covers "
                      f"{final['coverage_at_risk']:.2%} at risk {report['target_risk']:.2%})")
    if plot_path is not None:
        out_console.print(f"risk–coverage plot written to {escape(str(plot_path))}")
