"""One cascade shared by the cascade tests: three independently trained digit CNNs
(small, medium, large; the large one resizes its input to 16x16), each exported the
way a user does (default ``torch.onnx.export``, weights in ``.onnx.data``), cascaded
into an ONNX + float TFLite + int8 bundle. Built once per test session (per worker).

Test modules import ``cascade_case`` from here (``from cascade_fixtures import
cascade_case``): a ``conftest.py`` in this folder would shadow ``tests/conftest.py``,
which other test modules import by name. Each importing module registers its own copy
of the fixture, so the built case is cached here, not by pytest's session scope."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from eedge.examples.cascade_members import SIZES, export_member, train_member
from eedge.examples.digits import DigitsSplits, load_digits_splits

EPOCHS = 8  # ~95% test accuracy per member; the tests need trained, not tuned, members


@dataclass
class CascadeCase:
    root: Path
    members: list[Path]       # small.onnx, medium.onnx, large.onnx (+ .onnx.data)
    modules: list[object]     # the trained torch modules
    data: DigitsSplits
    bundle: Path              # onnx, tflite, int8 stages
    val: Path                 # .npz with x, y (validation split)


_BUILT: list[CascadeCase] = []


@pytest.fixture(scope="session")
def cascade_case(tmp_path_factory: pytest.TempPathFactory) -> CascadeCase:
    if not _BUILT:
        _BUILT.append(_build_case(tmp_path_factory))
    return _BUILT[0]


def _build_case(tmp_path_factory: pytest.TempPathFactory) -> CascadeCase:
    from eedge.cascade import build_cascade

    root = tmp_path_factory.mktemp("cascade")
    data = load_digits_splits(seed=0)
    modules, paths = [], []
    for k, size in enumerate(SIZES):
        module = train_member(size, data.x_train, data.y_train, EPOCHS, seed=k)
        path = root / f"{size}.onnx"
        export_member(module, path)
        modules.append(module)
        paths.append(path)
    bundle = root / "bundle"
    build_cascade(paths, bundle, formats=("onnx", "tflite"), int8=True,
                  calibration=data.x_train[:256])
    val = root / "val.npz"
    np.savez(val, x=data.x_val, y=data.y_val)
    return CascadeCase(root, paths, modules, data, bundle, val)
