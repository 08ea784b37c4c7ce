"""``eedge run``: execute a bundle as an early-exit cascade on user inputs."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from rich.table import Table

from eedge.cli.console import debug_option, json_option, out_console, print_json
from eedge.errors import InputDataError
from eedge.io.arrays import load_array
from eedge.runtime.cascade import Cascade
from eedge.runtime.stage_runners import RUNTIMES


def parse_thresholds(text: str, exits: int) -> list[float | None]:
    """``0.9,0.8`` (one per early exit; the final exit always decides) or ``none``."""
    values: list[float | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part in ("none", "never", "-"):
            values.append(None)
            continue
        try:
            values.append(float(part))
        except ValueError:
            raise InputDataError(f"bad threshold {part!r} in --thresholds; write numbers in "
                                 "[0, 1] separated by commas, or 'none'") from None
    if len(values) == exits - 1:
        values.append(None)
    if len(values) != exits:
        raise InputDataError(f"--thresholds has {len(values)} values; the bundle has {exits} "
                             f"exits: give {exits - 1} (one per early exit)")
    return values


@click.command("run")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--input", "-i", "input_path", type=click.Path(path_type=Path), required=True,
              help="Inputs: .npy, or .npz with x (and optionally y to report accuracy).")
@click.option("--thresholds", help="Override per-exit thresholds, e.g. 0.95,0.9.")
@click.option("--no-early-exit", is_flag=True, help="Run every stage (final exit decides).")
@click.option("--threads", default=1, show_default=True, help="Runtime threads.")
@click.option("--runtime", type=click.Choice(list(RUNTIMES)), default=None,
              help="Stage files and engine (default: onnx if present, else int8, else tflite).")
@json_option
@debug_option
def command(bundle: Path, input_path: Path, thresholds: str | None, no_early_exit: bool,
            threads: int, runtime: str | None, as_json: bool) -> None:
    """Run BUNDLE on inputs as a cascade: each sample stops at its first confident exit.

    \b
    Example:
      eedge run demo-out/bundle --input demo-out/test.npz
      eedge run bundle --input x.npy --thresholds 0.99,0.95 --json
      eedge run bundle --input val.npz --runtime int8-tflm
    """
    cascade = Cascade(bundle, threads=threads, runtime=runtime)
    if thresholds is not None:
        cascade.set_thresholds(parse_thresholds(thresholds, len(cascade.exits)))
    x = load_array(input_path, "x")
    labels = _optional_labels(input_path, len(x) if x.ndim == len(cascade.inputs[0]["shape"])
                              else 1)
    result = cascade.infer(x, early_exit=not no_early_exit)
    accuracy = float(np.mean(result.predictions == labels)) if labels is not None else None
    if as_json:
        print_json({"runtime": cascade.runtime, "thresholds": cascade.thresholds,
                    "accuracy": accuracy, **result.to_json()})
        return
    n = len(result.predictions)
    table = Table(title=f"{n} samples ({cascade.runtime} runtime)")
    for name in ("exit", "samples", "share", "stage time (ms)"):
        table.add_column(name, justify="right")
    exit_stage = {e["index"]: e["stage"] for e in cascade.exits}
    for k in range(len(cascade.exits)):
        count = int(np.sum(result.exit_index == k))
        table.add_row(f"exit{k}", str(count), f"{count / n:.1%}",
                      f"{result.stage_seconds[exit_stage[k]] * 1e3:.3f}")
    out_console.print(table)
    if n <= 20:
        for i in range(n):
            out_console.print(f"sample {i}: class {result.predictions[i]} at exit "
                              f"{result.exit_index[i]} (confidence {result.confidence[i]:.3f})")
    if accuracy is not None:
        out_console.print(f"accuracy: {accuracy:.2%}")


def _optional_labels(path: Path, count: int) -> np.ndarray | None:
    if path.suffix != ".npz":
        return None
    with np.load(path, allow_pickle=False) as data:
        if "y" not in data.files:
            return None
        labels = data["y"]
    if labels.shape != (count,):
        raise InputDataError(f"{path}: y has shape {list(labels.shape)} but x has {count} "
                             "samples")
    return labels
