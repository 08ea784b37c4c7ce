"""Learned gates in the generated C runtime: integer gate decisions, on the host and in QEMU,
identical to the Python int8 runtime's, and softmax/argmax over the class columns only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gated_model import inputs, with_policy

from eedge.codegen.device_run import run_on_target
from eedge.codegen.model_source import load_codegen_model
from eedge.errors import ModelError
from eedge.ir.bundle import Bundle, update_manifest
from eedge.policies.criteria import confidence, sigmoid
from eedge.runtime.cascade import Cascade
from eedge.targets import load_target


def _quantile_thresholds(x: np.ndarray, criterion: str, q: float) -> list[float | None]:
    from gated_model import bundle_path
    from eedge.ir.bundle import load_bundle

    cascade = Cascade(load_bundle(bundle_path()), runtime="int8-reference")
    logits = cascade.run_all_exits(x)[:-1]
    scores = [sigmoid(lg[:, -1]) if criterion == "gate" else
              confidence(cascade.class_logits(k, lg), criterion) for k, lg in enumerate(logits)]
    return [float(np.quantile(s, q)) for s in scores] + [None]


def _same_decisions(bundle: Bundle, x: np.ndarray, target: str) -> np.ndarray:
    run = run_on_target(load_codegen_model(bundle.path), load_target(target), x)
    python = Cascade(bundle, runtime="int8-reference").infer(x)
    assert np.array_equal(run.exit_index, python.exit_index)
    assert np.array_equal(run.predictions, python.predictions)
    assert np.array_equal(np.array([s.rejected for s in run.run.samples]), python.rejected)
    assert (run.predictions < 10).all(), "the gate column is never a class"
    return run.exit_index


@pytest.mark.parametrize("target", ["host", "qemu-cortex-m4"])
def test_gate_decisions_in_c_equal_python_int8(target: str, tmp_path: Path) -> None:
    x = inputs(260)
    bundle = with_policy(tmp_path / "b", "gate", _quantile_thresholds(x, "gate", 0.5))
    exits = _same_decisions(bundle, x, target)
    assert len(set(exits.tolist())) == 3, "thresholds at the medians use every exit"
    run = run_on_target(load_codegen_model(bundle.path), load_target("host"), x[:40])
    python = Cascade(bundle, runtime="int8-reference").infer(x[:40])
    early = python.exit_index < 2  # the C confidence of a gate decision is the int8 gate q
    quant = [bundle.exits[k]["gate"]["quant"] for k in range(2)]
    for n in np.flatnonzero(early):
        k = python.exit_index[n]
        scale, zp = quant[k]["scale"][0], quant[k]["zero_point"][0]
        q = run.run.samples[n].confidence
        assert python.confidence[n] == pytest.approx(sigmoid(np.float64((q - zp) * scale)))


def test_gate_with_a_window_rejects_alike(tmp_path: Path) -> None:
    x = inputs(220)
    bundle = with_policy(tmp_path / "b", "gate", _quantile_thresholds(x, "gate", 0.6),
                         _quantile_thresholds(x, "gate", 0.15)[:2] + [None])
    _same_decisions(bundle, x, "host")
    assert Cascade(bundle, runtime="int8-reference").infer(x).rejected.any()


def test_max_softmax_on_gated_exits_reads_the_classes_only(tmp_path: Path) -> None:
    x = inputs(220)
    bundle = with_policy(tmp_path / "b", "max_softmax",
                         _quantile_thresholds(x, "max_softmax", 0.5))
    exits = _same_decisions(bundle, x, "host")
    assert len(set(exits.tolist())) == 3


def test_codegen_refuses_the_gate_criterion_on_an_exit_without_gate(tmp_path: Path) -> None:
    bundle = with_policy(tmp_path / "b", "gate", [0.5, 0.5, None])

    def drop_gate(manifest: dict) -> None:
        del manifest["exits"][1]["gate"]
        manifest["exits"][1]["num_classes"] = 11
        manifest["exits"][1]["policy"]["criterion"] = "max_softmax"

    plain = update_manifest(bundle, drop_gate)
    model = load_codegen_model(plain.path)
    model.criteria[1] = "gate"
    with pytest.raises(ModelError, match="has no gate"):
        run_on_target(model, load_target("host"), inputs(2))
