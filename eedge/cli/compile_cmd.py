"""``eedge compile``: compile a bundle's stages with an optimizing compiler (Apache TVM)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from eedge.cli.console import debug_option, json_option, out_console, print_json
from eedge.cli.progress import progress

if TYPE_CHECKING:
    from eedge.targets import Target


@click.command("compile")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--backend", type=click.Choice(["tvm"]), default="tvm", show_default=True,
              help="Compiler (TVM is the optional extra eedge[tvm]).")
@click.option("--target", "target", type=click.Choice(["host", "rpi4"]), default=None,
              help="host: x86-64/this CPU; rpi4: aarch64 Cortex-A72, cross-linked. "
                   "Default: host, or with --rpc the device's tvm_rpc.library.")
@click.option("--tune", is_flag=True,
              help="MetaSchedule-tune each stage first (here, or on the --rpc device); the "
                   "database is stored in the bundle and applied by every later compile.")
@click.option("--trials", type=click.IntRange(1, 100000), default=64, show_default=True,
              help="Tuning trials per stage (with --tune).")
@click.option("--rpc", "rpc", metavar="DEVICE.yaml", default=None,
              help="With --tune: time the candidates on this device over TVM RPC (a target "
                   "YAML with tvm_rpc: host, port, library, start_over_ssh); needed for rpi4.")
@json_option
@debug_option
def compile_command(bundle: Path, backend: str, target: str | None, tune: bool, trials: int,
                    rpc: str | None, as_json: bool) -> None:
    """Compile every ONNX stage of BUNDLE to a shared library and record it in the manifest.

    The host libraries run with `eedge run --runtime tvm`.

    \b
    Examples:
      eedge compile demo-out/bundle --backend tvm --target host
      eedge compile demo-out/bundle --backend tvm --target rpi4
      eedge compile demo-out/bundle --backend tvm --target host --tune --trials 64
      eedge compile demo-out/bundle --backend tvm --target rpi4 --tune --rpc pi.yaml

    Ctrl-C while tuning, or a device that goes away, keeps the trials measured so
    far in the bundle. Later compiles for the target build from its database.
    """
    from eedge.backends.tvm_compiler import compile_bundle, tvm_format
    from eedge.ir.bundle import load_bundle

    device = _rpc_device(rpc, tune)
    target = _library(target, device, tune)
    loaded = load_bundle(bundle)
    with progress(f"compiling {len(loaded.stages)} stages with {backend} for {target}",
                  quiet=as_json) as shown:
        def tuned(done: int, total: int, best_ms: float | None) -> None:
            best = "" if best_ms is None else f", best kernels {best_ms * 1e3:.1f} µs"
            shown.say(f"tuning: {done}/{total} trials{best}")
            shown.tick(done, total)

        if device is not None:
            from eedge.backends.tvm_rpc_tuning import tune_bundle_over_rpc

            loaded = tune_bundle_over_rpc(loaded, target, device, trials, shown.say, tuned)
        compiled = compile_bundle(loaded, target, shown.say, shown.tick,
                                  trials=trials if tune and device is None else 0,
                                  report=tuned)
    fmt = tvm_format(target)
    files = [s["files"][fmt] for s in compiled.stages]
    report = {"backend": backend, "target": target, "files": {
        name: compiled.manifest["files"][name]["bytes"] for name in files},
        **compiled.manifest["tvm"][target]}
    if as_json:
        print_json(report)
        return
    for name, size in report["files"].items():
        out_console.print(f"{name}: {size:,} bytes")
    tuning = report.get("tuning")
    if tuning:
        out_console.print(f"tuned: {tuning['trials']} trials in total, "
                          f"{tuning['record_count']} records in {tuning['records']} (batch 1)")
    cpu = f" for CPU {report['cpu']} (tuned host libraries)" if report.get("cpu") else ""
    out_console.print(f"TVM {report['version']}, target '{report['target']}'{cpu}; "
                      f"written to {bundle}/manifest.json")


def _rpc_device(rpc: str | None, tune: bool) -> Target | None:
    """The --rpc device (a target name or YAML), checked before any work starts."""
    if rpc is None:
        return None
    if not tune:
        raise click.UsageError("--rpc names the device that times tuning candidates: add "
                               "--tune (compiling alone needs no device)")
    from eedge.backends.tvm_rpc_tuning import rpc_settings
    from eedge.targets import load_target

    device = load_target(rpc)
    rpc_settings(device)
    return device


def _library(target: str | None, device: Target | None, tune: bool) -> str:
    """--target, defaulting to the --rpc device's library (else host); rpi4 tuning needs one."""
    from eedge.backends.tvm_rpc_tuning import rpc_library

    if device is None:
        if tune and target == "rpi4":
            raise click.UsageError("tuning for rpi4 times candidates on the Pi over TVM RPC: "
                                   "add --rpc PI.yaml (a target YAML with tvm_rpc: host, port, "
                                   "library: rpi4, optionally start_over_ssh: true)")
        return target or "host"
    return target or rpc_library(device)
