"""``eedge split plan | export | serve``: split computing between a device and a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.table import Table

from eedge.cli.console import debug_option, json_option, out_console, print_json
from eedge.cli.options import FiniteFloat
from eedge.cli.progress import Reporter, progress
from eedge.errors import InputDataError
from eedge.split.planner import parse_cut


@click.group("split")
def split() -> None:
    """Split computing: plan the cut, export head and tail, serve the tail."""


def _load_report(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputDataError(f"cannot read profile report {path}: {exc}") from exc


def _exit_rates(bundle: Any, data: Path | None, rates: str | None,
                shown: Reporter) -> list[float]:
    from eedge.profiling.report import exit_statistics, parse_rates

    if (data is None) == (rates is None):
        raise InputDataError("give --data (exit rates under the bundle's thresholds) or "
                             "--exit-rates")
    if rates is not None:
        return parse_rates(rates, len(bundle.exits))["exit_rates"]
    from eedge.io.arrays import load_array

    return exit_statistics(bundle, "onnx" if all("onnx" in s["files"] for s in bundle.stages)
                           else "int8-reference", load_array(data, "x"), None, shown.say,
                           shown.tick)["exit_rates"]


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
@click.option("--rows-per-request", type=click.IntRange(1, 65536), default=1, show_default=True,
              help="Hand-offs the device sends per request (1: each as it comes); more "
                   "amortize the request's header.")
@click.option("--handoff-dtype", type=click.Choice(["int8", "float32"]),
              help="Hand-off on the wire (default: int8 if the bundle has int8 stages).")
@json_option
@debug_option
def plan_cmd(bundle: Path, device_profile: Path, server_profile: Path, bandwidth: str,
             rtt: str, data: Path | None, rates: str | None, plot_path: Path | None,
             rows_per_request: int, handoff_dtype: str | None, as_json: bool) -> None:
    """Expected end-to-end latency of every head/tail cut of BUNDLE; picks the best.

    Bytes per hand-off are what `eedge.split.Client` puts on the wire (KServe v2
    binary tensors): the tensor bytes plus the request's fixed header (request
    line, HTTP headers, JSON header) divided by --rows-per-request.

    \b
    Example:
      eedge profile b --target my-pi.yaml --report pi.json
      eedge profile b --target host --report server.json
      eedge split plan b --device-profile pi.json --server-profile server.json \\
          --bandwidth 2Mbit/s --rtt 20ms --data val.npz --plot sweep.png
    """
    from eedge.ir.bundle import load_bundle
    from eedge.split.planner import (DEFAULT_HOST, best, handoff_dtype as default_dtype,
                                     parse_bandwidth, parse_duration_ms, plan,
                                     stage_latencies_ms)

    loaded = load_bundle(bundle)
    device = stage_latencies_ms(_load_report(device_profile))
    server = stage_latencies_ms(_load_report(server_profile))
    bps, rtt_ms = parse_bandwidth(bandwidth), parse_duration_ms(rtt)
    with progress("planning", quiet=as_json) as shown:
        exit_rates = _exit_rates(loaded, data, rates, shown)
    dtype = handoff_dtype or default_dtype(loaded)
    options = plan(loaded, device, server, bps, rtt_ms, exit_rates, rows_per_request, dtype)
    chosen = best(options)
    if plot_path is not None:
        plot_sweep(loaded, device, server, rtt_ms, exit_rates, bps, plot_path,
                   rows_per_request, dtype)
    wire = {"format": "KServe v2 binary tensors", "handoff_dtype": dtype,
            "rows_per_request": rows_per_request, "host": DEFAULT_HOST,
            "model_name": f"{loaded.manifest['model']['name']}_tail"}
    if as_json:
        print_json({"bandwidth_bps": bps, "rtt_ms": rtt_ms, "exit_rates": exit_rates,
                    "wire": wire, "options": [o.to_json() for o in options],
                    "best": chosen.to_json()})
        return
    table = Table(title=f"cuts at {bandwidth}, RTT {rtt} (expected ms per sample)",
                  caption="server / device: everything there; N: cut after stageN. "
                          f"Bytes: {dtype} hand-off per sample; wire = hand-off + header "
                          f"(per request, KServe v2 binary) / {rows_per_request} row(s) per "
                          "request; avg: wire x share of samples sent")
    for name in ("--after", "device", "link", "server", "total", "hand-off", "header", "wire",
                 "avg"):
        table.add_column(name, justify="right")
    for o in options:
        style = "bold green" if o is chosen else None
        table.add_row(o.after, f"{o.device:.3f}", f"{o.transfer:.3f}", f"{o.server:.3f}",
                      f"{o.total:.3f}", str(o.payload_bytes), str(o.header_bytes),
                      f"{o.wire_bytes:.0f}", f"{o.expected_bytes:.0f}", style=style)
    out_console.print(table)
    out_console.print(f"best: --after {chosen.after} ({_cut_label(chosen.after)}, "
                      f"{chosen.total:.3f} ms expected): eedge split export {bundle} "
                      f"--after {chosen.after} --out DIR", soft_wrap=True)


def _cut_label(after: str) -> str:
    from eedge.split.planner import ALL_ON_DEVICE, ALL_ON_SERVER

    return {ALL_ON_SERVER: "all on server", ALL_ON_DEVICE: "all on device"}.get(
        after, f"after stage{after}")


def plot_sweep(bundle: Any, device: list[float], server: list[float], rtt_ms: float,
               exit_rates: list[float], chosen_bps: float, path: Path,
               rows_per_request: int = 1, dtype: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eedge.split.planner import plan

    sweep = np.logspace(4, 9, 60)
    totals = np.array([[o.total for o in plan(bundle, device, server, b, rtt_ms, exit_rates,
                                              rows_per_request, dtype)] for b in sweep])
    fig, ax = plt.subplots(figsize=(7, 4))
    from eedge.split.planner import cut_name

    for j in range(totals.shape[1]):
        after = cut_name(j - 1, len(bundle.stages))
        ax.plot(sweep, totals[:, j], label=f"--after {after} ({_cut_label(after)})")
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


@split.command("export")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--after", "after", required=True, metavar="server|STAGE|device|TENSOR",
              help="Cut after this stage index or tensor, or keep everything on the "
                   "server or the device (the values `split plan` prints).")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True,
              help="Directory for head/ and tail/ bundles.")
@click.option("--triton", "triton_repo", type=click.Path(path_type=Path),
              help="Also write a Triton model repository for the tail here.")
@click.option("--name", help="Model name on the server (default: the model's name + _tail).")
@click.option("--force", is_flag=True, help="Replace existing head/tail bundles.")
@json_option
@debug_option
def export_cmd(bundle: Path, after: str, out: Path, triton_repo: Path | None, name: str | None,
               force: bool, as_json: bool) -> None:
    """Write head and tail bundles of BUNDLE cut after a stage (and a Triton repository).

    `--after server` writes only DIR/tail (the whole model; the device sends its
    input), `--after device` only DIR/head (the whole bundle; nothing to serve).

    \b
    Examples:
      eedge split export demo-out/bundle --after 0 --out split
      eedge split export demo-out/bundle --after 0 --out split --triton models/
      eedge split export demo-out/bundle --after server --out split
    """
    from eedge.ir.bundle import load_bundle

    loaded = load_bundle(bundle)
    cut = parse_cut(after, len(loaded.stages))
    if cut == len(loaded.stages) - 1:
        if triton_repo is not None:
            raise InputDataError("--after device keeps every stage on the device: there is "
                                 "no tail for --triton to serve")
        _export_all_on_device(loaded, out, force, as_json)
        return
    _export_with_tail(loaded, cut, out, triton_repo, name, force, as_json)


def _export_all_on_device(loaded: Any, out: Path, force: bool, as_json: bool) -> None:
    from eedge.split.bundles import export_whole_side

    with progress("copying the bundle as the head", quiet=as_json):
        head = export_whole_side(loaded, "device", out, force=force)
    if as_json:
        print_json({"head": str(head.path), "tail": None, "model_name": None,
                    "cut_tensors": [], "cut_bytes_per_sample_float32": 0, "triton": None})
        return
    out_console.print(f"head: {head.path} (the whole bundle, {len(head.stages)} stages, "
                      f"{len(head.exits)} exits: everything runs on the device)")
    out_console.print("tail: none (nothing is sent to a server)")


def _export_with_tail(loaded: Any, cut: int | str, out: Path, triton_repo: Path | None,
                      name: str | None, force: bool, as_json: bool) -> None:
    from eedge.ir.bundle import update_manifest
    from eedge.split.bundles import export_halves, export_triton, export_whole_side

    with progress("exporting head and tail", quiet=as_json):
        if cut == -1:
            head, tail = None, export_whole_side(loaded, "server", out, force=force)
        else:
            head, tail = export_halves(loaded, cut, out, force=force)
        model_name = name or f"{loaded.manifest['model']['name']}_tail"

        def set_name(manifest: dict[str, Any]) -> None:
            manifest["model"]["name"] = model_name

        tail = update_manifest(tail, set_name)
        triton_dir = export_triton(tail, triton_repo, model_name) if triton_repo else None
    split_info = tail.manifest["split"]
    summary = {"head": str(head.path) if head else None, "tail": str(tail.path),
               "model_name": model_name,
               "cut_tensors": [t["name"] for t in split_info["cut_tensors"]],
               "cut_bytes_per_sample_float32": split_info["cut_bytes_per_sample"],
               "triton": str(triton_dir) if triton_dir else None,
               "int8_handoff": _int8_handoff(tail)}
    if as_json:
        print_json(summary)
        return
    if head is None:
        out_console.print("head: none (the device sends its input to the server)")
    else:
        out_console.print(f"head: {head.path} ({len(head.stages)} stages, "
                          f"{len(head.exits)} exits)")
    out_console.print(f"tail: {tail.path} ({len(tail.stages)} stages, serve it with `eedge "
                      f"serve {tail.path}`; model name {model_name})")
    out_console.print(f"hand-off: {', '.join(summary['cut_tensors'])}")
    for tensor, q in (summary["int8_handoff"] or {}).items():
        out_console.print(f"int8 hand-off {tensor}: {q['bytes_per_sample']} bytes, scale "
                          f"{q['scale']:.9g}, zero point {q['zero_point']} (`eedge codegen "
                          f"{head.path if head else 'HEAD'}` builds the device's head)")
    if triton_dir:
        out_console.print(f"Triton repository: {triton_dir} (tritonserver "
                          f"--model-repository={triton_repo})")


@split.command("bridge")
@click.argument("head", type=click.Path(path_type=Path))
@click.argument("port")
@click.option("--server", "url", required=True, help="Tail server, e.g. http://127.0.0.1:8000.")
@click.option("--model", help="Model name on the server (default: the model's name + _tail).")
@click.option("--baud", type=click.IntRange(1, 10_000_000), default=115200, show_default=True)
@click.option("--timeout", "timeout_s", type=FiniteFloat(0, 3600, min_open=True), default=60.0,
              show_default=True, help="Seconds without a complete frame before giving up.")
@json_option
@debug_option
def bridge_cmd(head: Path, port: str, url: str, model: str | None, baud: int, timeout_s: float,
               as_json: bool) -> None:
    """Forward the hand-offs of a head running on a device to the tail server.

    HEAD is the head bundle the firmware was built from (`eedge codegen HEAD`);
    PORT its serial port (/dev/ttyACM0, or socket://HOST:PORT for QEMU's UART).
    The device sends a SAMPLE frame per inference and, when no head exit took
    it, the int8 hand-off (HANDOFF frames); it does not wait for the answer,
    which is paired with the sample number here. Prints one line per sample:
    where it was decided, its exit and class, bytes on the UART and to the server.

    \b
    Example:
      eedge split export b --after 0 --out split
      eedge codegen split/head --target my-board.yaml --inputs x.npz --out fw
      eedge serve split/tail --port 8000 &
      eedge flash fw --target my-board.yaml
      eedge split bridge split/head /dev/ttyACM0 --server http://127.0.0.1:8000
    """
    from eedge.profiling.serial_driver import open_serial
    from eedge.split.bridge import Bridge

    def show(s: Any) -> None:
        if not as_json:
            out_console.print(f"sample {s.index}: {s.decided_on} exit {s.exit_index} class "
                              f"{s.prediction} (UART {s.uart_bytes} B, hand-off "
                              f"{s.handoff_bytes} B, HTTP {s.http_bytes} B)")

    with Bridge(head, url, model) as bridge:
        serial_port = open_serial(port, baud)
        try:
            report = bridge.run(serial_port, timeout_s, on_sample=show)
        finally:
            serial_port.close()
    if as_json:
        print_json(report.to_json())
        return
    summary = report.summary()
    out_console.print(f"{summary['samples']} samples: {summary['decided_on_device']} decided on "
                      f"the device, {summary['decided_on_server']} on the server "
                      f"({summary['uart_bytes_per_handoff']:.0f} UART bytes and "
                      f"{summary['handoff_bytes_per_sample']} int8 bytes per hand-off)")


def _int8_handoff(tail: Any) -> dict[str, Any] | None:
    """Per cut tensor of a tail with int8 stages: bytes, scale and zero point (one per
    tensor: the whole graph was quantized once)."""
    if not tail.has_int8_stages:
        return None
    entries = {t["name"]: t for s in tail.stages for t in s["io"]["tflite_int8"]["inputs"]}
    return {t["name"]: {"bytes_per_sample": entries[t["name"]]["bytes_per_sample"],
                        "scale": entries[t["name"]]["quant"]["scale"][0],
                        "zero_point": entries[t["name"]]["quant"]["zero_point"][0]}
            for t in tail.manifest["inputs"]}


@click.command("serve")
@click.argument("tail", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="REST port (0 picks a free one).")
@click.option("--grpc-port", type=click.IntRange(0, 65535), default=8001, show_default=True,
              help="gRPC v2 port (0 picks a free one).")
@click.option("--no-grpc", is_flag=True, help="Serve REST only.")
@click.option("--runtime", help="Runtime for the tail stages (default: onnx).")
@click.option("--max-batch", type=click.IntRange(1, 65536), default=32, show_default=True,
              help="Dynamic batching: rows.")
@click.option("--max-delay-ms", type=FiniteFloat(0, 60_000), default=2.0, show_default=True,
              help="Dynamic batching: longest wait for more requests.")
@click.option("--max-body-mb", type=FiniteFloat(0, 4096, min_open=True), default=16.0,
              show_default=True, help="Request size limit (bigger bodies get 413, unread).")
@click.option("--max-rows", type=click.IntRange(1, 1 << 20), default=256, show_default=True,
              help="Rows per request.")
@click.option("--idle-timeout", type=FiniteFloat(0, 3600, min_open=True), default=10.0,
              show_default=True,
              help="Seconds a connection may take to send a request's headers (and each "
                   "part of its body) before it is closed.")
@click.option("--replicas", type=click.IntRange(1, 1024),
              help="Run the tail on N Ray Serve replicas (each batches its requests; "
                   "--max-batch counts requests there) behind this server.")
@click.option("--ray-address", metavar="ADDR",
              help="With --replicas: an existing Ray cluster (e.g. 10.0.0.5:6379); "
                   "default: a local Ray instance started and stopped here.")
@click.option("--write-ray-config", "ray_config_path", type=click.Path(path_type=Path),
              help="Write a Ray Serve config for the tail (`serve deploy FILE` on a cluster, "
                   "or `serve run FILE`) with --replicas (default 1), and exit.")
@debug_option
def serve(tail: Path, host: str, port: int, grpc_port: int, no_grpc: bool,
          runtime: str | None, max_batch: int, max_delay_ms: float, max_body_mb: float,
          max_rows: int, idle_timeout: float, replicas: int | None, ray_address: str | None,
          ray_config_path: Path | None) -> None:
    """Serve a TAIL bundle on KServe's model server (v2 REST and gRPC).

    REST takes v2 JSON tensors and the binary tensor extension
    (Inference-Header-Content-Length); concurrent requests are batched.
    SIGTERM or Ctrl-C stops accepting, answers accepted requests, and exits.

    \b
    Example:
      eedge serve split/tail --port 8000 --grpc-port 8001
      curl localhost:8000/v2/health/ready
      eedge serve split/tail --replicas 4 --ray-address 10.0.0.5:6379
      eedge serve split/tail --replicas 4 --write-ray-config serve.yaml
    """
    from eedge.split.kserve_tail import ServeOptions, serve_main

    if ray_config_path is not None:
        from eedge.split.ray_tail import ray_config, write_ray_config

        config = ray_config(tail, replicas or 1, runtime, max_batch, max_delay_ms, max_rows,
                            max_body_mb, host="0.0.0.0" if host == "127.0.0.1" else host,
                            port=port)
        write_ray_config(ray_config_path, config)
        click.echo(f"wrote {ray_config_path} (Ray Serve: `serve deploy {ray_config_path}` or "
                   f"`serve run {ray_config_path}`; port {port})")
        return
    if ray_address is not None and replicas is None:
        raise InputDataError("--ray-address needs --replicas N (how many tail replicas to run "
                             "on the cluster)")
    options = ServeOptions(host=host, port=port, grpc_port=None if no_grpc else grpc_port,
                           max_body_bytes=int(max_body_mb * (1 << 20)),
                           idle_timeout_s=idle_timeout)
    if replicas is not None:
        from eedge.split.ray_tail import serve_with_replicas

        serve_with_replicas(tail, replicas, ray_address, runtime, max_batch, max_delay_ms,
                            max_rows, options)
        return
    model = build_serve_model(tail, runtime, max_batch, max_delay_ms, max_rows)
    serve_main(model, options)


def build_serve_model(tail: Path, runtime: str | None, max_batch: int, max_delay_ms: float,
                      max_rows: int) -> Any:
    """The KServe model `eedge serve` runs (one place to build it for every way of serving)."""
    from eedge.split.kserve_tail import build_model

    return build_model(tail, runtime=runtime, max_batch=max_batch, max_delay_ms=max_delay_ms,
                       max_rows=max_rows)
