"""Running-mean ensemble decisions with windows: the generated C equals the Python int8 runtimes.

A 3-exit int8 bundle decides on the running mean of its exits (int8 softmax
sums scored in integers, eedge.policies.running_mean), with a window on every
early exit and a selective threshold on the final one, so samples leave
accepted early, leave rejected early, go on, and are rejected at the end.
The C runtime on QEMU (Cortex-M4) must give the same exit, class, rejected
flag and integer score as eedge's int8 reference executor and TFLite Micro,
on 240 inputs, for every criterion.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from int8_bundles import int8_bundle
from zoo import example_input

from eedge.codegen.device_run import run_on_target
from eedge.codegen.model_source import load_codegen_model
from eedge.ir.bundle import Bundle, load_bundle, update_manifest
from eedge.policies import running_mean
from eedge.runtime.cascade import Cascade
from eedge.targets import load_target

SAMPLES = 240


@pytest.fixture(scope="module")
def running_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    root = tmp_path_factory.mktemp("running-mean")
    copy = root / "bundle"
    shutil.copytree(int8_bundle("sequential", root).path, copy)
    return update_manifest(load_bundle(copy),
                           lambda m: running_mean.set_running_mean(m, True))


def with_windows(bundle: Bundle, criteria: list[str], path: Path) -> Bundle:
    """Thresholds and windows at quantiles of the integer running-mean scores.

    Each edge is chosen as an integer score and stored as the float that maps
    back to exactly that integer (checked), as calibration does.
    """
    shutil.copytree(bundle.path, path)
    cascade = Cascade(load_bundle(path), runtime="int8-reference")
    x = example_input(seed=11, batch=128, name="sequential")
    raw = cascade.run_all_exits(x, raw=True)
    scales = [cascade.io[e["stage"]]["outputs"][0]["quant"]["scale"][0] for e in bundle.exits]
    members = list(range(len(raw)))
    policies = []
    for k, criterion in enumerate(criteria):
        scores, _ = running_mean.running_scores(raw, scales, members, criterion)
        classes = raw[k].shape[-1]

        def as_float(q: float, m: int = k + 1, c: str = criterion) -> float:
            return running_mean.sum_float_threshold(q, c, classes, m)

        usable = np.array([q for q in np.unique(scores[k]) if 0.0 <= as_float(q) <= 1.0])
        high, low = (float(np.quantile(usable, p, method="nearest")) for p in (0.6, 0.15))
        for q in (high, low):
            assert running_mean.sum_threshold_q(as_float(q), False, criterion, classes,
                                                k + 1) == q
        final = k == len(criteria) - 1
        policies.append({"criterion": criterion, "threshold": None if final else as_float(high),
                         "window_low": as_float(low)})

    def change(manifest: dict) -> None:
        for entry, policy in zip(manifest["exits"], policies):
            entry["policy"] = policy

    return update_manifest(load_bundle(path), change)


@pytest.mark.parametrize("criterion", ["max_softmax", "margin", "entropy"])
def test_qemu_decisions_equal_python_int8(criterion: str, running_bundle: Bundle,
                                          tmp_path: Path) -> None:
    bundle = with_windows(running_bundle, [criterion] * 3, tmp_path / "b")
    x = example_input(seed=12, batch=SAMPLES, name="sequential")
    python = Cascade(bundle, runtime="int8-reference").infer(x)
    tflm = Cascade(bundle, runtime="int8-tflm").infer(x)
    run = run_on_target(load_codegen_model(bundle.path), load_target("qemu-cortex-m4"), x)
    device_rejected = np.array([s.rejected for s in run.run.samples], dtype=bool)
    device_score = np.array([s.confidence for s in run.run.samples])
    for other in (python, tflm):
        assert np.array_equal(run.exit_index, other.exit_index)
        assert np.array_equal(run.predictions, other.predictions)
        assert np.array_equal(device_rejected, other.rejected)
        assert np.array_equal(device_score, other.confidence_q)
    # every kind of decision happened: accepted early, rejected early, deferred, rejected last
    early = python.exit_index < 2
    assert (early & ~python.rejected).any() and (early & python.rejected).any()
    assert (python.exit_index == 2).any() and (python.rejected & ~early).any()


def test_host_build_with_a_criterion_per_exit(running_bundle: Bundle, tmp_path: Path) -> None:
    bundle = with_windows(running_bundle, ["entropy", "margin", "max_softmax"], tmp_path / "b")
    x = example_input(seed=13, batch=SAMPLES, name="sequential")
    python = Cascade(bundle, runtime="int8-reference").infer(x)
    run = run_on_target(load_codegen_model(bundle.path), load_target("host"), x)
    assert np.array_equal(run.exit_index, python.exit_index)
    assert np.array_equal(run.predictions, python.predictions)
    assert np.array_equal(np.array([s.rejected for s in run.run.samples], dtype=bool),
                          python.rejected)
    assert np.array_equal(np.array([s.confidence for s in run.run.samples]),
                          python.confidence_q)
    assert len(set(python.exit_index.tolist())) == 3


def test_budget_policy_on_the_running_mean(running_bundle: Bundle, tmp_path: Path) -> None:
    """The budget offset moves running-mean thresholds alike on the device and in Python."""
    from eedge.policies.budget import IntegerBudgetController, run_budgeted_int8

    bundle = with_windows(running_bundle, ["max_softmax"] * 3, tmp_path / "b")
    model = load_codegen_model(bundle.path)
    budget = 0.5 * model.exit_costs[-1]
    model.budget = {"macs": budget}
    x = example_input(seed=14, batch=200, name="sequential")
    run = run_on_target(model, load_target("host"), x)
    python = run_budgeted_int8(Cascade(bundle, runtime="int8-reference"), x,
                               IntegerBudgetController(budget, model.exit_costs))
    assert np.array_equal(run.exit_index, python.exit_index)
    assert np.array_equal(run.predictions, python.predictions)
    assert len(set(python.exit_index.tolist())) > 1
