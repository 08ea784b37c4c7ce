"""Turn stage measurements and exit statistics into a report: JSON, table data, PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import InputDataError
from eedge.ir.bundle import Bundle
from eedge.profiling.drivers import StageProfiles
from eedge.profiling.stats import expected_latency
from eedge.progress import Say, Tick, quiet_say
from eedge.runtime import batched
from eedge.runtime.cascade import Cascade


def exit_statistics(bundle: Bundle, runtime: str, x: np.ndarray, y: np.ndarray | None,
                    say: Say | None = None, tick: Tick | None = None) -> dict[str, Any]:
    """Exit rates under the bundle's thresholds, and accuracies if labels are given.

    The data runs in slices so ``tick`` can report samples done (int8-reference
    on a large model takes seconds per slice).
    """
    say = say or quiet_say
    cascade = Cascade(bundle, runtime=runtime)
    say(f"deciding exits on {len(x)} samples ({runtime})")
    decided = batched.infer(cascade, x, tick=tick)
    n = len(decided.exit_index)
    k = len(cascade.exits)
    stats: dict[str, Any] = {
        "source": f"{n} samples, {runtime} runtime, the bundle's thresholds",
        "exit_rates": [float(np.mean(decided.exit_index == e)) for e in range(k)]}
    if y is not None:
        if len(y) != n:
            raise InputDataError(f"{len(y)} labels for {n} samples")
        say(f"every exit's accuracy on {len(x)} samples ({runtime})")
        logits = [cascade.class_logits(k, lg)  # without a learned gate's column
                  for k, lg in enumerate(batched.run_all_exits(cascade, x, tick=tick))]
        stats["exit_accuracy"] = [float(np.mean(np.argmax(lg, axis=-1) == y)) for lg in logits]
        stats["cascade_accuracy"] = float(np.mean(decided.predictions == y))
    return stats


def build_report(profiles: StageProfiles, bundle: Bundle,
                 exits: dict[str, Any] | None) -> dict[str, Any]:
    exit_stages = [e["stage"] for e in bundle.exits]
    values = [s.value for s in profiles.stages]
    cumulative = np.cumsum(values).tolist()
    report: dict[str, Any] = {
        "target": profiles.target, "kind": profiles.kind, "runtime": profiles.runtime,
        "unit": profiles.unit, "environment": profiles.environment,
        "stages": [{"index": s.index, "name": s.name, "macs": s.macs, "value": s.value,
                    "stats": s.stats, "estimates": s.estimates} for s in profiles.stages],
        "exits": [{"index": e["index"], "stage": e["stage"],
                   "cumulative": cumulative[e["stage"]]} for e in bundle.exits],
        "no_exit": float(sum(values))}
    if exits is not None:
        report["exit_statistics"] = exits
        report["expected"] = expected_latency(values, exits["exit_rates"], exit_stages)
        if profiles.stages and profiles.stages[0].estimates:
            ms = [s.estimates["ms"] for s in profiles.stages]
            report["expected_ms_estimate"] = expected_latency(ms, exits["exit_rates"],
                                                              exit_stages)["expected"]
    if profiles.cascade is not None:
        from eedge.profiling.prediction import end_to_end

        report["end_to_end"] = end_to_end(profiles.cascade, exit_stages)
    split = bundle.manifest.get("split")
    if split:
        report["split"] = {"head_stages": split["head_stages"],
                           "tail_stages": split["tail_stages"],
                           "cut_bytes_per_sample": split["cut_bytes_per_sample"],
                           "head": float(sum(values[i] for i in split["head_stages"]))}
    return report


def parse_rates(text: str, exits: int) -> dict[str, Any]:
    from eedge.numbers import parse_floats

    try:
        rates = parse_floats(text, "--exit-rates", 0.0, 1.0, count=exits)
    except InputDataError as exc:
        raise InputDataError(f"{exc}; write {exits} fractions summing to 1, like "
                             "0.5,0.3,0.2") from None
    if abs(sum(rates) - 1) > 1e-6:
        raise InputDataError(f"--exit-rates needs {exits} non-negative fractions summing to 1")
    return {"source": "given", "exit_rates": rates}


def plot(report: dict[str, Any], path: Path) -> None:
    """Per-stage latency bars, and cumulative latency at each exit against its accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = report["unit"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    names = [s["name"] for s in report["stages"]]
    left.bar(names, [s["value"] for s in report["stages"]], color="#4477aa")
    left.set_ylabel(f"latency per stage ({unit})")
    left.set_title(f"{report['target']}: per-stage latency")
    exits = report["exits"]
    xs = [e["cumulative"] for e in exits]
    accuracy: Sequence[float] | None = (report.get("exit_statistics") or {}).get("exit_accuracy")
    if accuracy:
        right.plot(xs, accuracy, "o-", color="#228833")
        for e, x, a in zip(exits, xs, accuracy):
            right.annotate(f"exit{e['index']}", (x, a), textcoords="offset points",
                           xytext=(4, -12))
        right.set_ylabel("exit accuracy")
        if "expected" in report:
            right.axvline(report["expected"]["expected"], color="#cc6677", linestyle="--",
                          label="expected with exits")
            right.legend(loc="lower right")
    else:
        right.plot(xs, range(len(xs)), "o-")
        right.set_ylabel("exit index (no labelled data given)")
    right.set_xlabel(f"cumulative latency ({unit})")
    right.set_title("cost of reaching each exit")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
