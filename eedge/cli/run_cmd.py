"""``eedge run``: execute a bundle as an early-exit cascade on user inputs."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from rich.table import Table

from eedge.cli.console import debug_option, json_option, out_console, print_json
from eedge.cli.options import FiniteFloat, threads_option
from eedge.cli.progress import progress
from eedge.errors import InputDataError
from eedge.io.arrays import load_array, load_optional
from eedge.ir.layout import user_rank
from eedge.policies.labels import check_labels
from eedge.policies.thresholds import parse_thresholds
from eedge.runtime import batched
from eedge.runtime.cascade import Cascade
from eedge.runtime.stage_runners import RUNTIMES


@click.command("run")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--input", "-i", "input_path", type=click.Path(path_type=Path), required=True,
              help="Inputs: .npy, or .npz with x (and optionally y to report accuracy).")
@click.option("--thresholds", help="Override per-exit thresholds, e.g. 0.95,0.9.")
@click.option("--no-early-exit", is_flag=True, help="Run every stage (final exit decides).")
@threads_option("Runtime threads")
@click.option("--runtime", type=click.Choice(list(RUNTIMES)), default=None,
              help="Stage files and engine (default: onnx if present, else int8, else tflite).")
@click.option("--target", "-t", "target_name",
              help="Run the generated C runtime instead: host (gcc) or an mcu-qemu target.")
@click.option("--budget-macs", type=FiniteFloat(min=0, min_open=True),
              help="Stream the inputs one by one, adapting thresholds to keep the average "
                   "MACs per sample near this budget.")
@json_option
@debug_option
def command(bundle: Path, input_path: Path, thresholds: str | None, no_early_exit: bool,
            threads: int, runtime: str | None, target_name: str | None,
            budget_macs: float | None, as_json: bool) -> None:
    """Run BUNDLE on inputs as a cascade: each sample stops at its first confident exit.

    \b
    Example:
      eedge run demo-out/bundle --input demo-out/test.npz
      eedge run bundle --input x.npy --thresholds 0.99,0.95 --json
      eedge run bundle --input val.npz --runtime int8-tflm
      eedge run bundle --input val.npz --target qemu-cortex-m4
    """
    if target_name is not None:
        _run_on_target(bundle, input_path, target_name, thresholds, no_early_exit, as_json)
        return
    cascade = Cascade(bundle, threads=threads, runtime=runtime)
    if thresholds is not None:
        cascade.set_thresholds(parse_thresholds(thresholds, cascade.bundle.manifest))
    x = load_array(input_path, "x")
    labels = _optional_labels(input_path, len(x) if x.ndim == len(cascade.inputs[0]["shape"])
                              else 1, [e["num_classes"] for e in cascade.exits])
    if budget_macs is not None:
        _run_budgeted(cascade, x, labels, budget_macs, as_json)
        return
    with progress(f"running the cascade ({cascade.runtime})", quiet=as_json) as shown:
        result = batched.infer(cascade, x, early_exit=not no_early_exit, tick=shown.tick)
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


def _optional_labels(path: Path, count: int, classes: list[int]) -> np.ndarray | None:
    labels = load_optional(path, "y")
    if labels is None:
        return None
    return check_labels(labels, classes, str(path), count)


def _run_on_target(bundle: Path, input_path: Path, target_name: str, thresholds: str | None,
                   no_early_exit: bool, as_json: bool) -> None:
    from eedge.codegen.device_run import run_on_target
    from eedge.codegen.model_source import load_codegen_model
    from eedge.targets import load_target

    if thresholds is not None or no_early_exit:
        raise InputDataError("--thresholds and --no-early-exit apply to the Python runtimes; "
                             "the firmware uses the bundle's thresholds: set them with "
                             "`eedge thresholds BUNDLE 0.9,0.8` or `eedge calibrate`")
    target = load_target(target_name)
    model = load_codegen_model(bundle)
    x = load_array(input_path, "x")
    rank = user_rank(len(model.graph.inputs[0].shape), model.input_layout)
    labels = _optional_labels(input_path, len(x) if x.ndim == rank else 1,
                              [int(model.graph.tensors[t].shape[-1]) for t in model.graph.exits])
    with progress(f"building and running on {target.name}", quiet=as_json) as shown:
        run = run_on_target(model, target, x, say=shown.say)
    summary = run.summary()
    summary["accuracy"] = (float(np.mean(run.predictions == labels)) if labels is not None
                           else None)
    if as_json:
        print_json(summary)
        return
    n = len(run.run.samples)
    table = Table(title=f"{n} samples on {target.name} (generated C runtime)")
    for name in ("exit", "samples", "share", "mean ticks in stage", "est. instructions"):
        table.add_column(name, justify="right")
    ticks = run.mean_stage_ticks()
    instructions = summary.get("stage_instructions_mean", [None] * len(ticks))
    for k, stage in enumerate(run.project.exit_stages):
        count = int(np.sum(run.exit_index == k))
        table.add_row(f"exit{k}", str(count), f"{count / n:.1%}",
                      f"{ticks[stage]:.0f}" if run.project.port != "host" else "-",
                      f"{instructions[stage]:.0f}" if instructions[stage] else "-")
    out_console.print(table)
    if summary["accuracy"] is not None:
        out_console.print(f"accuracy on the device: {summary['accuracy']:.2%}")
    if run.project.port != "host":
        out_console.print(f"flash {summary['flash_bytes']} B (weights {summary['weight_bytes']} "
                          f"B), arena {summary['arena_bytes']} B, stack used "
                          f"{summary['stack_used_bytes']} B")


def _run_budgeted(cascade: Cascade, x: np.ndarray, labels: np.ndarray | None, budget: float,
                  as_json: bool) -> None:
    from eedge.policies.budget import BudgetController, run_budgeted

    costs = [float(e["cumulative_macs"]) for e in cascade.exits]
    controller = BudgetController(budget, costs)
    if any(t is None for t in cascade.thresholds[:-1]):
        raise InputDataError("the budget policy adapts thresholds: calibrate the bundle (or "
                             "pass --thresholds) so every early exit has one")
    with progress(f"streaming {len(x)} samples under the budget", quiet=as_json) as shown:
        run = run_budgeted(cascade, x, controller, shown.tick)
    accuracy = float(np.mean(run.predictions == labels)) if labels is not None else None
    data = {"budget_macs": budget, "average_macs": run.average_cost, "accuracy": accuracy,
            "exit_rates": [float(np.mean(run.exit_index == k)) for k in range(len(costs))],
            "final_offset": run.offsets[-1] if run.offsets else 0.0}
    if as_json:
        print_json(data)
        return
    out_console.print(f"{len(run.predictions)} samples streamed: average {run.average_cost:,.0f} "
                      f"MACs/sample for a budget of {budget:,.0f}; exit rates "
                      + ", ".join(f"{r:.1%}" for r in data["exit_rates"])
                      + (f"; accuracy {accuracy:.2%}" if accuracy is not None else ""))
