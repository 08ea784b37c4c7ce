"""``eedge cascade build``: independent models in, one cascade bundle out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from eedge.cli.console import debug_option, json_option, out_console, print_json
from eedge.cli.progress import progress
from eedge.cli.tables import stage_table, summary_lines
from eedge.errors import InputDataError
from eedge.io.arrays import load_array


@click.group("cascade")
def cascade() -> None:
    """Cascades of independent models (each member reads the original input)."""


@cascade.command("build")
@click.argument("members", nargs=-1, required=True)
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True,
              help="Bundle directory to create.")
@click.option("--name", default="cascade", show_default=True, help="The bundle's model name.")
@click.option("--format", "formats", default=None, metavar="onnx,tflite",
              help="Stage file formats (comma-separated).  [default: onnx for ONNX members, "
                   "tflite for .tflite members]")
@click.option("--int8", is_flag=True,
              help="Also write int8 TFLite stages (the whole cascade quantized at once).")
@click.option("--calib", type=click.Path(path_type=Path),
              help="Calibration inputs for --int8: .npy, or .npz with x (model layout).")
@click.option("--observer", type=click.Choice(["minmax", "percentile"]), default="minmax",
              show_default=True, help="How activation ranges are taken from the calibration data.")
@click.option("--split-after", metavar="STAGE",
              help="Also cut a device head (members 0..STAGE) and a server tail.")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
@json_option
@debug_option
def build(members: tuple[str, ...], out: Path, name: str, formats: str | None, int8: bool,
          calib: Path | None, observer: str, split_after: str | None, force: bool,
          as_json: bool) -> None:
    """Cascade MEMBERS (cheapest first) into one bundle: stage k is member k.

    Each member is a whole classifier with one input and one logits output,
    as an ONNX file (torch.onnx.export's default output with its .onnx.data
    is fine) or a .tflite file (float32, or all members int8). With .tflite
    members the ONNX ones are lowered to TFLite and the bundle reads NHWC input.
    All read the same input; a member that needs another resolution starts with
    its own resize.
    The last member decides what no earlier member takes. The bundle works
    with every command a multi-exit bundle does (calibrate, evaluate, run,
    profile, codegen, split).

    \b
    Examples:
      eedge cascade build small.onnx medium.onnx large.onnx --out cascade
      eedge cascade build s.onnx m.onnx l.onnx --out cascade \\
          --format onnx,tflite --int8 --calib val.npz
      eedge cascade build s.int8.tflite l.int8.tflite --out cascade
    """
    from eedge.cascade import build_cascade

    if calib is not None and not int8:
        raise InputDataError("--calib is only used with --int8")
    options: dict[str, Any] = dict(force=force, int8=int8, observer=observer,
                                   split_after=split_after,
                                   calibration=load_array(calib) if calib is not None else None)
    if formats is not None:
        options["formats"] = tuple(f.strip() for f in formats.split(",") if f.strip())
    with progress("building the cascade", quiet=as_json) as say:
        result = build_cascade(list(members), out, name=name, progress=say, **options)
    manifest = result.bundle.manifest
    if as_json:
        print_json({"bundle": str(result.bundle.path), "manifest": manifest,
                    "notes": result.notes})
        return
    out_console.print(stage_table(manifest))
    for line in summary_lines(manifest):
        out_console.print(line)
    check = manifest["cascade"]["merge_check"]
    out_console.print(f"cascade == members (their own runtimes) on {check['samples']} inputs: "
                      f"max |diff| {check['max_abs_diff']:.2e}")
    for note in result.notes:
        out_console.print(f"[yellow]note:[/] {escape(note)}")
    out_console.print(f"wrote {escape(str(result.bundle.path))}", soft_wrap=True)
