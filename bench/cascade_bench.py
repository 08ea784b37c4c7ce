"""Cascade of independent models (issue 21) over several seeds, for `make bench`.

Every seed trains the three members from scratch and runs `eedge demo --cascade`'s
whole path (run_cascade_demo): coverage at 2 % risk and expected MACs of the cascade
(window deferral on the running mean) against the largest member alone, on clean +
corrupted digits. On a test set of 720 images a coverage differs by a point between
seeds, so one seed proves nothing; the table shows every seed and the mean.

Seed 0's bundle also runs as int8 C on qemu-cortex-m4: decisions (exit, class,
rejection) against the Python int8 runtime, and exact instructions per inference
with the policy against the largest member alone and against every member.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from eedge.examples.cascade_demo import run_cascade_demo

SEEDS = (0, 1, 2)
TARGET = "qemu-cortex-m4"


def cascade_bench(workdir: Path, seeds: tuple[int, ...] = SEEDS) -> dict[str, Any]:
    per_seed = []
    for seed in seeds:
        report = run_cascade_demo(workdir / f"seed{seed}", seed=seed)
        per_seed.append(report.to_json())
    return {"seeds": list(seeds), "per_seed": per_seed,
            "device": device_check(workdir / f"seed{seeds[0]}")}


def device_check(demo_dir: Path) -> dict[str, Any]:
    """The kept seed's bundle as int8 C in QEMU on its test images."""
    from eedge.codegen.device_run import run_on_target
    from eedge.ir.bundle import load_bundle
    from eedge.runtime.cascade import Cascade
    from eedge.targets import load_target

    bundle = load_bundle(demo_dir / "bundle")
    test = np.load(demo_dir / "test.npz")
    x, y = test["x"], test["y"]
    run = run_on_target(bundle.path, load_target(TARGET), x)
    python = Cascade(bundle, runtime="int8-reference").infer(x)
    rejected = np.array([s.rejected for s in run.run.samples])
    per_tick = run.instructions_per_tick or 0
    stage = run.mean_stage_ticks()
    per_inference = [sum(s.stage_ticks) * per_tick for s in run.run.samples]
    accepted = ~rejected
    return {
        "target": TARGET, "samples": int(len(x)),
        "same_decisions_as_python": bool(
            np.array_equal(run.exit_index, python.exit_index)
            and np.array_equal(run.predictions, python.predictions)
            and np.array_equal(rejected, python.rejected)),
        "coverage": float(np.mean(accepted)),
        "risk": float(np.mean(run.predictions[accepted] != y[accepted])) if accepted.any()
        else 0.0,
        "stage_instructions": [t * per_tick for t in stage],
        "instructions_per_inference": float(np.mean(per_inference)),
        "exit_rates": [float(np.mean(run.exit_index == k)) for k in range(len(stage))]}


def show_cascade(c: dict[str, Any], console: Console) -> None:
    for name in c["per_seed"][0]["results"]:
        table = Table(title=f"cascade of 3 CNNs vs the large one alone, {name} digits: best "
                            "coverage at 2% risk (MACs), and at the validation-calibrated point")
        for column in ("seed", "large: cov @2%", "cascade: cov @2%", "cascade MACs / large",
                       "cascade-own: cov @2%", "its MACs / large", "calibrated cascade "
                       "cov/risk", "calibrated large cov/risk", "reached"):
            table.add_column(column, justify="right")
        for seed, report in zip(c["seeds"], c["per_seed"]):
            rows = {r["name"]: r for r in report["results"][name]}
            large, cascade, own = rows["large"], rows["cascade"], rows["cascade-own"]
            table.add_row(str(seed), f"{large['oracle_coverage']:.1%}",
                          f"{cascade['oracle_coverage']:.1%}",
                          f"{cascade['oracle_macs'] / large['oracle_macs']:.0%}",
                          f"{own['oracle_coverage']:.1%}",
                          f"{own['oracle_macs'] / large['oracle_macs']:.0%}",
                          f"{cascade['coverage']:.1%} / {cascade['risk']:.1%}",
                          f"{large['coverage']:.1%} / {large['risk']:.1%}",
                          str(report["reached"][name]))
        console.print(table)
    d = c["device"]
    stages = ", ".join(f"{v / 1e3:.0f}k" for v in d["stage_instructions"])
    console.print(
        f"seed {c['seeds'][0]} as int8 C on {d['target']} ({d['samples']} test images): "
        f"decisions identical to Python int8: {d['same_decisions_as_python']}; coverage "
        f"{d['coverage']:.1%}, risk {d['risk']:.1%}; instructions per member {stages}; "
        f"{d['instructions_per_inference'] / 1e3:.0f}k per inference with the policy vs "
        f"{d['stage_instructions'][-1] / 1e3:.0f}k for the large member alone and "
        f"{sum(d['stage_instructions']) / 1e3:.0f}k for every member")
