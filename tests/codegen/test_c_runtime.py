"""The generated C runtime against the reference executor, TFLite Micro and Python.

Host builds (gcc, -Werror) run 200 inputs per model; QEMU builds (Cortex-M4
with the DSP path and without, Cortex-M7) run a subset. Every output of
every stage must be byte-identical, and the cascade's exit decisions must
equal the Python int8 runtime's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from int8_bundles import int8_bundle
from zoo import example_input

from eedge.codegen.device_run import run_on_target
from eedge.codegen.inputs import device_samples
from eedge.codegen.model_source import CodegenModel, load_codegen_model
from eedge.reference.executor import execute
from eedge.runtime.cascade import Cascade
from eedge.runtime.interpreters import TFLMModel
from eedge.targets import load_target

ARCHITECTURES = ["sequential", "residual", "branchy", "depthwise", "audio1d"]


@pytest.fixture(scope="module")
def bundle_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("codegen-bundles")
MLPERF = Path(__file__).resolve().parents[3] / "shared" / "models" / "mlperf_tiny"


def assert_matches_reference(model: CodegenModel, samples: np.ndarray, run) -> None:  # type: ignore[no-untyped-def]
    env = execute(model.graph, {model.input: samples.reshape(
        [len(samples)] + [int(d) for d in model.graph.tensors[model.input].shape[1:]])})
    assert len(run.run.samples) == len(samples)
    for n, sample in enumerate(run.run.samples):
        for stage, outputs in zip(model.stages, sample.stage_outputs):
            for name, got in zip(stage.outputs, outputs):
                expected = env[name][n].reshape(-1)  # whole outputs, however large
                assert np.array_equal(got, expected), f"sample {n} {stage.index} {name}"


def float_inputs(name: str, count: int) -> np.ndarray:
    return example_input(seed=11, batch=count, name=name)


def quantized(model: CodegenModel, x: np.ndarray) -> np.ndarray:
    """The int8 samples the firmware receives for float inputs ``x``."""
    return device_samples(x, tuple(int(d) for d in model.graph.tensors[model.input].shape),
                          model.input_quant.scale[0], model.input_quant.zero_point[0],
                          model.input_layout)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_host_build_is_bit_exact_and_decides_like_python(name: str, bundle_root: Path) -> None:
    bundle = int8_bundle(name, bundle_root)
    model = load_codegen_model(bundle.path)
    x = float_inputs(name, 200)
    run = run_on_target(model, load_target("host"), x)
    samples = quantized(model, x)
    assert_matches_reference(model, samples, run)
    python = Cascade(bundle, runtime="int8-reference").infer(x)
    assert np.array_equal(run.exit_index, python.exit_index)
    assert np.array_equal(run.predictions, python.predictions)
    assert len(set(run.exit_index.tolist())) > 1, "thresholds should spread samples over exits"
    # and the stage files agree with TFLite Micro on the same inputs
    store = Cascade(bundle, runtime="int8-tflm").run_all_exits(x, raw=True)
    for k, stage_index in enumerate(run.project.exit_stages):
        device = np.stack([s.stage_outputs[stage_index][0] for s in run.run.samples])
        assert np.array_equal(device, store[k].reshape(device.shape))


@pytest.mark.skipif(not MLPERF.is_dir(), reason="../shared/models/mlperf_tiny is absent")
def test_host_build_of_a_standard_tflite_matches_tflite_micro() -> None:
    path = MLPERF / "kws_ref_model.tflite"
    model = load_codegen_model(path)
    shape = [int(d) for d in model.graph.tensors[model.input].shape]
    x = np.random.default_rng(3).integers(-128, 128, [200] + shape[1:], dtype=np.int8)
    run = run_on_target(model, load_target("host"), x)
    assert_matches_reference(model, x.reshape(200, -1), run)
    tflm = TFLMModel(path.read_bytes(), 1).run([x])[0]
    device = np.stack([s.stage_outputs[-1][0] for s in run.run.samples])
    assert np.array_equal(device, tflm.reshape(device.shape))


@pytest.mark.parametrize("target, dsp", [("qemu-cortex-m4", True), ("qemu-cortex-m4", False),
                                         ("qemu-cortex-m7", True)])
def test_qemu_build_gives_the_same_bytes(target: str, dsp: bool, bundle_root: Path) -> None:
    bundle = int8_bundle("residual", bundle_root)
    model = load_codegen_model(bundle.path)
    x = float_inputs("residual", 6)
    run = run_on_target(model, load_target(target), x, dsp=dsp)
    samples = quantized(model, x)
    assert_matches_reference(model, samples, run)
    python = Cascade(bundle, runtime="int8-reference").infer(x)
    assert np.array_equal(run.exit_index, python.exit_index)
    summary = run.summary()
    assert summary["dsp"] is dsp
    assert 0 < summary["stack_used_bytes"] < summary["stack_reserved_bytes"]
    assert all(t > 0 for t in summary["stage_ticks_mean"])


@pytest.mark.parametrize("dsp", [True, False])
def test_qemu_runs_the_1d_audio_net_bit_exactly(dsp: bool, bundle_root: Path) -> None:
    """Conv1d/pool1d lowered to 1 x k kernels: the Cortex-M4 gives the reference's bytes."""
    bundle = int8_bundle("audio1d", bundle_root)
    model = load_codegen_model(bundle.path)
    assert model.input_layout == "NCL"
    x = float_inputs("audio1d", 6)
    run = run_on_target(model, load_target("qemu-cortex-m4"), x, dsp=dsp)
    assert_matches_reference(model, quantized(model, x), run)
    python = Cascade(bundle, runtime="int8-reference").infer(x)
    assert np.array_equal(run.exit_index, python.exit_index)
    assert np.array_equal(run.predictions, python.predictions)
    assert run.summary()["dsp"] is dsp


@pytest.mark.parametrize("criterion, window", [("max_softmax", False), ("margin", False),
                                               ("entropy", False), ("margin", True)])
def test_c_decisions_equal_python_under_every_criterion(criterion: str, window: bool,
                                                        bundle_root: Path,
                                                        tmp_path: Path) -> None:
    import shutil

    from eedge.ir.bundle import load_bundle, update_manifest
    from eedge.policies.criteria import confidence

    source = int8_bundle("depthwise", bundle_root)
    copy = tmp_path / "b"
    shutil.copytree(source.path, copy)
    x = float_inputs("depthwise", 200)
    logits = Cascade(load_bundle(copy), runtime="int8-reference").run_all_exits(x)
    thresholds = [float(np.median(confidence(lg, criterion))) for lg in logits[:-1]] + [None]
    lows = [float(np.quantile(confidence(lg, criterion), 0.2)) if window else None
            for lg in logits[:-1]] + [None]

    def change(manifest: dict) -> None:
        for entry, t, low in zip(manifest["exits"], thresholds, lows):
            entry["policy"] = {"criterion": criterion, "threshold": t, "window_low": low}

    bundle = update_manifest(load_bundle(copy), change)
    run = run_on_target(load_codegen_model(bundle.path), load_target("host"), x)
    python = Cascade(bundle, runtime="int8-reference").infer(x)
    assert np.array_equal(run.exit_index, python.exit_index)
    assert np.array_equal(run.predictions, python.predictions)
    rejected = np.array([s.rejected for s in run.run.samples])
    assert np.array_equal(rejected, python.rejected)
    assert rejected.any() == window
    assert len(set(run.exit_index.tolist())) > 1 or window


def test_budget_policy_on_the_device_equals_python(bundle_root: Path) -> None:
    from eedge.policies.budget import IntegerBudgetController, run_budgeted_int8

    bundle = int8_bundle("sequential", bundle_root)
    model = load_codegen_model(bundle.path)
    budget = 0.6 * model.exit_costs[-1]
    model.budget = {"macs": budget}
    x = float_inputs("sequential", 200)
    run = run_on_target(model, load_target("host"), x)
    python = run_budgeted_int8(Cascade(bundle, runtime="int8-reference"), x,
                               IntegerBudgetController(budget, model.exit_costs))
    assert np.array_equal(run.exit_index, python.exit_index)
    assert np.array_equal(run.predictions, python.predictions)
    average = float(np.mean(np.array(model.exit_costs)[run.exit_index]))
    assert abs(average - budget) / budget < 0.2
