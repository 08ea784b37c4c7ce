"""The demo end to end (CNN and ViT), and the determinism of training."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eedge.examples.demo import run_demo
from eedge.examples.digits import load_digits_splits
from eedge.examples.digits_model import build_model
from eedge.examples.vit_model import build_model as build_vit
from eedge.ir.bundle import Bundle, load_bundle
from eedge.train.multi_exit import TrainConfig, seed_everything, train_multi_exit

sys.path.insert(0, str(Path(__file__).parents[1]))

from cli_runner import run_cli  # noqa: E402


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
    report = run_demo(None, epochs=2, firmware_target="host")  # the build's files too
    assert report.bundle is None
    assert list(tmp_path.iterdir()) == []
    if report.device is not None:  # host C: decisions, no instruction counts or flash
        assert report.device["same_decisions_as_python"] is True
        assert report.device["stage_instructions"] is None
        assert report.device["flash_bytes"] is None and report.device["arena_bytes"] > 0


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


@pytest.mark.slow
def test_vit_demo_runs_the_transformer_through_every_path(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """``eedge demo --model vit``: the same path with LayerNorm, attention and GELU in it.

    Three epochs (the default is 15) keep it quick: the point is that every step runs
    and agrees (int8 reference vs the generated C), not the accuracy.
    """
    code, out, err = run_cli(capsys, "demo", "--model", "vit", "--epochs", "3", "--out",
                             str(tmp_path / "vit"), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["model"] == "vit" and report["test_samples"] == 360
    assert [e["stage"] for e in report["exits"]] == [0, 1, 2]
    assert report["final_exit_accuracy"] > 0.5     # ten classes: well above chance already
    assert abs(sum(e["exit_rate"] for e in report["exits"]) - 1.0) < 1e-9
    assert abs(sum(report["int8_exit_rates"]) - 1.0) < 1e-9
    assert 0 < report["expected_macs"] <= report["full_macs"]
    assert report["model_bytes"]["tflite_int8"] < report["model_bytes"]["tflite"] / 1.5
    for e in report["exits"]:
        assert e["accuracy_alone_int8"] >= e["accuracy_alone"] - 0.05, e
    bundle = load_bundle(tmp_path / "vit" / "bundle")
    # attention between activations, LayerNorm's statistics, Softmax over the tokens
    assert {"BATCH_MATMUL", "MEAN", "RSQRT", "SOFTMAX"} <= _builtins(bundle)
    device = report["device"]
    if device is None:  # no arm-none-eabi-gcc or QEMU here
        assert report["device_skipped"]
        return
    assert device["same_decisions_as_python"] is True
    assert device["accuracy"] == pytest.approx(report["int8_cascade_accuracy"])
    # every stage measured, even one the calibrated cascade never reaches
    assert len(device["stage_instructions"]) == 3 and min(device["stage_instructions"]) > 0
    assert device["instructions_per_inference"] <= device["instructions_all_stages"]
    assert device["flash_bytes"] > device["weight_bytes"] > 0 and device["arena_bytes"] > 0


def _builtins(bundle: Bundle) -> set[str]:
    """The TFLite operators the bundle's int8 stages use."""
    from eedge.frontends.tflite_frontend import read_tflite_bytes

    names: set[str] = set()
    for stage in bundle.stages:
        graph, _ = read_tflite_bytes((bundle.path / stage["files"]["tflite_int8"]).read_bytes())
        names |= {node.op_type for node in graph.nodes}
    return names


def test_vit_training_is_deterministic() -> None:
    data = load_digits_splits(seed=1)
    states = []
    for _ in range(2):
        seed_everything(3)
        model = build_vit()
        train_multi_exit(model, data.x_train[:128], data.y_train[:128],
                         TrainConfig(epochs=1, seed=3))
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_qute_is_a_cnn_demo(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _out, err = run_cli(capsys, "demo", "--qute", "--model", "vit", "--out",
                              str(tmp_path / "q"))
    assert code == 2 and "--qute" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "q").exists()
