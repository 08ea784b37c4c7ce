"""Modern edge architectures (tests/zoo_modern.py) through every eedge path, as a user runs them.

Per architecture: train a few seconds on digits, ``torch.onnx.export`` it the
default way, then through the CLI ``eedge export --format onnx,tflite --int8``
(whose verification must report staged == whole for ONNX, float TFLite and
int8), ``eedge run --runtime int8-tflm`` and ``eedge run --target
qemu-cortex-m4``; finally the generated C runtime on the Cortex-M4 (QEMU) must
give every output of every stage byte for byte as TFLite Micro does on each
stage's .tflite, for 100 held-out digits.

An architecture whose operators are not all supported yet is marked
``xfail(strict=True)`` with the missing operator as reason, so the mark must
go as soon as the operator lands.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli
from zoo_modern import ARCHITECTURES, digits16, export_default, train

from eedge.codegen.device_run import run_on_target
from eedge.codegen.inputs import device_samples
from eedge.codegen.model_source import load_codegen_model
from eedge.runtime.interpreters import TFLMModel
from eedge.targets import load_target

BIT_EXACT_SAMPLES = 100
MISSING: dict[str, str] = {}
"""Architecture -> the operator (path) that keeps it from running end to end."""


def _params() -> list[object]:
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=MISSING[name]))
            if name in MISSING else name for name in sorted(ARCHITECTURES)]


def _cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, f"eedge {' '.join(args[:1])} failed (exit {code}): {err.strip()}"
    return json.loads(out)


def _assert_verified(manifest: dict) -> None:
    """The export's own verification: staged == whole on every format it wrote."""
    report = manifest["verification"]
    assert report["onnx"]["max_abs_diff"] <= report["onnx"]["tolerance"], report["onnx"]
    assert report["tflite"]["max_abs_diff"] <= report["tflite"]["tolerance"], report["tflite"]
    int8 = report["tflite_int8"]
    assert int8["staged_vs_monolithic"]["identical"] is True, int8
    assert int8["reference_vs_tflm"]["identical"] is True, int8
    assert int8["reference_vs_tflm"]["tensors_compared"] > 0


def _tflm_stage_outputs(bundle: Path, manifest: dict, x_int8: np.ndarray) -> dict[str, np.ndarray]:
    """Every stage's int8 outputs from TFLite Micro, stage by stage, fed its own hand-offs."""
    store: dict[str, np.ndarray] = {}
    for stage in manifest["stages"]:
        io = stage["io"]["tflite_int8"]
        feeds = []
        for i, spec in enumerate(io["inputs"]):
            value = x_int8 if stage["index"] == 0 and i == 0 else store[spec["name"]]
            feeds.append(value.reshape([len(x_int8)] + spec["shape"][1:]))
        data = (bundle / stage["files"]["tflite_int8"]).read_bytes()
        outs = TFLMModel(data, len(io["outputs"])).run(feeds)
        store.update({spec["name"]: out for spec, out in zip(io["outputs"], outs)})
    return store


@pytest.mark.slow
@pytest.mark.parametrize("name", _params())
def test_architecture_end_to_end(name: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = digits16(name)
    model = train(name, data)
    source = export_default(model, tmp_path / f"{name}.onnx")
    calib, test = tmp_path / "calib.npy", tmp_path / "test.npz"
    np.save(calib, data.x_val[:100])
    np.savez(test, x=data.x_test, y=data.y_test)
    bundle = tmp_path / "bundle"

    exported = _cli_json(capsys, "export", str(source), "--format", "onnx,tflite", "--int8",
                         "--calib", str(calib), "--out", str(bundle))
    assert exported
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert len(manifest["exits"]) >= 2
    _assert_verified(manifest)

    tflm = _cli_json(capsys, "run", str(bundle), "--input", str(test), "--runtime", "int8-tflm")
    assert tflm["accuracy"] > 0.5, f"int8 accuracy {tflm['accuracy']} on held-out digits"

    few = tmp_path / "few.npz"
    np.savez(few, x=data.x_test[:8], y=data.y_test[:8])
    device = _cli_json(capsys, "run", str(bundle), "--input", str(few), "--target",
                       "qemu-cortex-m4")
    assert device["predictions"] == tflm["predictions"][:8]

    # the C runtime on the Cortex-M4: every stage output equals TFLite Micro's bytes
    codegen = load_codegen_model(bundle)
    x = data.x_test[:BIT_EXACT_SAMPLES]
    run = run_on_target(codegen, load_target("qemu-cortex-m4"), x)
    samples = device_samples(x, tuple(int(d) for d in codegen.graph.tensors[codegen.input].shape),
                             codegen.input_quant.scale[0], codegen.input_quant.zero_point[0],
                             codegen.input_layout)
    reference = _tflm_stage_outputs(bundle, manifest, samples)
    assert len(run.run.samples) == BIT_EXACT_SAMPLES
    compared = 0
    for n, sample in enumerate(run.run.samples):
        assert sample.stages_run == len(codegen.stages), "no thresholds: every stage runs"
        for stage, outputs in zip(codegen.stages, sample.stage_outputs):
            for tensor, got in zip(stage.outputs, outputs):
                expected = reference[tensor][n].reshape(-1)
                assert np.array_equal(got, expected), f"sample {n} stage {stage.index} {tensor}"
                compared += 1
    assert compared >= BIT_EXACT_SAMPLES * len(codegen.stages)
