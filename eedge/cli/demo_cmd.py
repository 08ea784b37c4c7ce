"""``eedge demo``: the whole main path on a built-in digits example (CNN or ViT)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from eedge.cli.console import debug_option, json_option, out_console, print_json, progress_status
from eedge.cli.tables import human_bytes, human_count


@click.command("demo")
@click.option("--out", "-o", type=click.Path(path_type=Path),
              help="Keep the bundle, weights and test data in this directory.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed for data split and training.")
@click.option("--model", "model_name", type=click.Choice(["cnn", "vit"]), default="cnn",
              show_default=True,
              help="The example: a 3-exit CNN, or a 3-exit vision transformer (4 blocks).")
@click.option("--epochs", type=click.IntRange(1, 10_000), default=None,
              help="Training epochs.  [default: 30 for the CNN, 15 for the ViT]")
@click.option("--target", "target_name", default="qemu-cortex-m4", show_default=True,
              help="Where to run the generated C runtime (an mcu-qemu target or host).")
@click.option("--no-firmware", is_flag=True, help="Skip generating and running the C runtime.")
@click.option("--qute", is_flag=True,
              help="Instead: BASE vs early-exit ensemble vs QUTE on clean and corrupted digits, "
                   "with the accuracy-drop monitor and the firmware overhead.")
@click.option("--cascade", is_flag=True,
              help="Instead: three independent CNNs cascaded with window-based deferral vs "
                   "the largest alone (accuracy, AURC, coverage at 2% risk, expected MACs).")
@json_option
@debug_option
def command(out: Path | None, seed: int, model_name: str, epochs: int | None, target_name: str,
            no_firmware: bool, qute: bool, cascade: bool, as_json: bool) -> None:
    """Train a 3-exit CNN (or ViT) on digits, export it (ONNX, TFLite, int8), run the cascade.

    Needs no download: the data ships with scikit-learn. Takes seconds.

    \b
    Example:
      eedge demo --out demo-out
      eedge inspect demo-out/bundle
      eedge demo --model vit
    """
    from eedge.examples.demo import MODELS, run_demo

    if epochs is not None and epochs < 1:
        raise click.BadParameter("must be at least 1", param_hint="--epochs")
    if cascade:
        if qute or model_name != "cnn":
            raise click.UsageError("--cascade is a demo of its own (three CNNs); drop "
                                   + ("--qute" if qute else f"--model {model_name}"))
        _cascade_demo(out, seed, epochs, as_json)
        return
    if qute:
        if model_name != "cnn":
            raise click.UsageError("--qute compares variants of the CNN; drop --model "
                                   f"{model_name}")
        _qute_demo(out, seed, epochs or MODELS["cnn"].epochs, no_firmware, as_json)
        return
    with progress_status("demo", quiet=as_json) as say:
        report = run_demo(out, seed=seed, epochs=epochs, progress=say,
                          firmware_target=None if no_firmware else target_name,
                          model_name=model_name)
    if as_json:
        print_json(report.to_json())
        return
    kind = {"cnn": "", "vit": "ViT "}[model_name]
    table = Table(title=f"digits {kind}cascade on {report.test_samples} test images")
    for name in ("exit", "stage", "MACs to here", "threshold", "exit alone acc",
                 "int8 alone acc", "exit rate", "acc of exited"):
        table.add_column(name, justify="right")
    for e in report.exits:
        final = e.index == len(report.exits) - 1
        table.add_row(f"exit{e.index}", str(e.stage), human_count(e.cumulative_macs),
                      "final" if final else ("never" if e.threshold is None
                                             else f"{e.threshold:.4f}"),
                      f"{e.accuracy_alone:.2%}", f"{e.accuracy_alone_int8:.2%}",
                      f"{e.exit_rate:.1%}",
                      "-" if e.accuracy_when_exiting is None
                      else f"{e.accuracy_when_exiting:.2%}")
    out_console.print(table)
    out_console.print(f"cascade accuracy {report.cascade_accuracy:.2%} vs final exit "
                      f"{report.final_exit_accuracy:.2%}")
    rates = ", ".join(f"{r:.1%}" for r in report.int8_exit_rates)
    out_console.print(f"int8 cascade accuracy {report.int8_cascade_accuracy:.2%} "
                      f"(exit rates {rates}; TFLite Micro-exact arithmetic)")
    sizes = report.model_bytes
    out_console.print(f"stage files: ONNX {human_bytes(sizes['onnx'])}, float TFLite "
                      f"{human_bytes(sizes['tflite'])}, int8 TFLite "
                      f"{human_bytes(sizes['tflite_int8'])}")
    out_console.print(f"expected MACs/sample {human_count(report.expected_macs)} vs "
                      f"{human_count(report.full_macs)} without exits: "
                      f"{report.macs_saved:.1%} saved")
    out_console.print(f"measured latency (ONNX Runtime, batch 1, 1 thread): "
                      f"{report.latency_cascade_us:.1f} us/sample with exits vs "
                      f"{report.latency_full_us:.1f} us/sample without "
                      f"(training took {report.train_seconds:.1f} s)")
    device = report.device
    if device:
        rates = ", ".join(f"{r:.1%}" for r in device["exit_rates"])
        where = "native" if device["flash_bytes"] is None else "QEMU"
        out_console.print(
            f"on {device['target']} (generated C, {where}): accuracy {device['accuracy']:.2%}, "
            f"exit rates {rates}, decisions identical to Python: "
            f"{device['same_decisions_as_python']}")
        if device["stage_instructions"]:
            stages = ", ".join(f"{v / 1e3:.0f}k" for v in device["stage_instructions"])
            out_console.print(
                f"  instructions per stage {stages}; per inference "
                f"{device['instructions_per_inference'] / 1e3:.0f}k with exits vs "
                f"{device['instructions_all_stages'] / 1e3:.0f}k through every stage")
        if device["flash_bytes"] is not None:
            out_console.print(
                f"  flash {human_bytes(device['flash_bytes'])} (weights "
                f"{human_bytes(device['weight_bytes'])}), RAM {human_bytes(device['ram_bytes'])} "
                f"(arena {device['arena_bytes']} B + kernel scratch {device['scratch_bytes']} B + "
                f"stack {device['stack_bytes']} B)")
        else:
            out_console.print(f"  weights {human_bytes(device['weight_bytes'])}, arena "
                              f"{device['arena_bytes']} B")
    elif report.device_skipped:
        out_console.print(f"[yellow]C runtime skipped:[/] {report.device_skipped}")
    if report.bundle:
        out_console.print(f"kept: bundle {report.bundle}, weights {report.files['model']}, "
                          f"test data {report.files['test_data']}")


def _qute_demo(out: Path | None, seed: int, epochs: int, no_firmware: bool, as_json: bool) -> None:
    import tempfile

    from eedge.examples.qute_demo import (compare, export_qute, firmware_overhead, monitor_rates,
                                          train_models)

    with progress_status("QUTE demo", quiet=as_json) as say, \
            tempfile.TemporaryDirectory(prefix="eedge-qute-") as tmp:
        work = out or Path(tmp)
        say(f"training BASE and QUTE (K=2) for {epochs} epochs")
        models = train_models(seed, epochs)
        table = compare(models)
        say("exporting the QUTE bundle (int8, ensemble, monitor)")
        bundle = export_qute(models, work / "qute-bundle")
        rates = monitor_rates(bundle, models.data)
        firmware = None
        if not no_firmware:
            say("building BASE and QUTE firmware and running them in QEMU")
            firmware = firmware_overhead(models, bundle, work)
    report = {"seed": seed, "extra_parameters": models.extra_parameters, "metrics": table,
              "monitor": {"false_alarm": rates.false_alarm, "detection": rates.detection},
              "firmware": firmware, "bundle": str(work / "qute-bundle") if out else None}
    if as_json:
        print_json(report)
        return
    metrics = Table(title=f"digits, seed {seed}: BASE (final exit) / EE (mean of exits) / QUTE")
    for name in ("data", "model", "accuracy", "F1", "Brier", "NLL", "ECE", "AUROC"):
        metrics.add_column(name, justify="right")
    for data_name, row in table.items():
        for model_name, m in row.items():
            metrics.add_row(data_name, model_name, f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}",
                            f"{m['brier']:.3f}", f"{m['nll']:.3f}", f"{m['ece']:.3f}",
                            "-" if m["failure_auroc"] is None else f"{m['failure_auroc']:.3f}")
    out_console.print(metrics)
    out_console.print(f"QUTE adds {models.extra_parameters:.1%} trained parameters (the "
                      "adapters; the early-view heads reuse the early exits' classifiers, "
                      "which the firmware stores again, see flash)")
    detection = ", ".join(f"{k} {v:.0%}" for k, v in rates.detection.items())
    out_console.print(f"monitor (window 32): false alarms on clean test data "
                      f"{rates.false_alarm:.1%}; windows flagged under severity-3 shift: "
                      f"{detection}")
    if firmware:
        b, q = firmware["BASE"], firmware["QUTE"]
        out_console.print(f"qemu-cortex-m4, one inference through every stage: BASE "
                          f"{b['instructions']:,} instructions, flash {b['flash_bytes']:,} B, "
                          f"RAM {b['ram_bytes']:,} B; QUTE {q['instructions']:,} "
                          f"({q['instructions'] / b['instructions'] - 1:+.1%}), flash "
                          f"{q['flash_bytes']:,} B, RAM {q['ram_bytes']:,} B")


def _cascade_demo(out: Path | None, seed: int, epochs: int | None, as_json: bool) -> None:
    from eedge.examples.cascade_demo import EPOCHS, renderables, run_cascade_demo

    with progress_status("cascade demo", quiet=as_json) as say:
        report = run_cascade_demo(out, seed=seed, epochs=epochs or EPOCHS, progress=say)
    if as_json:
        print_json(report.to_json())
        return
    for item in renderables(report):
        out_console.print(item)
