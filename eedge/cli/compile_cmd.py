"""``eedge compile``: compile a bundle's stages with an optimizing compiler (Apache TVM)."""

from __future__ import annotations

from pathlib import Path

import click

from eedge.cli.console import debug_option, json_option, out_console, print_json
from eedge.cli.progress import progress


@click.command("compile")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--backend", type=click.Choice(["tvm"]), default="tvm", show_default=True,
              help="Compiler (TVM is the optional extra eedge[tvm]).")
@click.option("--target", "target", type=click.Choice(["host", "rpi4"]), default="host",
              show_default=True,
              help="host: x86-64/this CPU; rpi4: aarch64 Cortex-A72, cross-linked.")
@click.option("--tune", is_flag=True,
              help="MetaSchedule-tune each stage first (host only); the database is stored "
                   "in the bundle and applied by every later compile.")
@click.option("--trials", type=click.IntRange(1, 100000), default=64, show_default=True,
              help="Tuning trials per stage (with --tune).")
@json_option
@debug_option
def compile_command(bundle: Path, backend: str, target: str, tune: bool, trials: int,
                    as_json: bool) -> None:
    """Compile every ONNX stage of BUNDLE to a shared library and record it in the manifest.

    The host libraries run with `eedge run --runtime tvm`.

    \b
    Examples:
      eedge compile demo-out/bundle --backend tvm --target host
      eedge compile demo-out/bundle --backend tvm --target rpi4
      eedge compile demo-out/bundle --backend tvm --target host --tune --trials 64

    Ctrl-C while tuning keeps the trials measured so far in the bundle.
    """
    from eedge.backends.tvm_compiler import compile_bundle, tvm_format
    from eedge.ir.bundle import load_bundle

    loaded = load_bundle(bundle)
    with progress(f"compiling {len(loaded.stages)} stages with {backend} for {target}",
                  quiet=as_json) as shown:
        def tuned(done: int, total: int, best_ms: float | None) -> None:
            best = "" if best_ms is None else f", best kernels {best_ms * 1e3:.1f} µs"
            shown.say(f"tuning: {done}/{total} trials{best}")
            shown.tick(done, total)

        compiled = compile_bundle(loaded, target, shown.say, shown.tick,
                                  trials=trials if tune else 0, report=tuned)
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
    out_console.print(f"TVM {report['version']}, target '{report['target']}'; "
                      f"written to {bundle}/manifest.json")
