"""MLPerf Tiny on QEMU: eedge's generated C next to TFLite Micro's recorded figures.

    .venv/bin/python bench/mlperf_bench.py [--models kws,vww] [--no-per-op] [--no-portable]
                                           [--target qemu-cortex-m4] [--versus TARGET]

Part of `make bench` (results under "mlperf"). For each of the four MLPerf Tiny reference
models in ../shared/models/mlperf_tiny it builds the generated C project, runs the
baseline's three xorshift inputs in QEMU (-icount shift=0, so counts are exact) and
reports instructions per inference (seed 0, as the baseline), RAM (arena + kernel scratch +
painted stack), runtime code (flash minus weights, quantization parameters and test inputs), and
whether the output bytes equal TFLM's on all three seeds. With per-op profiles it puts
eedge's instructions per op type next to the baseline's ``per_op_instructions`` (TFLM +
CMSIS-NN, -O2): the table that says which kernel loses and by how much.

The baseline was recorded on mps2-an386 (Cortex-M4); on other targets (M55, M33) the
ratios compare different CPUs and are printed as a reference only, and the same models
also run on ``--versus`` (default qemu-cortex-m4 there) for a table of instructions per
inference and per MAC, per model and per op type, side by side. On the M55 the counts
include Helium (MVE) vector instructions, which QEMU counts as one each: they estimate
speed, they are not cycles (a beat-wise vector instruction takes two or more cycles on
a Cortex-M55, and memory stalls are not modelled). SysTick runs at 31.25 instructions
per tick on mps3-an547, so its counts are exact to a tick.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODELS = SHARED / "models" / "mlperf_tiny"
BASELINE = SHARED / "baselines" / "tflm-cortex-m4" / "results.json"
FILES = {"kws": "kws_ref_model.tflite", "resnet": "pretrainedResnet_quant.tflite",
         "vww": "vww_96_int8.tflite", "ad01": "ad01_int8.tflite"}
SEEDS = (0, 1, 2)
sys.path.insert(0, str(ROOT / "tests"))
from reference.test_mlperf_tiny import xorshift_bytes  # noqa: E402  (the baseline's generator)
# issue 19's bar, per model and as the geometric mean
BAR = {"instructions_each": 0.90, "instructions_geomean": 0.80, "ram_each": 0.75,
       "code_vs_tflm_ref": 0.30}


def baseline_inputs(shape: list[int]) -> np.ndarray:
    """The three seeds' inputs stacked on the batch axis (each of ``shape``, batch 1)."""
    count = int(np.prod(shape))
    return np.concatenate([xorshift_bytes(s, count).view(np.int8).reshape(shape)
                           for s in SEEDS])


def measure_model(name: str, target_name: str, portable: bool, per_op: bool,
                  baseline: dict[str, Any]) -> dict[str, Any]:
    from eedge.codegen.device_run import run_on_target
    from eedge.codegen.model_source import load_codegen_model
    from eedge.passes.cost import total_macs
    from eedge.profiling.per_op import build_op_report, profile_ops
    from eedge.targets import load_target

    target = load_target(target_name)
    model = load_codegen_model(MODELS / FILES[name])
    model.thresholds = [None] * len(model.thresholds)
    shape = [int(d) for d in model.graph.tensors[model.input].shape]
    x = baseline_inputs(shape)
    ref, cmsis = baseline[f"ref-O2/{name}"], baseline[f"cmsis_nn-O2/{name}"]
    entry: dict[str, Any] = {"macs": sum(total_macs(model.graph, s.nodes)
                                         for s in model.stages)}
    for dsp in ((False, True) if portable else (True,)):
        run = run_on_target(model, target, x, dsp=dsp)
        key = "dsp" if dsp else "portable"
        per_tick = run.instructions_per_tick or 1
        samples = run.run.samples
        entry[f"instructions_{key}"] = round(sum(samples[0].stage_ticks) * per_tick)
        entry[f"outputs_equal_tflm_{key}"] = all(
            s.stage_outputs[-1][0].tobytes().hex() == ref["outputs_hex"][str(seed)]
            for seed, s in zip(SEEDS, samples))
        summary = run.summary()
        entry.update(arena_bytes=summary["arena_bytes"], stack_bytes=summary["stack_used_bytes"],
                     scratch_bytes=summary["scratch_bytes"], weight_bytes=summary["weight_bytes"],
                     ram_bytes=summary["ram_bytes"])
        entry[f"code_bytes_{key}"] = summary["code_bytes"]
    entry.update(
        tflm_ref_instructions=ref["instructions_per_inference"],
        tflm_cmsis_instructions=cmsis["instructions_per_inference"],
        dsp_over_tflm_cmsis=entry["instructions_dsp"] / cmsis["instructions_per_inference"],
        instructions_per_mac_dsp=entry["instructions_dsp"] / max(entry["macs"], 1),
        tflm_arena_used_bytes=ref["arena_used_bytes"],
        ram_over_tflm_arena=entry["ram_bytes"] / ref["arena_used_bytes"],
        tflm_ref_code_bytes=tflm_code_bytes(ref))
    entry["code_over_tflm_ref"] = entry["code_bytes_dsp"] / entry["tflm_ref_code_bytes"]
    if per_op:
        report = build_op_report(profile_ops(model, target, x[:1], dsp=True))
        entry["per_op_type"] = compare_op_types(report, cmsis["per_op_instructions"])
    return entry


def tflm_code_bytes(run: dict[str, Any]) -> int:
    """The baseline's "code": flash minus the model array and the measuring harness."""
    flash = run["size_breakdown"]["flash"]
    return int(run["size"]["flash"] - flash["model"] - flash["harness"])


def compare_op_types(report: dict[str, Any], tflm_ops: list[list[Any]]) -> list[dict[str, Any]]:
    """eedge's instructions per op type next to TFLM + CMSIS-NN's (the baseline's per-op
    list is [index, op, instructions]); eedge's lowered graph may name ops differently
    (e.g. no RESHAPE kernel), so types present on one side only show with 0 on the other."""
    theirs: dict[str, float] = defaultdict(float)
    for _, op, value in tflm_ops:
        theirs[op] += value
    ours = {row["op"]: row for row in report["by_type"]}
    rows = []
    for op in sorted(set(theirs) | set(ours), key=lambda o: -theirs.get(o, 0.0)):
        mine = ours.get(op, {})
        value = float(mine.get("value", 0.0))
        rows.append({"op": op, "eedge": value, "tflm_cmsis": theirs.get(op, 0.0),
                     "macs": int(mine.get("macs", 0)),
                     "eedge_per_mac": mine.get("per_mac"),
                     "ratio": value / theirs[op] if theirs.get(op) else None})
    return rows


def mlperf_bench(models: list[str] | None = None, target: str = "qemu-cortex-m4",
                 portable: bool = True, per_op: bool = True,
                 say: Any = print, versus: str | None = None) -> dict[str, Any]:
    """All (or the named) models; empty when the shared models or baseline are absent."""
    if not MODELS.is_dir() or not BASELINE.is_file():
        say("../shared/models/mlperf_tiny or its baseline is absent: MLPerf Tiny skipped")
        return {}
    baseline = json.loads(BASELINE.read_text())["runs"]
    results: dict[str, Any] = {"target": target, "models": {}}
    for name in models or list(FILES):
        say(f"mlperf: {name} on {target}")
        results["models"][name] = measure_model(name, target, portable, per_op, baseline)
    ratios = [e["dsp_over_tflm_cmsis"] for e in results["models"].values()]
    if ratios:
        results["geomean_dsp_over_tflm_cmsis"] = math.exp(np.mean(np.log(ratios)))
    results["bar"] = BAR
    if versus and versus != target:   # the same models on another target, DSP build only
        results["versus"] = {"target": versus, "models": {}}
        for name in results["models"]:
            say(f"mlperf: {name} on {versus}")
            results["versus"]["models"][name] = measure_model(name, versus, False, per_op,
                                                              baseline)
    return results


def show_versus(results: dict[str, Any], console: Console) -> None:
    """Instructions per inference and per MAC on the target next to the --versus target's
    (vector instructions count one each: an estimate of speed, not cycles)."""
    other = results["versus"]
    a, b = results["target"], other["target"]
    table = Table(title=f"MLPerf Tiny: {a} vs {b} (DSP builds; instructions, not cycles)")
    for column in ("model", f"{a}", f"{b}", f"{a}/{b}", f"{a} instr/MAC",
                   f"{b} instr/MAC", "bytes == TFLM"):
        table.add_column(column, justify="right")
    for name, e in results["models"].items():
        o = other["models"][name]
        table.add_row(name, f"{e['instructions_dsp']:,}", f"{o['instructions_dsp']:,}",
                      f"{e['instructions_dsp'] / o['instructions_dsp']:.3f}",
                      f"{e['instructions_per_mac_dsp']:.3f}",
                      f"{o['instructions_per_mac_dsp']:.3f}",
                      f"{e['outputs_equal_tflm_dsp']}/{o['outputs_equal_tflm_dsp']}")
    console.print(table)
    if not all("per_op_type" in e for e in results["models"].values()):
        return
    table = Table(title=f"instructions per MAC by op type: {a} vs {b}")
    for column in ("model", "op", "MACs", f"{a}", f"{b}", f"{a} /MAC", f"{b} /MAC"):
        table.add_column(column, justify="right")
    for name, e in results["models"].items():
        theirs = {row["op"]: row for row in other["models"][name]["per_op_type"]}
        for row in e["per_op_type"]:
            o = theirs.get(row["op"], {})
            if not row["eedge"] and not o.get("eedge"):
                continue
            table.add_row(name, row["op"], f"{row['macs']:,}", f"{row['eedge']:,.0f}",
                          f"{o.get('eedge', 0.0):,.0f}",
                          f"{row['eedge_per_mac']:.3f}" if row["eedge_per_mac"] else "",
                          f"{o['eedge_per_mac']:.3f}" if o.get("eedge_per_mac") else "")
    console.print(table)


def show_mlperf(results: dict[str, Any], console: Console) -> None:
    if not results:
        return
    target = results["target"]
    table = Table(title=f"MLPerf Tiny: eedge (DSP, -O2) on {target} vs TFLite Micro on "
                        f"qemu-cortex-m4 (seed 0; bytes checked on seeds 0-2)")
    for column in ("model", "eedge", "TFLM ref", "TFLM+CMSIS-NN", "eedge/CMSIS",
                   "instr/MAC", "portable", "RAM", "TFLM arena", "RAM ratio", "code bytes",
                   "code/TFLM ref", "bytes == TFLM"):
        table.add_column(column, justify="right")
    for name, e in results["models"].items():
        equal = [str(e[k]) for k in ("outputs_equal_tflm_dsp", "outputs_equal_tflm_portable")
                 if k in e]
        table.add_row(name, f"{e['instructions_dsp']:,}", f"{e['tflm_ref_instructions']:,}",
                      f"{e['tflm_cmsis_instructions']:,}", f"{e['dsp_over_tflm_cmsis']:.3f}",
                      f"{e['instructions_per_mac_dsp']:.2f}",
                      f"{e['instructions_portable']:,}" if "instructions_portable" in e else "",
                      f"{e['ram_bytes']:,}", f"{e['tflm_arena_used_bytes']:,}",
                      f"{e['ram_over_tflm_arena']:.3f}", f"{e['code_bytes_dsp']:,}",
                      f"{e.get('code_over_tflm_ref', float('nan')):.3f}", "/".join(equal))
    console.print(table)
    if "geomean_dsp_over_tflm_cmsis" in results:
        console.print(f"geometric mean eedge/CMSIS-NN: {results['geomean_dsp_over_tflm_cmsis']:.3f}"
                      f" (bar: {BAR['instructions_geomean']}, each <= {BAR['instructions_each']};"
                      f" RAM each <= {BAR['ram_each']})")
    for name, e in results["models"].items():
        if "per_op_type" not in e:
            continue
        table = Table(title=f"{name}: instructions per op type, eedge vs TFLM+CMSIS-NN")
        for column in ("op", "eedge", "TFLM+CMSIS-NN", "ratio", "MACs", "eedge instr/MAC"):
            table.add_column(column, justify="right")
        for row in e["per_op_type"]:
            table.add_row(row["op"], f"{row['eedge']:,.0f}", f"{row['tflm_cmsis']:,.0f}",
                          f"{row['ratio']:.2f}" if row["ratio"] is not None else "",
                          f"{row['macs']:,}",
                          f"{row['eedge_per_mac']:.2f}" if row["eedge_per_mac"] else "")
        console.print(table)
    if "versus" in results:
        show_versus(results, console)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(FILES))
    parser.add_argument("--target", default="qemu-cortex-m4")
    parser.add_argument("--versus", help="also run the models on this target and compare "
                        "(default: qemu-cortex-m4 when --target is another target)")
    parser.add_argument("--no-per-op", action="store_true")
    parser.add_argument("--no-portable", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    console = Console(width=170)
    versus = args.versus or ("qemu-cortex-m4" if args.target != "qemu-cortex-m4" else None)
    results = mlperf_bench(args.models.split(","), args.target, not args.no_portable,
                           not args.no_per_op, say=console.print, versus=versus)
    show_mlperf(results, console)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
