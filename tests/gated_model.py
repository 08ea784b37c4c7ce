"""A trained gated digits model and its int8 bundle, shared by the learned-gate tests.

Trained once per test worker with a short schedule (a few seconds), exported
with torch.onnx.export's defaults (outputs named exit0_gated, exit1_gated,
exit2, so eedge marks the gates from the names) and then by `eedge export`
with ONNX, float TFLite and int8 stages.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

from eedge.examples.corruptions import corrupt
from eedge.examples.gated_digits import TrainedGated, export_onnx, train_gated_digits
from eedge.export import export_onnx as eedge_export_onnx
from eedge.ir.bundle import Bundle, load_bundle, update_manifest


@functools.lru_cache(maxsize=1)
def trained() -> TrainedGated:
    return train_gated_digits(epochs=12, gate_epochs=8)


@functools.lru_cache(maxsize=1)
def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="eedge-gated-"))


@functools.lru_cache(maxsize=1)
def onnx_path() -> Path:
    """torch.onnx.export prints its phases on stdout: kept out of the CLI tests' capture."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return export_onnx(trained().model, _workdir() / "gated.onnx")


@functools.lru_cache(maxsize=1)
def bundle_path() -> Path:
    """The int8 bundle (ONNX, float TFLite and int8 stages); copy it before changing it."""
    out = _workdir() / "bundle"
    eedge_export_onnx(onnx_path(), out, formats=("onnx", "tflite"), int8=True,
                      calibration=trained().data.x_val, force=True)
    return out


def whole_onnx(x: np.ndarray) -> list[np.ndarray]:
    """Every exit of the user's ONNX file on ONNX Runtime (batch 1, as exported), row by row."""
    from eedge.verify.equivalence import whole_model_exits

    return whole_model_exits(onnx_path(), {"x": np.asarray(x, np.float32)}, dynamic_batch=False)


def inputs(count: int = 260) -> np.ndarray:
    """Test digits followed by noisy ones (severity 3): ``count`` samples."""
    data = trained().data
    clean = data.x_test[: min(count, len(data.x_test))]
    noisy = corrupt(data.x_test, "noise", 3, seed=1)[: count - len(clean)]
    return np.concatenate([clean, noisy])


def with_policy(copy: Path, criterion: str, thresholds: list[float | None],
                lows: list[float | None] | None = None) -> Bundle:
    """A copy of the bundle at ``copy`` with one criterion and per-exit thresholds."""
    import shutil

    shutil.copytree(bundle_path(), copy)
    lows = lows or [None] * len(thresholds)

    def change(manifest: dict) -> None:
        for entry, t, low in zip(manifest["exits"], thresholds, lows):
            entry["policy"] = {"criterion": criterion, "threshold": t, "window_low": low}

    return update_manifest(load_bundle(copy), change)
