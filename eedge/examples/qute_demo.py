"""QUTE on digits: BASE vs early-exit ensemble vs QUTE, clean and corrupted.

BASE is the plain multi-exit model's final exit; the early-exit ensemble (EE)
averages all of its exits; QUTE averages the final exit and K early-view
exits trained with early-view assistance. The QUTE bundle carries the
ensemble and a calibrated accuracy-drop monitor, and runs on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eedge.examples.corruptions import KINDS, corrupt
from eedge.examples.digits import DigitsSplits, load_digits_splits
from eedge.ir.bundle import Bundle
from eedge.metrics import uncertainty_report
from eedge.policies.criteria import softmax
from eedge.policies.monitor import EnsembleStream, calibrate_bundle_monitor

MONITOR_WINDOW = 32
FALSE_ALARM = 0.01


@dataclass
class Models:
    base: Any
    qute: Any
    data: DigitsSplits
    extra_parameters: float = 0.0


def train_models(seed: int = 0, epochs: int = 30, k: int = 2) -> Models:
    import torch

    from eedge.examples.digits_model import build_model
    from eedge.train.multi_exit import TrainConfig, seed_everything, train_multi_exit
    from eedge.train.qute import QuteConfig, qute, train_qute

    data = load_digits_splits(seed=seed)
    seed_everything(seed)
    base = build_model()
    train_multi_exit(base, data.x_train, data.y_train, TrainConfig(epochs=epochs, seed=seed))
    seed_everything(seed)
    model = qute(build_model(), k, torch.zeros(1, 1, 8, 8))
    train_qute(model, data.x_train, data.y_train, QuteConfig(epochs=epochs, seed=seed))
    base_params = sum(p.numel() for p in base.parameters())
    extra = sum(p.numel() for p in model.adapters.parameters())  # EV heads share weights
    return Models(base, model, data, extra / base_params)


def probabilities(model: Any, x: np.ndarray, members: list[int] | None) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        outputs = [softmax(o.numpy()) for o in model(torch.from_numpy(x))]
    return outputs if members is None else [outputs[i] for i in members]


def compare(models: Models, severity: int = 3) -> dict[str, dict[str, Any]]:
    """Metrics of BASE, EE and QUTE on clean test data and each corruption."""
    data = models.data
    sets = {"clean": data.x_test, **{f"{kind}-{severity}": corrupt(data.x_test, kind, severity)
                                     for kind in KINDS}}
    members = models.qute.ensemble_members
    table: dict[str, dict[str, Any]] = {}
    for name, x in sets.items():
        base_probs = probabilities(models.base, x, None)
        table[name] = {
            "BASE": uncertainty_report(base_probs[-1], data.y_test),
            "EE": uncertainty_report(np.mean(base_probs, axis=0), data.y_test),
            "QUTE": uncertainty_report(np.mean(probabilities(models.qute, x, members), axis=0),
                                       data.y_test)}
    return table


def disagreement(member_probs: list[np.ndarray]) -> float:
    """Mean share of inputs on which two members predict different classes (over pairs).

    An ensemble can only lower its confidence on unfamiliar inputs if its
    members disagree there, so this explains its calibration under shift.
    """
    preds = [p.argmax(axis=1) for p in member_probs]
    pairs = [(i, j) for i in range(len(preds)) for j in range(i + 1, len(preds))]
    return float(np.mean([np.mean(preds[i] != preds[j]) for i, j in pairs])) if pairs else 0.0


def member_diagnostics(models: Models, severity: int = 3) -> dict[str, dict[str, float]]:
    """Per set: EE's and QUTE's member disagreement, and BASE's vs QUTE's final-exit confidence."""
    data = models.data
    sets = {"clean": data.x_test, **{f"{kind}-{severity}": corrupt(data.x_test, kind, severity)
                                     for kind in KINDS}}
    out: dict[str, dict[str, float]] = {}
    for name, x in sets.items():
        base = probabilities(models.base, x, None)
        members = probabilities(models.qute, x, models.qute.ensemble_members)
        out[name] = {"EE_disagreement": disagreement(base),
                     "QUTE_disagreement": disagreement(members),
                     "BASE_confidence": float(np.mean(base[-1].max(axis=1))),
                     "QUTE_final_confidence": float(np.mean(members[0].max(axis=1)))}
    return out


def export_qute(models: Models, out: Path, force: bool = True) -> Bundle:
    """int8 bundle with the ensemble, early exits off, and a calibrated monitor."""
    from eedge.export import export_torch

    data = models.data
    bundle = export_torch(models.qute, data.x_val[:2], out, name="digits_qute", int8=True,
                          calibration=data.x_train[:256], ensemble=models.qute.ensemble_members,
                          force=force).bundle
    return calibrate_bundle_monitor(bundle, data.x_val, MONITOR_WINDOW, FALSE_ALARM,
                                    runtime="int8-reference")[0]


@dataclass
class MonitorRates:
    false_alarm: float
    detection: dict[str, float] = field(default_factory=dict)


def monitor_rates(bundle: Bundle, data: DigitsSplits, severity: int = 3) -> MonitorRates:
    """Share of full windows flagged: on clean test data, and on each corruption."""
    stream = EnsembleStream(bundle, runtime="int8-reference")

    def flagged(x: np.ndarray) -> float:
        return stream.flagged_share(stream.infer(x))

    return MonitorRates(flagged(data.x_test), {kind: flagged(corrupt(data.x_test, kind, severity))
                                               for kind in KINDS})


def firmware_overhead(models: Models, qute_bundle: Bundle, workdir: Path) -> dict[str, Any]:
    """Instructions (one full inference), flash and RAM on qemu-cortex-m4: BASE vs QUTE."""
    from eedge.codegen.device_run import run_on_target
    from eedge.codegen.model_source import load_codegen_model
    from eedge.export import export_torch
    from eedge.targets import load_target

    data = models.data
    base_bundle = export_torch(models.base, data.x_val[:2], workdir / "base", name="digits",
                               int8=True, calibration=data.x_train[:256], force=True).bundle
    target = load_target("qemu-cortex-m4")
    figures: dict[str, Any] = {}
    for name, bundle in (("BASE", base_bundle), ("QUTE", qute_bundle)):
        run = run_on_target(load_codegen_model(bundle.path), target, data.x_test[:1])
        summary = run.summary()
        figures[name] = {
            "instructions": int(sum(run.run.samples[0].stage_ticks)) *
            (run.instructions_per_tick or 1),
            "flash_bytes": summary["flash_bytes"] - summary["test_input_bytes"],
            "ram_bytes": summary["ram_bytes"]}
    return figures
