"""``eedge export``: a model file or torch factory in, a verified bundle out."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from eedge.cli.console import debug_option, json_option, out_console, print_json
from eedge.cli.progress import progress
from eedge.cli.tables import stage_table, summary_lines
from eedge.errors import InputDataError, ModelError
from eedge.frontends.onnx_frontend import parse_input_shape
from eedge.io.arrays import load_array


@click.command("export")
@click.argument("model")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True,
              help="Bundle directory to create.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME:]D0,D1,..",
              help="Input shape, batch first (e.g. 1,1,8,8). Required for torch models; "
                   "fixes symbolic dimensions of ONNX models.")
@click.option("--weights", type=click.Path(path_type=Path),
              help="torch state dict (.pt) for a MODULE:FACTORY model.")
@click.option("--example", "examples", multiple=True, type=click.Path(path_type=Path),
              help="Inputs (.npy, or .npz with x) checked staged-vs-whole on top of random ones.")
@click.option("--split-after", metavar="TENSOR|STAGE",
              help="Also cut a device head and a server tail after this tensor or stage index.")
@click.option("--format", "formats", default="onnx", show_default=True,
              metavar="onnx,tflite", help="Stage file formats (comma-separated).")
@click.option("--int8", is_flag=True,
              help="Also write int8 TFLite stages (whole-graph post-training quantization).")
@click.option("--calib", type=click.Path(path_type=Path),
              help="Calibration inputs for --int8: .npy, or .npz with x (model layout).")
@click.option("--observer", type=click.Choice(["minmax", "percentile"]), default="minmax",
              show_default=True, help="How activation ranges are taken from the calibration data.")
@click.option("--exits", "extra_exits", metavar="TENSOR,...",
              help="For a .tflite model: tensors that are early exits (earliest first).")
@click.option("--ensemble", metavar="K,K,...",
              help="Exit indices (the last ones) averaged into the final prediction (QUTE).")
@click.option("--gates", metavar="K,K,...|all",
              help="Exits whose last logit is a learned gate (default: exits whose output "
                   "name ends in 'gated').")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
@json_option
@debug_option
def command(model: str, out: Path, input_shapes: tuple[str, ...], weights: Path | None,
            examples: tuple[Path, ...], split_after: str | None, formats: str, int8: bool,
            calib: Path | None, observer: str, extra_exits: str | None, ensemble: str | None,
            gates: str | None, force: bool, as_json: bool) -> None:
    """Partition MODEL into per-exit stages and write a verified bundle.

    MODEL is an ONNX file whose outputs are the exits (earliest first); a
    torch model given as FILE.py:FACTORY or package.module:FACTORY, where
    FACTORY() returns an nn.Module whose forward returns one logits tensor
    per exit; or a .tflite file (float32 or int8; its outputs are the final
    exits, --exits adds early ones).

    \b
    Examples:
      eedge export model.onnx --out bundle
      eedge export model.onnx --out bundle --format onnx,tflite --int8 --calib val.npz
      eedge export eedge.examples.digits_model:build_model \\
          --weights demo-out/model.pt --input-shape 1,1,8,8 --out bundle
      eedge export model.onnx --out split-bundle --split-after 1
      eedge export gated.onnx --out bundle --gates 0,1
      eedge export kws_ref_model.tflite --out kws-bundle
    """
    from eedge.export import export_onnx, export_tflite, export_torch

    shapes = dict(parse_input_shape(s) for s in input_shapes)
    user_inputs = [load_array(p) for p in examples]
    format_list = tuple(f.strip() for f in formats.split(",") if f.strip())
    if calib is not None and not int8:
        raise InputDataError("--calib is only used with --int8")
    try:
        members = [int(v) for v in ensemble.split(",")] if ensemble else None
    except ValueError:
        raise InputDataError(f"bad --ensemble {ensemble!r}: write exit indices like 2,3,4") \
            from None
    options = dict(split_after=split_after, check_inputs=user_inputs, force=force,
                   formats=format_list, int8=int8, observer=observer, ensemble=members,
                   gates=_gate_list(gates),
                   calibration=load_array(calib) if calib is not None else None)
    if extra_exits and not model.endswith(".tflite"):
        raise ModelError("--exits is for .tflite models; ONNX and torch models declare their "
                         "exits as outputs")
    with progress("exporting", quiet=as_json) as say:
        if model.endswith(".onnx"):
            if weights is not None:
                raise ModelError("--weights is for torch models; an ONNX file has its weights")
            result = export_onnx(Path(model), out, shapes or None, progress=say, **options)
        elif model.endswith(".tflite"):
            if options["formats"] == ("onnx",):  # the default; a .tflite has no ONNX
                options["formats"] = ("tflite",)
            exits = [e.strip() for e in extra_exits.split(",")] if extra_exits else None
            result = export_tflite(Path(model), out, exits, progress=say, **options)
        else:
            result = export_torch(*_torch_model_and_example(model, weights, shapes, user_inputs),
                                  out, name=_torch_model_name(model), progress=say, **options)
    manifest = result.bundle.manifest
    if as_json:
        print_json({"bundle": str(result.bundle.path), "manifest": manifest,
                    "dropped_nodes": result.dropped_nodes, "notes": result.notes})
        return
    out_console.print(stage_table(manifest))
    for line in summary_lines(manifest):
        out_console.print(line)
    if result.dropped_nodes:
        dropped = escape(", ".join(result.dropped_nodes[:5]))
        out_console.print(f"[yellow]note:[/] {len(result.dropped_nodes)} node(s) feed no exit "
                          f"and were dropped: {dropped}")
    for note in result.notes:
        out_console.print(f"[yellow]note:[/] {escape(note)}")
    out_console.print(f"wrote {escape(str(result.bundle.path))}", soft_wrap=True)


def _gate_list(text: str | None) -> list[int] | str | None:
    """``--gates``: exit indices, or ``all`` (every exit of the model has a gate)."""
    if text is None:
        return None
    if text.strip().lower() == "all":
        return "all"
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise InputDataError(f"bad --gates {text!r}: write exit indices like 0,1 or 'all'") \
            from None


def _torch_model_name(spec: str) -> str:
    """The factory's name: one file or module often defines several models (resnet8,
    resnet18), and the name goes on into served model names."""
    target, _, factory = spec.rpartition(":")
    if factory:
        return factory
    return Path(target).stem if target.endswith(".py") else target.rsplit(".", 1)[-1]


def _torch_model_and_example(spec: str, weights: Path | None, shapes: dict, user_inputs: list):
    import numpy as np

    from eedge.frontends.torch_frontend import load_module_factory, load_weights

    if spec.endswith((".pt", ".pth", ".pt2")):
        raise ModelError(f"{spec} holds weights, not an architecture: pass the model as "
                         f"FILE.py:FACTORY (or module:FACTORY) with --weights {spec}")
    module = load_module_factory(spec)
    if weights is not None:
        load_weights(module, weights)
    if user_inputs:
        example = np.asarray(user_inputs[0], dtype=np.float32)
    elif shapes:
        if len(shapes) != 1:
            raise ModelError("torch models take one input: give one --input-shape")
        dims = next(iter(shapes.values()))
        example = np.random.default_rng(0).standard_normal(
            [d if isinstance(d, int) else 1 for d in dims]).astype(np.float32)
    else:
        raise ModelError("a torch model needs --input-shape (e.g. 1,1,8,8) or --example x.npy")
    return module, example
