"""``eedge monitor``: calibrate an exit ensemble's accuracy-drop monitor, and check it."""

from __future__ import annotations

from pathlib import Path

import click

from eedge.cli.console import debug_option, json_option, out_console, print_json, progress_status
from eedge.cli.options import FiniteFloat
from eedge.errors import InputDataError
from eedge.io.arrays import load_array
from eedge.runtime.stage_runners import RUNTIMES


@click.command("monitor")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="Clean, in-distribution inputs (.npy or .npz with x), in stream order.")
@click.option("--window", type=click.IntRange(1, 1_000_000), default=32, show_default=True,
              help="Inferences whose mean ensemble confidence the monitor watches.")
@click.option("--false-alarm", type=FiniteFloat(0, 1), default=0.01, show_default=True,
              help="Share of clean windows allowed to raise the flag.")
@click.option("--check", "checks", multiple=True, type=click.Path(path_type=Path),
              help="Also report the share of windows flagged on these inputs (e.g. shifted "
                   "data); repeatable.")
@click.option("--runtime", type=click.Choice(list(RUNTIMES)),
              help="Whose confidences set rho (default: int8-reference when the bundle has "
                   "int8 stages, i.e. the firmware's integer sums).")
@click.option("--dry-run", is_flag=True, help="Report without writing the monitor.")
@json_option
@debug_option
def monitor(bundle: Path, data: Path, window: int, false_alarm: float, checks: tuple[Path, ...],
            runtime: str | None, dry_run: bool, as_json: bool) -> None:
    """Choose the monitor threshold rho for BUNDLE's ensemble on clean data.

    The monitor flags when the mean ensemble confidence over the last WINDOW
    inferences falls below rho, a sign that accuracy has dropped (QUTE). rho is
    the FALSE_ALARM quantile of clean windows. It goes into the manifest, from
    where the Python runtimes and the generated C runtime read it.

    \b
    Examples:
      eedge monitor qute-bundle --data val.npz --window 32 --false-alarm 0.01
      eedge monitor qute-bundle --data val.npz --check noisy.npz --dry-run
    """
    from eedge.ir.bundle import load_bundle
    from eedge.runtime.cascade import available_runtimes
    from eedge.policies.monitor import EnsembleStream, store_monitor

    loaded = load_bundle(bundle)
    if runtime is None and "int8-reference" in available_runtimes(loaded.manifest):
        runtime = "int8-reference"
    x = load_array(data)
    if len(x) < window:
        raise InputDataError(f"{data} holds {len(x)} inputs; the monitor needs at least "
                             f"--window {window} to calibrate")
    with progress_status("calibrating the monitor", quiet=as_json):
        stream = EnsembleStream(loaded, runtime)
        clean = stream.infer(x)
        rho = stream.choose_rho(clean, window, false_alarm)
        chosen = {"window": window, "rho": rho}
        report = {"window": window, "rho": rho, "false_alarm_target": false_alarm,
                  "runtime": runtime, "written": not dry_run,
                  "flagged": {str(data): stream.flagged_share(clean, chosen)}}
        for path in checks:
            report["flagged"][str(path)] = stream.flagged_share(
                stream.infer(load_array(path)), chosen)
    if not dry_run:
        store_monitor(loaded, window, rho, false_alarm)
    if as_json:
        print_json(report)
        return
    out_console.print(f"monitor: window {window}, rho {rho:.4f} (mean ensemble confidence), "
                      f"target false alarm {false_alarm:.1%}, runtime {runtime or 'default'}")
    for path, share in report["flagged"].items():
        out_console.print(f"  windows flagged on {path}: {share:.1%}")
    out_console.print("monitor not written (--dry-run)" if dry_run else
                      f"monitor written to {bundle}/manifest.json")
