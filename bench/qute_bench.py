"""QUTE vs BASE vs early-exit ensemble over several seeds, for `make bench`.

Uncertainty metrics move by a few thousandths between seeds on a test set of
~360 digits, so one seed proves nothing; this averages seeds and reports the
spread. Every seed trains both models from scratch (same data split, same
epochs), measures clean and corrupted (severities 1, 3, 5) metrics, and the int8
bundle's monitor rates. Firmware overhead is measured once (seed 0) because
instruction counts under QEMU -icount are exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from eedge.examples.corruptions import KINDS
from eedge.examples.qute_demo import (compare, export_qute, firmware_overhead,
                                      member_diagnostics, monitor_rates, train_models)

SEEDS = (0, 1, 2)
SEVERITIES = (1, 3, 5)
EV_EXITS = (2, 1)   # the demo's K first; K=1 as the smaller alternative
METRICS = ("accuracy", "macro_f1", "nll", "ece", "brier", "failure_auroc")
MODELS = ("BASE", "EE", "QUTE")


def qute_checks(workdir: Path, seeds: tuple[int, ...] = SEEDS) -> dict[str, Any]:
    """Per-seed tables, their mean and std, monitor rates and firmware overhead, per K."""
    results: dict[str, Any] = {"seeds": list(seeds), "severities": list(SEVERITIES), "by_k": {}}
    for k in EV_EXITS:
        per_seed: list[dict[str, Any]] = []
        for seed in seeds:
            models = train_models(seed=seed, k=k)
            tables = {severity: compare(models, severity=severity) for severity in SEVERITIES}
            bundle = export_qute(models, workdir / f"qute-k{k}-{seed}")
            rates = monitor_rates(bundle, models.data, severity=3)
            entry = {"seed": seed, "extra_parameters": models.extra_parameters,
                     "tables": tables, "members": member_diagnostics(models, severity=3),
                     "monitor": {"false_alarm": rates.false_alarm, "detection": rates.detection}}
            if seed == seeds[0]:
                entry["firmware"] = firmware_overhead(models, bundle, workdir / f"fw-k{k}")
            per_seed.append(entry)
        results["by_k"][str(k)] = {"per_seed": per_seed, "summary": summarise(per_seed),
                                   "firmware": per_seed[0]["firmware"],
                                   "extra_parameters": per_seed[0]["extra_parameters"]}
    return results


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of each metric, clean and averaged over corruptions."""
    conditions = {"clean": (SEVERITIES[0], ["clean"])}
    for severity in SEVERITIES:
        conditions[f"corrupted-{severity}"] = (severity, [f"{kind}-{severity}" for kind in KINDS])
    summary: dict[str, Any] = {}
    for condition, (severity, names) in conditions.items():
        summary[condition] = {}
        for model in MODELS:
            summary[condition][model] = {}
            for metric in METRICS:
                values = [_mean_defined([s["tables"][severity][name][model][metric]
                                         for name in names]) for s in per_seed]
                defined = [v for v in values if not np.isnan(v)]
                summary[condition][model][metric] = {
                    "mean": float(np.mean(defined)) if defined else None,
                    "std": float(np.std(defined)) if defined else None,
                    "seeds_defined": len(defined)}
    summary["members"] = {
        name: {key: float(np.mean([s["members"][name][key] for s in per_seed]))
               for key in per_seed[0]["members"][name]}
        for name in per_seed[0]["members"]}
    summary["monitor"] = {
        "false_alarm": float(np.mean([s["monitor"]["false_alarm"] for s in per_seed])),
        "detection": {kind: float(np.mean([s["monitor"]["detection"][kind] for s in per_seed]))
                      for kind in KINDS}}
    return summary


def _mean_defined(values: list[float | None]) -> float:
    """Metrics undefined on a set (AUROC with no failures) count as missing, not zero."""
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else float("nan")


def _cell(stat: dict[str, Any], seeds: int) -> str:
    if stat["mean"] is None:
        return "undefined"
    note = "" if stat["seeds_defined"] == seeds else f" ({stat['seeds_defined']}/{seeds} seeds)"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}{note}"


def show_qute(q: dict[str, Any], console: Console) -> None:
    for k, result in q["by_k"].items():
        table = Table(title=f"QUTE (K={k}) vs BASE vs EE on digits, mean ± std over seeds "
                            f"{q['seeds']} (corrupted-s = mean of {len(KINDS)} corruptions "
                            f"at severity s)")
        table.add_column("condition")
        table.add_column("model")
        for metric in METRICS:
            table.add_column(metric, justify="right")
        for condition, models in result["summary"].items():
            if condition in ("monitor", "members"):
                continue
            for model, metrics in models.items():
                table.add_row(condition, model,
                              *(_cell(metrics[m], len(q["seeds"])) for m in METRICS))
        console.print(table)
        members = "\n  ".join(
            f"{name}: disagree EE {m['EE_disagreement']:.0%} QUTE {m['QUTE_disagreement']:.0%}, "
            f"final conf BASE {m['BASE_confidence']:.2f} QUTE {m['QUTE_final_confidence']:.2f}"
            for name, m in result["summary"]["members"].items())
        console.print(f"K={k} members (severity 3):\n  {members}")
        monitor = result["summary"]["monitor"]
        detection = ", ".join(f"{name} {v:.0%}" for name, v in monitor["detection"].items())
        console.print(f"K={k} monitor: false alarm on clean {monitor['false_alarm']:.1%}; "
                      f"detection at severity 3: {detection}")
        fw = result["firmware"]
        console.print(
            f"K={k} on qemu-cortex-m4: {fw['QUTE']['instructions']:,} vs BASE "
            f"{fw['BASE']['instructions']:,} instructions "
            f"({fw['QUTE']['instructions'] / fw['BASE']['instructions'] - 1:+.1%}), flash "
            f"{fw['QUTE']['flash_bytes']:,} vs {fw['BASE']['flash_bytes']:,} B, RAM "
            f"{fw['QUTE']['ram_bytes']:,} vs {fw['BASE']['ram_bytes']:,} B; "
            f"extra trained parameters {result['extra_parameters']:.1%}")
