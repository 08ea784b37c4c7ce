"""QUTE vs BASE vs early-exit ensemble over several seeds, for `make bench`.

Uncertainty metrics move by a few thousandths between seeds on a test set of
~360 digits, so one seed proves nothing; this averages seeds and reports the
spread. Every seed trains both models from scratch (same data split, same
epochs), measures clean and corrupted (severity 3) metrics, and the int8
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
from eedge.examples.qute_demo import (compare, export_qute, firmware_overhead, monitor_rates,
                                      train_models)

SEEDS = (0, 1, 2)
SEVERITY = 3
METRICS = ("accuracy", "nll", "ece", "brier", "failure_auroc")
MODELS = ("BASE", "EE", "QUTE")


def qute_checks(workdir: Path, seeds: tuple[int, ...] = SEEDS) -> dict[str, Any]:
    """Per-seed tables, their mean and std, monitor rates and firmware overhead."""
    per_seed: list[dict[str, Any]] = []
    for seed in seeds:
        models = train_models(seed=seed)
        table = compare(models, severity=SEVERITY)
        bundle = export_qute(models, workdir / f"qute-{seed}")
        rates = monitor_rates(bundle, models.data, severity=SEVERITY)
        entry = {"seed": seed, "extra_parameters": models.extra_parameters, "table": table,
                 "monitor": {"false_alarm": rates.false_alarm, "detection": rates.detection}}
        if seed == seeds[0]:
            entry["firmware"] = firmware_overhead(models, bundle, workdir / f"fw-{seed}")
        per_seed.append(entry)
    return {"seeds": list(seeds), "severity": SEVERITY, "per_seed": per_seed,
            "summary": summarise(per_seed), "firmware": per_seed[0]["firmware"],
            "extra_parameters": per_seed[0]["extra_parameters"]}


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std over seeds of each metric, clean and averaged over corruptions."""
    conditions = {"clean": ["clean"],
                  f"corrupted-{SEVERITY}": [f"{kind}-{SEVERITY}" for kind in KINDS]}
    summary: dict[str, Any] = {}
    for condition, names in conditions.items():
        summary[condition] = {}
        for model in MODELS:
            summary[condition][model] = {}
            for metric in METRICS:
                values = [_mean_defined([s["table"][name][model][metric] for name in names])
                          for s in per_seed]
                defined = [v for v in values if not np.isnan(v)]
                summary[condition][model][metric] = {
                    "mean": float(np.mean(defined)) if defined else None,
                    "std": float(np.std(defined)) if defined else None,
                    "seeds_defined": len(defined)}
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
    table = Table(title=f"QUTE vs BASE vs EE on digits, mean ± std over seeds {q['seeds']} "
                        f"(corrupted = mean of {len(KINDS)} corruptions at severity {q['severity']})")
    table.add_column("condition")
    table.add_column("model")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    for condition, models in q["summary"].items():
        if condition == "monitor":
            continue
        for model, metrics in models.items():
            table.add_row(condition, model, *(_cell(metrics[m], len(q["seeds"])) for m in METRICS))
    console.print(table)
    monitor = q["summary"]["monitor"]
    detection = ", ".join(f"{k} {v:.0%}" for k, v in monitor["detection"].items())
    console.print(f"monitor: false alarm on clean {monitor['false_alarm']:.1%}; "
                  f"detection {detection}")
    fw = q["firmware"]
    console.print(
        f"QUTE on qemu-cortex-m4: {fw['QUTE']['instructions']:,} vs BASE "
        f"{fw['BASE']['instructions']:,} instructions "
        f"({fw['QUTE']['instructions'] / fw['BASE']['instructions'] - 1:+.1%}), flash "
        f"{fw['QUTE']['flash_bytes']:,} vs {fw['BASE']['flash_bytes']:,} B, RAM "
        f"{fw['QUTE']['ram_bytes']:,} vs {fw['BASE']['ram_bytes']:,} B; "
        f"extra parameters {q['extra_parameters']:.1%}")
