"""End-to-end checks shared by the zoo tests: the CLI's JSON, export verification, and the
generated C runtime on a target compared byte for byte with a bundle's int8 stages.

The C runtime is compared stage by stage: every output of every stage it ran
must equal what the oracle computes on that stage's .tflite when fed the
oracle's own hand-offs (so a difference points at the first stage that
differs). The oracle is TFLite Micro wherever it has the kernels, and eedge's
int8 reference executor for bundles holding an op TFLite Micro lacks (GELU),
which export itself verifies node by node against LiteRT's reference kernels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_runner import run_cli

from eedge.codegen.device_run import DeviceRun, run_on_target
from eedge.codegen.inputs import device_samples
from eedge.codegen.model_source import CodegenModel, load_codegen_model
from eedge.runtime.stage_runners import ReferenceRunner
from eedge.targets import load_target


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    """Run ``eedge ARGS --json`` in-process; fail with its stderr unless it exits 0."""
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, f"eedge {' '.join(args[:1])} failed (exit {code}): {err.strip()}"
    return json.loads(out)


def assert_verified(manifest: dict[str, Any]) -> None:
    """The export's own verification: staged == whole on every format it wrote."""
    report = manifest["verification"]
    for fmt in ("onnx", "tflite"):
        if fmt in report:
            assert report[fmt]["max_abs_diff"] <= report[fmt]["tolerance"], report[fmt]
    int8 = report["tflite_int8"]
    assert int8["staged_vs_monolithic"]["identical"] is True, int8
    assert int8["reference_vs_tflm"]["identical"] is True, int8
    assert int8["reference_vs_tflm"]["tensors_compared"] > 0


def stage_outputs(bundle: Path, manifest: dict[str, Any], x_int8: np.ndarray,
                  engine: str = "tflm") -> dict[str, np.ndarray]:
    """Every int8 stage's outputs, stage by stage, each fed the engine's own hand-offs.

    ``engine``: ``tflm`` (TFLite Micro's interpreter) or ``reference`` (eedge's
    numpy executor, for bundles with ops TFLite Micro has no kernel for).
    """
    from eedge.runtime.interpreters import TFLMModel

    store: dict[str, np.ndarray] = {}
    for stage in manifest["stages"]:
        io = stage["io"]["tflite_int8"]
        feeds = []
        for i, spec in enumerate(io["inputs"]):
            value = x_int8 if stage["index"] == 0 and i == 0 else store[spec["name"]]
            feeds.append(value.reshape([len(x_int8)] + spec["shape"][1:]))
        path = bundle / stage["files"]["tflite_int8"]
        runner = TFLMModel(path.read_bytes(), len(io["outputs"])) if engine == "tflm" \
            else ReferenceRunner.from_file(path)
        outs = runner.run(feeds)
        store.update({spec["name"]: out for spec, out in zip(io["outputs"], outs)})
    return store


def device_run(bundle: Path, x: np.ndarray, target: str = "qemu-cortex-m4",
               dsp: bool | None = None) -> tuple[CodegenModel, DeviceRun, np.ndarray]:
    """The generated C runtime on ``target`` (every stage runs: no thresholds).

    Returns the model, the run and the int8 samples it was given.
    """
    codegen = load_codegen_model(bundle)
    codegen.thresholds = [None] * len(codegen.thresholds)
    run = run_on_target(codegen, load_target(target), x, dsp=dsp)
    samples = device_samples(x, tuple(int(d) for d in codegen.graph.tensors[codegen.input].shape),
                             codegen.input_quant.scale[0], codegen.input_quant.zero_point[0],
                             codegen.input_layout)
    return codegen, run, samples


def assert_c_bit_exact(bundle: Path, x: np.ndarray, engine: str = "tflm",
                       target: str = "qemu-cortex-m4", dsp: bool | None = None) -> int:
    """Every output of every stage the C runtime computes equals ``engine``'s bytes.

    Returns the number of tensors compared (at least one per stage per sample).
    """
    manifest = json.loads((bundle / "manifest.json").read_text())
    codegen, run, samples = device_run(bundle, x, target, dsp)
    reference = stage_outputs(bundle, manifest, samples, engine)
    assert len(run.run.samples) == len(x)
    compared = 0
    for n, sample in enumerate(run.run.samples):
        assert sample.stages_run == len(codegen.stages), "no thresholds: every stage runs"
        for stage, outputs in zip(codegen.stages, sample.stage_outputs):
            for tensor, got in zip(stage.outputs, outputs):
                expected = reference[tensor][n].reshape(-1)
                assert np.array_equal(got, expected), (
                    f"sample {n} stage {stage.index} {tensor}: C differs from {engine} at "
                    f"{int(np.argmax(got != expected))} of {expected.size}")
                compared += 1
    assert compared >= len(x) * len(codegen.stages)
    return compared


def assert_c_equals_reference(model: CodegenModel, x: np.ndarray, target: str,
                              dsp: bool | None = None) -> dict[str, Any]:
    """Run ``model``'s C on ``target`` and compare every stage's first output, sample by
    sample, with eedge's int8 reference executor on the same int8 inputs; the run's summary.
    """
    from eedge.reference.executor import execute

    run = run_on_target(model, load_target(target), x, dsp=dsp)
    env = execute(model.graph, {model.input: x})
    for k, stage in enumerate(model.stages):
        device = np.stack([s.stage_outputs[k][0] for s in run.run.samples])
        expected = env[stage.outputs[0]]
        assert np.array_equal(device, expected.reshape(device.shape)), f"stage {k}"
    return run.summary()
