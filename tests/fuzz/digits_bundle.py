"""A small demo-like bundle for data and number tests: built in about a second.

The digits CNN of ``eedge demo`` (seeded, untrained: numbers don't matter here)
exported with the legacy TorchScript exporter, which takes a fraction of a
second where the demo's dynamo export takes several; the bundle has the same
structure (ONNX, float and int8 TFLite stages, three exits, thresholds set).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_digits_bundle(out: Path, samples: int = 24, keep_onnx: bool = False
                        ) -> tuple[Path, Path]:
    """Write ``out/bundle`` and ``out/data.npz`` (x, y of ``samples`` rows); return both.

    ``keep_onnx`` leaves the exported model at ``out/digits.onnx`` (for export cases).
    """
    import torch

    from eedge.examples.demo import load_digits_splits, seed_everything
    from eedge.examples.digits_model import build_model
    from eedge.export import export_onnx
    from eedge.ir.bundle import load_bundle
    from eedge.policies.apply import write_thresholds

    out.mkdir(parents=True, exist_ok=True)
    data = load_digits_splits(seed=0)
    seed_everything(0)
    model = build_model().eval()
    onnx_path = out / "digits.onnx"
    torch.onnx.export(model, (torch.from_numpy(data.x_val[:2]),), str(onnx_path), dynamo=False,
                      input_names=["input"], output_names=["exit0", "exit1", "exit2"],
                      dynamic_axes={"input": {0: "batch"}}, opset_version=17)
    result = export_onnx(onnx_path, out / "bundle", formats=("onnx", "tflite"), int8=True,
                         calibration=data.x_train[:64])
    write_thresholds(load_bundle(result.bundle.path), [0.3, 0.2, None], "test fixture")
    np.savez(out / "data.npz", x=data.x_test[:samples], y=data.y_test[:samples])
    if not keep_onnx:
        onnx_path.unlink()
    return out / "bundle", out / "data.npz"
