"""Int8 bundles of the zoo architectures, shared by the code generator tests (cached)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).parents[1]))

from conftest import exported_onnx  # noqa: E402
from zoo import example_input  # noqa: E402

from eedge.export import export_onnx  # noqa: E402
from eedge.ir.bundle import Bundle  # noqa: E402
from eedge.policies.apply import write_thresholds  # noqa: E402
from eedge.policies.criteria import confidence  # noqa: E402
from eedge.runtime.cascade import Cascade  # noqa: E402

_BUNDLES: dict[str, Bundle] = {}


def int8_bundle(name: str, root: Path) -> Bundle:
    """An int8 bundle with thresholds that send samples to every exit."""
    if name not in _BUNDLES:
        source = root / f"{name}.onnx"
        onnx.save(exported_onnx(name), source)
        bundle = export_onnx(source, root / f"{name}-bundle", int8=True,
                             calibration=example_input(seed=1, batch=64, name=name),
                             force=True).bundle
        logits = Cascade(bundle, runtime="int8-reference").run_all_exits(
            example_input(seed=2, batch=64, name=name))
        thresholds = [float(np.median(confidence(lg))) for lg in logits[:-1]] + [None]
        _BUNDLES[name] = write_thresholds(bundle, thresholds, "test: medians")
    return _BUNDLES[name]
