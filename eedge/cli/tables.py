"""Rich tables for bundles: one place, so export and inspect look the same."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table


def human_count(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits, never in exponent notation."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def human_ms(value: float) -> str:
    """A duration given in ms, in the unit that shows it (0.0379 ms is "37.9 µs", not "0")."""
    for unit, size in (("s", 1e3), ("ms", 1.0), ("µs", 1e-3)):
        if abs(value) >= size:
            return f"{significant(value / size)} {unit}"
    return f"{significant(value * 1e6)} ns" if value else "0 ms"


def human_cost(value: float, unit: str) -> str:
    """A per-sample cost with its unit: durations by magnitude, counts with k/M/G."""
    if unit == "ms":
        return human_ms(value)
    return f"{human_count(value)} {unit}"


def human_bytes(value: float) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{int(value)} B"


def stage_table(manifest: dict[str, Any]) -> Table:
    split = manifest.get("split")
    table = Table(title=f"{manifest['model']['name']}: {len(manifest['stages'])} stages, "
                        f"{len(manifest['exits'])} exits")
    table.add_column("stage")
    if split:
        table.add_column("side")
    for name in ("nodes", "MACs", "params", "hand-off / sample", "exit", "threshold"):
        table.add_column(name, justify="right")
    for stage in manifest["stages"]:
        exit_index = stage["exit"]
        threshold = "-"
        if exit_index is not None:
            value = manifest["exits"][exit_index]["policy"]["threshold"]
            threshold = "final" if exit_index == len(manifest["exits"]) - 1 else (
                "never" if value is None else f"{value:.4f}")
        row = [stage["name"]] + ([stage.get("side") or "-"] if split else []) + [
            str(stage.get("nodes", "")), human_count(stage["macs"]),
            human_bytes(stage["param_bytes"]), human_bytes(stage["handoff_bytes_per_sample"]),
            "-" if exit_index is None else f"exit{exit_index}", threshold]
        table.add_row(*row)
    return table


def summary_lines(manifest: dict[str, Any]) -> list[str]:
    lines = [f"model MACs/sample: {human_count(manifest['model']['macs'])}; inputs: " + ", ".join(
        f"{i['name']} {i['shape']} {i['dtype']}" for i in manifest["inputs"])]
    formats = sorted(set.intersection(*(set(s["files"]) for s in manifest["stages"])))
    lines.append(f"stage formats: {', '.join(formats)}")
    checks = manifest.get("verification", {})
    for fmt in ("onnx", "tflite"):
        v = checks.get(fmt)
        if v:
            lines.append(f"{fmt} stages == whole model on {v['samples']} inputs: max |diff| "
                         f"{v['max_abs_diff']:.2e} (tolerance {v['tolerance']:g})")
    int8 = checks.get("tflite_int8")
    if int8:
        a, b = int8["staged_vs_monolithic"], int8["reference_vs_tflm"]
        lines.append(f"int8 stages == monolithic int8 model, byte for byte, on {a['samples']} "
                     f"inputs; eedge reference == TFLite Micro on {b['tensors_compared']} "
                     "stage outputs")
        for stage in b.get("stages", []):
            if stage.get("why"):  # TFLite Micro is known wrong there
                lines.append(f"{stage['name']}: reference {stage['reference']} for "
                             f"{', '.join(stage['nodes'])} ({stage['why']})")
    memory = manifest.get("memory")
    if memory:
        lines.append(f"C runtime arena: {memory['arena_bytes']} bytes for all stages "
                     "(static, planned at export)")
    quant = manifest.get("quantization")
    if quant:
        lines.append(f"int8: {quant['scheme']}; {quant['observer']} observer on "
                     f"{quant['calibration_samples']} calibration samples")
    lines += decision_lines(manifest)
    gated = [f"exit{e['index']}" for e in manifest["exits"] if e.get("gate")]
    if gated:  # eedge.train.gates: the exit tensor's last column is a gate logit
        lines.append(f"learned gates on {', '.join(gated)} (each exit's last logit; "
                     "criterion gate)")
    cascade = manifest.get("cascade")
    if cascade:  # a cascade of independent models (eedge cascade build)
        lines.append("cascade of independent models, each reading the input: " + ", ".join(
            f"{m['name']} ({m['format']}, {human_count(m['macs'])} MACs)"
            for m in cascade["members"]))
    split = manifest.get("split")
    if split:
        cut = ", ".join(t["name"] for t in split["cut_tensors"])
        lines.append(f"split after {split['requested']}: head stages {split['head_stages']}, "
                     f"tail stages {split['tail_stages']}; cut tensors {cut} "
                     f"({human_bytes(split['cut_bytes_per_sample'])}/sample)")
    return lines


def decision_lines(manifest: dict[str, Any]) -> list[str]:
    """How exits decide beyond their thresholds: an ensemble, and reject windows."""
    lines = []
    ensemble = manifest.get("ensemble")
    if ensemble:
        members = ", ".join(f"exit{k}" for k in ensemble["members"])
        lines.append(f"running-mean ensemble: {members} each decide on the mean of the members "
                     "so far" if ensemble.get("mode") == "running_mean" else
                     f"ensemble (QUTE): the mean of {members} decides at the last member")
    head = (manifest.get("split") or {}).get("role") == "head"  # no final exit there
    last = -1 if head else len(manifest["exits"]) - 1
    windows = [(k, e["policy"]["window_low"]) for k, e in enumerate(manifest["exits"])
               if e["policy"].get("window_low") is not None]
    if windows:
        lines.append("rejects below: " + ", ".join(
            f"exit{k} {low:.4f}" + (" (selective threshold)" if k == last else "")
            for k, low in windows))
    return lines
