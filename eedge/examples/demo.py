"""The end-to-end demo: train, export, pick thresholds, run the cascade.

It uses only the public API a user would (``export_torch``, ``Cascade``,
``write_thresholds``), so the demo doubles as an integration test of the
main path.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from eedge.examples.digits import load_digits_splits
from eedge.export import export_torch
from eedge.policies.apply import write_thresholds
from eedge.policies.calibrate import calibrate
from eedge.runtime.cascade import Cascade
from eedge.train.multi_exit import TrainConfig, seed_everything, train_multi_exit

Progress = Callable[[str], None]
INT8_CALIBRATION_SAMPLES = 256
MAX_ACCURACY_DROP = 0.01


@dataclass(frozen=True)
class DemoModel:
    """One built-in example model and how the demo trains it."""

    module: str          # defines build_model() and, optionally, describe()
    description: str     # for the progress message when the module has no describe()
    epochs: int          # default training epochs: a few seconds on one thread


MODELS: dict[str, DemoModel] = {
    "cnn": DemoModel("eedge.examples.digits_model", "3-exit CNN", 30),
    # 15 epochs (255 AdamW steps) put the ViT's exits at 93-96% on digits in about
    # the time the CNN's 30 epochs take.
    "vit": DemoModel("eedge.examples.vit_model", "3-exit ViT", 15),
}


@dataclass
class ExitSummary:
    index: int
    stage: int
    cumulative_macs: int
    threshold: float | None
    accuracy_alone: float        # this exit's accuracy on every test sample
    exit_rate: float             # share of test samples the cascade decides here
    accuracy_when_exiting: float | None  # accuracy on the samples decided here
    accuracy_alone_int8: float = 0.0     # same as accuracy_alone, int8 model (TFLM bytes)


@dataclass
class DemoReport:
    exits: list[ExitSummary]
    test_samples: int
    cascade_accuracy: float
    final_exit_accuracy: float
    expected_macs: float
    full_macs: int
    macs_saved: float
    latency_cascade_us: float    # mean per-sample latency, batch 1, early exits on
    latency_full_us: float       # same, all stages run
    train_seconds: float
    bundle: str | None
    files: dict[str, str] = field(default_factory=dict)
    int8_cascade_accuracy: float = 0.0
    int8_exit_rates: list[float] = field(default_factory=list)
    model_bytes: dict[str, int] = field(default_factory=dict)  # stage files per format
    device: dict[str, Any] | None = None   # the generated C runtime in QEMU
    device_skipped: str | None = None
    model: str = "cnn"           # the MODELS entry

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _per_sample_latency_us(cascade: Cascade, x: np.ndarray, early_exit: bool) -> float:
    cascade.infer(x[:8], early_exit=early_exit)  # warm-up
    start = time.perf_counter()
    for i in range(len(x)):
        cascade.infer(x[i:i + 1], early_exit=early_exit)
    return (time.perf_counter() - start) / len(x) * 1e6


def run_demo(out: Path | None = None, seed: int = 0, epochs: int | None = None,
             progress: Progress | None = None, firmware_target: str | None = "qemu-cortex-m4",
             model_name: str = "cnn") -> DemoReport:
    """Train a digits model (``MODELS[model_name]``) and deploy it as a cascade.

    ``out`` keeps the artifacts; ``epochs`` defaults to the model's own. Both
    models go through the same library calls, so the ViT demo is the CNN
    demo's path with sequence tensors in it.
    """
    import importlib

    import torch

    if model_name not in MODELS:
        raise ValueError(f"unknown demo model {model_name!r}; choose one of "
                         f"{', '.join(MODELS)}")
    spec = MODELS[model_name]
    epochs = spec.epochs if epochs is None else epochs
    example = importlib.import_module(spec.module)
    description = example.describe() if hasattr(example, "describe") else spec.description
    say = progress or (lambda _msg: None)
    work = Path(tempfile.mkdtemp(prefix="eedge-demo-")) if out is None else out
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = load_digits_splits(seed=seed)
        seed_everything(seed)  # the weight initialisation must be seeded too
        model = example.build_model()
        say(f"training the {description} on digits ({len(data.x_train)} images, {epochs} "
            "epochs)")
        start = time.perf_counter()
        train_multi_exit(model, data.x_train, data.y_train,
                         TrainConfig(epochs=epochs, seed=seed),
                         on_epoch=lambda e, loss: say(f"epoch {e + 1}/{epochs} loss {loss:.3f}")
                         if (e + 1) % 10 == 0 or e + 1 == epochs else None)
        train_seconds = time.perf_counter() - start
        torch.save(model.state_dict(), work / "model.pt")
        np.savez(work / "test.npz", x=data.x_test, y=data.y_test)

        result = export_torch(model, data.x_val[:2], work / "bundle",
                              name="digits" if model_name == "cnn" else f"digits-{model_name}",
                              check_inputs=[data.x_test[:64]], force=True, progress=say,
                              formats=("onnx", "tflite"), int8=True,
                              calibration=data.x_train[:INT8_CALIBRATION_SAMPLES])
        say("calibrating exit thresholds on the validation split (accuracy drop <= 1%)")
        costs = [float(e["cumulative_macs"]) for e in result.bundle.exits]
        calibration = calibrate(result.bundle, data.x_val, data.y_val, "max_accuracy_drop",
                                MAX_ACCURACY_DROP, costs, "MACs")
        bundle = write_thresholds(result.bundle, calibration.chosen.thresholds,
                                  f"calibrated (max_accuracy_drop {MAX_ACCURACY_DROP})")

        say("running the cascade on the test split")
        cascade = Cascade(bundle)
        decided = cascade.infer(data.x_test)
        all_logits = cascade.run_all_exits(data.x_test)
        report = _summarize(bundle.manifest, decided, all_logits, data.y_test)
        report.latency_cascade_us = _per_sample_latency_us(cascade, data.x_test, True)
        report.latency_full_us = _per_sample_latency_us(cascade, data.x_test, False)
        report.train_seconds = train_seconds
        report.model = model_name
        say("evaluating the int8 model (eedge's reference = TFLite Micro's bytes)")
        _add_int8(report, bundle, data.x_test, data.y_test)
        if firmware_target is not None:
            say(f"generating, building and running the C runtime on {firmware_target}")
            _add_device(report, bundle, firmware_target, data.x_test, data.y_test)
        report.bundle = str(work / "bundle") if out is not None else None
        if out is not None:
            report.files = {"model": str(work / "model.pt"), "test_data": str(work / "test.npz")}
        return report
    finally:
        if out is None:
            shutil.rmtree(work, ignore_errors=True)


def _add_int8(report: DemoReport, bundle: Any, x: np.ndarray, y: np.ndarray) -> None:
    int8 = Cascade(bundle, runtime="int8-reference")
    for summary, logits in zip(report.exits, int8.run_all_exits(x)):
        summary.accuracy_alone_int8 = float(np.mean(np.argmax(logits, axis=-1) == y))
    decided = int8.infer(x)
    report.int8_cascade_accuracy = float(np.mean(decided.predictions == y))
    report.int8_exit_rates = [float(np.mean(decided.exit_index == e.index))
                              for e in report.exits]
    for fmt in ("onnx", "tflite", "tflite_int8"):
        report.model_bytes[fmt] = sum(bundle.manifest["files"][s["files"][fmt]]["bytes"]
                                      for s in bundle.stages)


def _add_device(report: DemoReport, bundle: Any, target_name: str, x: np.ndarray,
                y: np.ndarray) -> None:
    from eedge.codegen.device_run import run_on_target
    from eedge.codegen.model_source import load_codegen_model
    from eedge.errors import ToolchainError
    from eedge.targets import load_target

    target = load_target(target_name)
    model = load_codegen_model(bundle.path)
    try:
        run = run_on_target(model, target, x)
        summary = run.summary()
        stage_instructions = summary.get("stage_instructions_mean")
        reached = {k for s in run.run.samples for k in range(len(s.stage_ticks))}
        if stage_instructions and len(reached) < len(stage_instructions):
            # A stage no test sample reached (the calibrated cascade never needs it)
            # would read 0: measure it on two samples with every early exit closed.
            every = run_on_target(replace(model, thresholds=[None] * len(model.thresholds)),
                                  target, x[:2]).summary()["stage_instructions_mean"]
            stage_instructions = [every[k] if k not in reached else v
                                  for k, v in enumerate(stage_instructions)]
    except ToolchainError as exc:  # the demo still shows the host-side results
        report.device_skipped = str(exc)
        return
    ticks = [sum(s.stage_ticks) for s in run.run.samples]
    per_tick = run.instructions_per_tick  # None on the host: only QEMU counts instructions
    report.device = {
        "target": target_name, "accuracy": float(np.mean(run.predictions == y)),
        "exit_rates": [float(np.mean(run.exit_index == k)) for k in range(len(report.exits))],
        "stage_instructions": stage_instructions,
        "instructions_per_inference": float(np.mean(ticks)) * per_tick if per_tick else None,
        "instructions_all_stages": float(sum(stage_instructions)) if stage_instructions
        else None,
        # flash and stack are measured on MCU builds only (None for --target host)
        "flash_bytes": summary.get("flash_bytes"), "weight_bytes": summary["weight_bytes"],
        "ram_bytes": summary["ram_bytes"],
        "arena_bytes": summary["arena_bytes"], "scratch_bytes": summary["scratch_bytes"],
        "stack_bytes": summary.get("stack_used_bytes"),
        "same_decisions_as_python": bool(
            np.array_equal(run.exit_index, Cascade(bundle, runtime="int8-reference")
                           .infer(x).exit_index))}


def _summarize(manifest: dict[str, Any], decided: Any, all_logits: list[np.ndarray],
               labels: np.ndarray) -> DemoReport:
    exits = []
    n = len(labels)
    for entry, logits in zip(manifest["exits"], all_logits):
        k = entry["index"]
        here = decided.exit_index == k
        exits.append(ExitSummary(
            index=k, stage=entry["stage"], cumulative_macs=entry["cumulative_macs"],
            threshold=entry["policy"]["threshold"],
            accuracy_alone=float(np.mean(np.argmax(logits, axis=-1) == labels)),
            exit_rate=float(np.mean(here)),
            accuracy_when_exiting=float(np.mean(decided.predictions[here] == labels[here]))
            if here.any() else None))
    expected = float(sum(e.exit_rate * e.cumulative_macs for e in exits))
    full = int(manifest["exits"][-1]["cumulative_macs"])
    return DemoReport(
        exits=exits, test_samples=n,
        cascade_accuracy=float(np.mean(decided.predictions == labels)),
        final_exit_accuracy=exits[-1].accuracy_alone, expected_macs=expected, full_macs=full,
        macs_saved=1.0 - expected / full if full else 0.0, latency_cascade_us=0.0,
        latency_full_us=0.0, train_seconds=0.0, bundle=None)
