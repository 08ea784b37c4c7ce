"""``eedge profile``: per-stage latency on a target and the cascade's expected latency."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from eedge.cli.console import debug_option, json_option, out_console, print_json
from eedge.cli.options import threads_option
from eedge.cli.progress import progress
from eedge.cli.tables import human_count
from eedge.errors import InputDataError
from eedge.strict_json import dumps
from eedge.io.arrays import load_array, load_optional
from eedge.policies.labels import check_labels
from eedge.runtime.stage_runners import RUNTIMES

if TYPE_CHECKING:
    from eedge.targets import Target

MAX_RUNS = 1_000_000  # per stage: beyond this a measurement only burns time


@click.command("profile")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--target", "-t", "target_name", default="host", show_default=True,
              help="Target name (see `eedge targets`) or a target YAML file.")
@click.option("--runtime", "runtime_text", metavar="NAME[,NAME...]",
              help=f"Host/SSH: which stage files and engine ({', '.join(RUNTIMES)}; default: "
                   "onnx, else int8). Several, comma-separated (onnx,tvm,int8), compare the "
                   "runtimes per stage and name the fastest.")
@click.option("--data", type=click.Path(path_type=Path),
              help="Inputs (.npz with x, optional y) for exit rates and accuracy; the first "
                   "sample also feeds the timed stages. Host and SSH targets also run the "
                   "cascade end to end on them and report predicted vs measured latency.")
@click.option("--batch", type=click.IntRange(1, 4096), default=1, show_default=True,
              help="With --data on host/SSH: also run the cascade in batches of this size.")
@click.option("--exit-rates", help="Exit rates instead of --data, e.g. 0.5,0.3,0.2.")
@threads_option("Threads (pinned)")
@click.option("--warmup", type=click.IntRange(0, MAX_RUNS), default=20, show_default=True,
              help="Untimed runs per stage.")
@click.option("--repeats", type=click.IntRange(1, MAX_RUNS), default=200, show_default=True,
              help="Timed runs per stage.")
@click.option("--report", "report_path", type=click.Path(path_type=Path),
              help="Also write the JSON report to this file.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="Write a PNG of per-stage and cumulative latency vs exit accuracy.")
@click.option("--per-op", "per_op", is_flag=True,
              help="Time every operator of the generated C (host build, QEMU, serial boards; "
                   "BUNDLE may be an int8 .tflite): a table per stage with MACs and cost "
                   "per MAC.")
@click.option("--dsp/--no-dsp", default=None,
              help="MCU builds: the Cortex-M SIMD kernels or the portable ones (default: "
                   "SIMD when the target has DSP).")
@json_option
@debug_option
def command(bundle: Path, target_name: str, runtime_text: str | None, data: Path | None,
            batch: int, exit_rates: str | None, threads: int, warmup: int, repeats: int,
            report_path: Path | None, plot_path: Path | None, per_op: bool,
            dsp: bool | None, as_json: bool) -> None:
    """Measure every stage of BUNDLE on a target and predict the cascade's latency.

    E[latency] = sum over stages of P(reach stage) x stage latency, with exit rates
    from --data (under the bundle's thresholds) or --exit-rates. With --data on the
    host or an SSH device, the cascade also runs end to end on the data (stream
    order, batch 1 and --batch) and the predicted latency (stage timing
    distributions, exit rates and the cascade's own overhead per exit path) is
    shown next to the measured one: mean, p50, p90, p99.

    \b
    Examples:
      eedge profile demo-out/bundle --target host --data demo-out/test.npz
      eedge profile demo-out/bundle --target qemu-cortex-m4 --data demo-out/test.npz
      eedge profile demo-out/bundle --target my-pi.yaml --plot pi.png
      eedge profile demo-out/bundle --target qemu-cortex-m4 --per-op
      eedge profile demo-out/bundle --runtime onnx,int8
    """
    from eedge.ir.bundle import load_bundle
    from eedge.profiling.drivers import profile_target, random_sample
    from eedge.profiling.report import build_report, exit_statistics, parse_rates, plot
    from eedge.runtime.cascade import default_runtime
    from eedge.targets import load_target

    if repeats < 1 or warmup < 0 or threads < 1:
        raise InputDataError("--repeats and --threads must be at least 1, --warmup at least 0")
    if data is not None and exit_rates is not None:
        raise InputDataError("give --data or --exit-rates, not both")
    from eedge.profiling.compare import parse_runtimes

    runtimes = parse_runtimes(runtime_text)
    runtime = runtimes[0] if runtimes else None
    target = load_target(target_name)
    if len(runtimes) > 1:
        if per_op or exit_rates is not None or batch > 1 or plot_path is not None:
            raise InputDataError("comparing runtimes times the stages only; leave out "
                                 "--per-op, --exit-rates, --batch and --plot")
        _compare(bundle, target, runtimes, data, threads, warmup, repeats, report_path,
                 as_json)
        return
    if per_op:
        if exit_rates is not None:
            raise InputDataError("--per-op times every stage; --exit-rates does not apply")
        _per_op(bundle, target, data, repeats, report_path, plot_path, as_json, dsp)
        return
    loaded = load_bundle(bundle)
    x = y = None
    if data is not None:
        x = load_array(data, "x")
        y = load_optional(data, "y")
        if y is not None:
            samples = len(x) if x.ndim == len(loaded.manifest["inputs"][0]["shape"]) else 1
            y = check_labels(y, [e["num_classes"] for e in loaded.exits], str(data), samples)
    exits = parse_rates(exit_rates, len(loaded.exits)) if exit_rates is not None else None
    sample = x if x is not None else random_sample(loaded)
    # TVM on a device is timed over TVM RPC, stage by stage: no cascade runs there
    stream = x is not None and (target.kind == "host" or (target.kind == "linux-ssh"
                                                          and runtime != "tvm"))
    if stream and x.ndim != len(loaded.manifest["inputs"][0]["shape"]):
        stream = False  # one sample without its batch axis: nothing to stream
    with progress(f"profiling on {target.name}", quiet=as_json) as shown:
        profiles = profile_target(loaded, target, sample, runtime, threads, warmup, repeats,
                                  shown.say, shown.tick, dsp, stream=stream, batch=batch)
        if exits is None and x is not None:
            decider = "int8-reference" if profiles.unit in ("instructions", "cycles") else (
                runtime or default_runtime(loaded.manifest))
            exits = exit_statistics(loaded, decider, x, y, shown.say, shown.tick)
    report = build_report(profiles, loaded, exits)
    _emit(report, report_path, plot_path, as_json, plot, show)


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.3f} ms"
    return f"{human_count(value)} {'instr' if unit == 'instructions' else 'cycles'}"


def show(report: dict) -> None:
    unit = report["unit"]
    table = Table(title=f"{report['target']} ({report['kind']}, {report['runtime']})")
    columns = ["stage", "MACs", {"ms": "p50", "instructions": "instructions",
                                 "cycles": "cycles (median)"}[unit]]
    if unit == "ms":
        columns += ["p90", "p99", "std"]
    elif unit == "instructions":
        columns += ["est. cycles", "est. ms"]
    else:
        columns += ["ms"]
    columns += ["cumulative"]
    for column in columns:
        table.add_column(column, justify="right")
    cumulative = 0.0
    for s in report["stages"]:
        cumulative += s["value"]
        row = [s["name"], human_count(s["macs"]), _fmt(s["value"], unit)]
        if unit == "ms":
            row += [f"{s['stats']['p90']:.3f}", f"{s['stats']['p99']:.3f}",
                    f"{s['stats']['std']:.3f}"]
        elif unit == "instructions":
            row += [human_count(s["estimates"]["cycles"]), f"{s['estimates']['ms']:.3f}"]
        else:
            row += [f"{s['estimates']['ms']:.3f}"]
        row.append(_fmt(cumulative, unit))
        table.add_row(*row)
    out_console.print(table)
    env = report["environment"]
    out_console.print(", ".join(f"{k}: {v}" for k, v in env.items()))
    out_console.print(f"every stage: {_fmt(report['no_exit'], unit)}")
    if "expected" in report:
        stats = report["exit_statistics"]
        rates = ", ".join(f"{r:.1%}" for r in stats["exit_rates"])
        line = (f"expected with exits: {_fmt(report['expected']['expected'], unit)} "
                f"(exit rates {rates}; {stats['source']})")
        if "expected_ms_estimate" in report:
            line += f" = about {report['expected_ms_estimate']:.3f} ms (estimate)"
        out_console.print(line)
        if "exit_accuracy" in stats:
            accuracy = ", ".join(f"{a:.2%}" for a in stats["exit_accuracy"])
            out_console.print(f"exit accuracy {accuracy}; cascade {stats['cascade_accuracy']:.2%}")
    if "end_to_end" in report:
        show_end_to_end(report["end_to_end"])
    if "split" in report:
        split = report["split"]
        out_console.print(f"split: head stages {split['head_stages']} take "
                          f"{_fmt(split['head'], unit)} on the device, then "
                          f"{split['cut_bytes_per_sample']} bytes go to the tail")


def show_end_to_end(e2e: dict[str, Any]) -> None:
    """Predicted vs measured latency per sample, and the cascade's own overhead line."""
    table = Table(title=f"cascade end to end, {e2e['samples']} samples in stream order "
                        f"({e2e['rounds']} rounds): predicted vs measured, ms per sample")
    for column in ("batch", "", "mean", "p50", "p90", "p99"):
        table.add_column(column, justify="right")
    for key, entry in e2e.items():
        if not key.startswith("batch"):
            continue
        for row in ("predicted", "measured", "ratio"):
            values = entry[row]
            cells = [f"{values[k]:.4f}" if k in values else "" for k in
                     ("mean", "p50", "p90", "p99")]
            table.add_row(key[5:] if row == "predicted" else "",
                          "predicted / measured" if row == "ratio" else row, *cells)
    out_console.print(table)
    o = e2e["overhead"]
    out_console.print(f"cascade overhead (beyond the stages, batch 1): "
                      f"{1e3 * o['overhead_ms']:.1f} us per sample = "
                      f"{o['overhead_per_stage_us']:.1f} us per stage run "
                      f"({o['stages_per_sample']:.2f} stages per sample); by exit path "
                      + ", ".join(f"exit{k} {1e3 * v:.1f} us"
                                  for k, v in enumerate(o["overhead_by_exit_ms"])))


def _compare(source: Path, target: "Target", runtimes: list[str], data: Path | None,
             threads: int, warmup: int, repeats: int, report_path: Path | None,
             as_json: bool) -> None:
    """``--runtime a,b,c``: every stage on every runtime, the fastest named per stage."""
    from eedge.ir.bundle import load_bundle
    from eedge.profiling.compare import compare_runtimes
    from eedge.profiling.drivers import random_sample

    loaded = load_bundle(source)
    x = load_array(data, "x") if data is not None else random_sample(loaded)
    with progress(f"comparing {', '.join(runtimes)} on {target.name}",
                  quiet=as_json) as shown:
        report = compare_runtimes(loaded, target, x, runtimes, threads, warmup, repeats,
                                  shown.say)
    _emit(report, report_path, None, as_json, lambda _r, _p: None, show_compare)


def show_compare(report: dict[str, Any]) -> None:
    runtimes = report["runtimes"]
    table = Table(title=f"{report['target']}: per-stage p50 (ms) by runtime, "
                        f"{report['environment'][runtimes[0]].get('threads', 1)} thread(s), "
                        "batch 1")
    for column in ("stage", "MACs", *runtimes, "fastest"):
        table.add_column(column, justify="right")
    for s in report["stages"]:
        table.add_row(s["name"], human_count(s["macs"]),
                      *[f"{s['p50_ms'][n]:.4f}" for n in runtimes], s["fastest"])
    table.add_row("all", "", *[f"{report['total_p50_ms'][n]:.4f}" for n in runtimes],
                  report["fastest_overall"])
    out_console.print(table)
    out_console.print(f"fastest runtime per stage, summed: "
                      f"{report['fastest_per_stage_total_p50_ms']:.4f} ms")
    for name in runtimes:
        env = report["environment"][name]
        out_console.print(f"{name}: " + ", ".join(f"{k}: {v}" for k, v in env.items()))


def _per_op(source: Path, target: "Target", data: Path | None, repeats: int,
            report_path: Path | None, plot_path: Path | None, as_json: bool,
            dsp: bool | None = None) -> None:
    """``--per-op``: build the per-op firmware, run one input, print or write the report."""
    import numpy as np

    from eedge.codegen.model_source import load_codegen_model
    from eedge.profiling.per_op import build_op_report, check_target, plot_ops, profile_ops

    check_target(target)
    model = load_codegen_model(source)
    if data is not None:
        x = load_array(data, "x")
    else:
        info = model.graph.tensors[model.input]
        shape = [1] + [int(d) for d in info.shape[1:]]
        if model.input_layout == "NCHW" and len(shape) == 4:  # user layout of the input
            shape = [shape[0], shape[3], shape[1], shape[2]]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    # QEMU counts instructions exactly: one run; the host's clock() needs many
    runs = repeats if target.kind == "host" else 1
    if target.kind == "mcu-serial":  # a few inputs, as the serial stage profiler sends
        runs = 5
    with progress(f"per-op profile on {target.name}", quiet=as_json) as shown:
        report = build_op_report(profile_ops(model, target, x, runs, dsp=dsp, say=shown.say))
    _emit(report, report_path, plot_path, as_json, plot_ops, show_ops)


def _emit(report: dict[str, Any], report_path: Path | None, plot_path: Path | None,
          as_json: bool, draw: Callable[[dict[str, Any], Path], None],
          table: Callable[[dict[str, Any]], None]) -> None:
    """Write the report file and the plot if asked, then print JSON or the tables."""
    if report_path is not None:
        report_path.write_text(dumps(report, indent=2) + "\n")
    if plot_path is not None:
        draw(report, plot_path)
    if as_json:
        print_json(report)
        return
    table(report)
    if plot_path is not None:
        out_console.print(f"wrote {plot_path}")


def show_ops(report: dict) -> None:
    """One table per stage (every op in order), then the totals by op type."""
    unit = report["unit"]
    label = {"instructions": "instr", "cycles": "cycles"}.get(unit, "ticks")

    def ratio(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}"

    for stage in report["stages"]:
        table = Table(title=f"{report['target']}: stage {stage['index']} ({unit})")
        for column in ("#", "op", "node", "MACs", label, f"{label}/MAC", "share"):
            table.add_column(column, justify="left" if column in ("op", "node") else "right")
        total = stage["ops_total"] or 1.0
        for o in stage["ops"]:
            table.add_row(str(o["index"]), o["op"], o["name"][-40:], human_count(o["macs"]),
                          human_count(o["value"]), ratio(o["per_mac"]),
                          f"{100 * o['value'] / total:.1f}%")
        table.add_row("", "all kernels", "", human_count(stage["macs"]),
                      human_count(stage["ops_total"]),
                      ratio(stage["ops_total"] / stage["macs"] if stage["macs"] else None), "")
        out_console.print(table)
        if "measured_total" in stage:
            out_console.print(f"stage {stage['index']} as timed by the firmware: "
                              f"{human_count(stage['measured_total'])} {label} (kernels plus "
                              "the exit decision and the timers)")
    table = Table(title=f"{report['target']}: by op type (all stages)")
    for column in ("op", "ops", "MACs", label, f"{label}/MAC", "share"):
        table.add_column(column, justify="left" if column == "op" else "right")
    for r in report["by_type"]:
        table.add_row(r["op"], str(r["count"]), human_count(r["macs"]), human_count(r["value"]),
                      ratio(r["per_mac"]), f"{100 * r['share']:.1f}%")
    out_console.print(table)
    out_console.print(report["note"])
