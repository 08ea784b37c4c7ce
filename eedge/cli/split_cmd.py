"""``eedge split plan | export | serve``: split computing between a device and a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.table import Table

from eedge.cli.console import debug_option, json_option, out_console, print_json, progress_status
from eedge.errors import InputDataError


@click.group("split")
def split() -> None:
    """Split computing: plan the cut, export head and tail, serve the tail."""


def _load_report(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputDataError(f"cannot read profile report {path}: {exc}") from exc


def _exit_rates(bundle: Any, data: Path | None, rates: str | None) -> list[float]:
    from eedge.profiling.report import exit_statistics, parse_rates

    if (data is None) == (rates is None):
        raise InputDataError("give --data (exit rates under the bundle's thresholds) or "
                             "--exit-rates")
    if rates is not None:
        return parse_rates(rates, len(bundle.exits))["exit_rates"]
    from eedge.io.arrays import load_array

    return exit_statistics(bundle, "onnx" if all("onnx" in s["files"] for s in bundle.stages)
                           else "int8-reference", load_array(data, "x"), None)["exit_rates"]


@split.command("plan")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--device-profile", type=click.Path(path_type=Path), required=True,
              help="`eedge profile --report` file measured on the device.")
@click.option("--server-profile", type=click.Path(path_type=Path), required=True,
              help="`eedge profile --report` file measured on the server.")
@click.option("--bandwidth", default="2Mbit/s", show_default=True, help="Uplink bandwidth.")
@click.option("--rtt", default="20ms", show_default=True, help="Round-trip time.")
@click.option("--data", type=click.Path(path_type=Path), help="Inputs for exit rates (.npz x).")
@click.option("--exit-rates", "rates", help="Exit rates instead of --data, e.g. 0.6,0.3,0.1.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="PNG of expected latency per cut across a bandwidth sweep.")
@json_option
@debug_option
def plan_cmd(bundle: Path, device_profile: Path, server_profile: Path, bandwidth: str,
             rtt: str, data: Path | None, rates: str | None, plot_path: Path | None,
             as_json: bool) -> None:
    """Expected end-to-end latency of every head/tail cut of BUNDLE; picks the best.

    \b
    Example:
      eedge profile b --target my-pi.yaml --report pi.json
      eedge profile b --target host --report server.json
      eedge split plan b --device-profile pi.json --server-profile server.json \\
          --bandwidth 2Mbit/s --rtt 20ms --data val.npz --plot sweep.png
    """
    from eedge.ir.bundle import load_bundle
    from eedge.split.planner import (best, parse_bandwidth, parse_duration_ms, plan,
                                     stage_latencies_ms)

    loaded = load_bundle(bundle)
    device = stage_latencies_ms(_load_report(device_profile))
    server = stage_latencies_ms(_load_report(server_profile))
    bps, rtt_ms = parse_bandwidth(bandwidth), parse_duration_ms(rtt)
    with progress_status("planning", quiet=as_json):
        exit_rates = _exit_rates(loaded, data, rates)
    options = plan(loaded, device, server, bps, rtt_ms, exit_rates)
    chosen = best(options)
    if plot_path is not None:
        plot_sweep(loaded, device, server, rtt_ms, exit_rates, bps, plot_path)
    if as_json:
        print_json({"bandwidth_bps": bps, "rtt_ms": rtt_ms, "exit_rates": exit_rates,
                    "options": [o.to_json() for o in options], "best": chosen.to_json()})
        return
    table = Table(title=f"cuts at {bandwidth}, RTT {rtt} (expected ms per sample)")
    for name in ("cut", "device", "link", "server", "total", "bytes sent", "avg bytes"):
        table.add_column(name, justify="right")
    last = len(loaded.stages) - 1
    for o in options:
        label = ("all on server" if o.after_stage < 0 else "all on device"
                 if o.after_stage == last else f"after stage{o.after_stage}")
        style = "bold green" if o is chosen else None
        table.add_row(label, f"{o.device:.3f}", f"{o.transfer:.3f}", f"{o.server:.3f}",
                      f"{o.total:.3f}", str(o.payload_bytes), f"{o.expected_bytes:.0f}",
                      style=style)
    out_console.print(table)
    out_console.print(f"best: cut after stage {chosen.after_stage} "
                      f"({chosen.total:.3f} ms expected)")


def plot_sweep(bundle: Any, device: list[float], server: list[float], rtt_ms: float,
               exit_rates: list[float], chosen_bps: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eedge.split.planner import plan

    sweep = np.logspace(4, 9, 60)
    totals = np.array([[o.total for o in plan(bundle, device, server, b, rtt_ms, exit_rates)]
                       for b in sweep])
    fig, ax = plt.subplots(figsize=(7, 4))
    last = len(bundle.stages) - 1
    for j in range(totals.shape[1]):
        c = j - 1
        label = "all on server" if c < 0 else ("all on device" if c == last else
                                               f"cut after stage{c}")
        ax.plot(sweep, totals[:, j], label=label)
    ax.plot(sweep, totals.min(axis=1), "k:", linewidth=2, label="best cut")
    ax.axvline(chosen_bps, color="grey", linestyle="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("uplink bandwidth (bit/s)")
    ax.set_ylabel("expected latency per sample (ms)")
    ax.set_title(f"head/tail cut vs bandwidth (RTT {rtt_ms:g} ms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
