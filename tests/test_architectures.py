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
from device_compare import assert_c_bit_exact, assert_verified, cli_json
from zoo_modern import ARCHITECTURES, digits16, export_default, train

BIT_EXACT_SAMPLES = 100
MISSING: dict[str, str] = {}
"""Architecture -> the operator (path) that keeps it from running end to end."""


def _params() -> list[object]:
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=MISSING[name]))
            if name in MISSING else name for name in sorted(ARCHITECTURES)]


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

    exported = cli_json(capsys, "export", str(source), "--format", "onnx,tflite", "--int8",
                        "--calib", str(calib), "--out", str(bundle))
    assert exported
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert len(manifest["exits"]) >= 2
    assert_verified(manifest)

    tflm = cli_json(capsys, "run", str(bundle), "--input", str(test), "--runtime", "int8-tflm")
    assert tflm["accuracy"] > 0.5, f"int8 accuracy {tflm['accuracy']} on held-out digits"

    few = tmp_path / "few.npz"
    np.savez(few, x=data.x_test[:8], y=data.y_test[:8])
    device = cli_json(capsys, "run", str(bundle), "--input", str(few), "--target",
                      "qemu-cortex-m4")
    assert device["predictions"] == tflm["predictions"][:8]

    # the C runtime on the Cortex-M4: every stage output equals TFLite Micro's bytes
    assert_c_bit_exact(bundle, data.x_test[:BIT_EXACT_SAMPLES], engine="tflm")
