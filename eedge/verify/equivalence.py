"""Check that the staged bundle computes exactly what the whole model does.

The reference is the *source* model file run whole by ONNX Runtime, not
eedge's own re-serialization of it, so a bug in the IR round trip or in
partitioning shows up as a difference here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import ModelError, VerificationError
from eedge.ir.bundle import Bundle
from eedge.runtime.cascade import Cascade, make_session, prepare_inputs

TOLERANCE = 1e-4


@dataclass
class EquivalenceReport:
    samples: int
    max_abs_diff: float
    per_exit_max_abs_diff: list[float]
    tolerance: float

    def to_json(self) -> dict[str, Any]:
        return {"reference": "whole source model on onnxruntime",
                "samples": self.samples, "max_abs_diff": self.max_abs_diff,
                "per_exit_max_abs_diff": self.per_exit_max_abs_diff,
                "tolerance": self.tolerance}


def random_inputs(inputs_spec: Sequence[dict[str, Any]], count: int,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal inputs shaped like the model's (batch = ``count``)."""
    rng = np.random.default_rng(seed)
    return {spec["name"]: rng.standard_normal(
        [count] + [int(d) for d in spec["shape"][1:]]).astype(spec["dtype"])
        for spec in inputs_spec}


def whole_model_exits(model_path: Path, feeds: dict[str, np.ndarray],
                      dynamic_batch: bool) -> list[np.ndarray]:
    session = make_session(model_path, threads=1)
    if dynamic_batch:
        return session.run(None, feeds)
    rows = next(iter(feeds.values())).shape[0]
    per_row = [session.run(None, {k: v[r:r + 1] for k, v in feeds.items()})
               for r in range(rows)]
    return [np.concatenate([row[i] for row in per_row]) for i in range(len(per_row[0]))]


def check_staged_equals_whole(bundle: Bundle, user_inputs: Sequence[np.ndarray] = (),
                              random_count: int = 16, tolerance: float = TOLERANCE
                              ) -> EquivalenceReport:
    """Run staged and whole on random plus user inputs; raise above ``tolerance``."""
    cascade = Cascade(bundle, check_finite=False)  # non-finite outputs: require_finite below
    batches = [random_inputs(cascade.inputs, random_count)]
    batches += [prepare_inputs(cascade.inputs, x) for x in user_inputs]
    whole_path = bundle.file(bundle.manifest["model"]["file"])
    per_exit = [0.0] * len(cascade.exits)
    samples = 0
    for feeds in batches:
        staged = cascade.run_all_exits(feeds)
        whole = whole_model_exits(whole_path, feeds, cascade.dynamic_batch)
        for k, (a, b) in enumerate(zip(staged, whole)):
            if a.shape != b.shape:
                raise VerificationError(f"exit {k}: staged output shape {a.shape} differs "
                                        f"from the whole model's {b.shape}")
            require_finite(a, f"the staged model's exit {k}")
            require_finite(b, f"the whole model's exit {k}")
            per_exit[k] = max(per_exit[k], float(np.max(np.abs(a - b))) if a.size else 0.0)
        samples += next(iter(feeds.values())).shape[0]
    report = EquivalenceReport(samples, max(per_exit), per_exit, tolerance)
    if not np.isfinite(report.max_abs_diff) or report.max_abs_diff > tolerance:
        worst = int(np.argmax(per_exit))
        raise VerificationError(
            f"staged execution differs from the whole model: max |diff| "
            f"{report.max_abs_diff:.3g} at exit {worst} exceeds {tolerance:g}; this is an "
            "eedge bug: please report it with the model")
    return report


def require_finite(values: np.ndarray, what: str) -> None:
    """NaN compares false with everything, so max(diff, nan) would hide it: refuse it.

    A model that answers NaN or inf on ordinary inputs (NaN weights, an overflow)
    cannot be verified and would answer garbage at run time.
    """
    if values.size and not np.all(np.isfinite(values)):
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise ModelError(f"{what} is NaN or infinite on {bad} of {values.size} values for "
                         "the check inputs; the model's weights or arithmetic are not finite: "
                         "fix the model (check its weights for NaN/inf) and export again")
