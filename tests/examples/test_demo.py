"""The demo end to end, and the determinism of training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from eedge.examples.demo import run_demo
from eedge.examples.digits import load_digits_splits
from eedge.examples.digits_model import build_model
from eedge.ir.bundle import load_bundle
from eedge.train.multi_exit import TrainConfig, seed_everything, train_multi_exit


def test_demo_trains_exports_and_saves_compute(tmp_path: Path) -> None:
    report = run_demo(tmp_path / "demo", epochs=30)
    assert report.final_exit_accuracy > 0.95
    # calibrated for at most a 1-point drop (on validation data; a little slack here)
    assert report.cascade_accuracy >= report.final_exit_accuracy - 0.015
    assert report.macs_saved > 0.4
    assert abs(sum(e.exit_rate for e in report.exits) - 1.0) < 1e-9
    assert report.latency_cascade_us > 0 and report.latency_full_us > 0
    for e in report.exits:  # int8 (TFLM arithmetic) loses at most 1 point per exit
        assert e.accuracy_alone_int8 >= e.accuracy_alone - 0.01, e
    assert report.model_bytes["tflite_int8"] < report.model_bytes["tflite"] / 2
    assert report.int8_cascade_accuracy >= report.cascade_accuracy - 0.01
    bundle = load_bundle(tmp_path / "demo" / "bundle")
    assert bundle.exits[0]["policy"]["threshold"] is not None
    assert (tmp_path / "demo" / "model.pt").is_file() and (tmp_path / "demo" / "test.npz").is_file()


def test_demo_without_out_leaves_nothing(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    report = run_demo(None, epochs=2)
    assert report.bundle is None
    assert list(tmp_path.iterdir()) == []


def test_training_is_deterministic() -> None:
    data = load_digits_splits(seed=1)
    states = []
    for _ in range(2):
        seed_everything(7)
        model = build_model()
        train_multi_exit(model, data.x_train[:200], data.y_train[:200],
                         TrainConfig(epochs=2, seed=7))
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_splits_are_disjoint_and_stratified() -> None:
    data = load_digits_splits()
    total = len(data.x_train) + len(data.x_val) + len(data.x_test)
    assert total == 1797
    assert set(np.unique(data.y_test)) == set(range(10))
    assert data.x_train.max() <= 1.0 and data.x_train.min() >= 0.0
