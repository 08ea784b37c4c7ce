"""What ``Cascade.infer`` returns (its own module: the batch code in eedge.runtime.cascade
and the one-sample path in eedge.runtime.cascade_one both build it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class CascadeResult:
    """What a cascade run decided, per sample, and what each stage cost."""

    predictions: np.ndarray       # (N,) predicted class
    probabilities: np.ndarray     # (N, C) softmax of the deciding exit
    exit_index: np.ndarray        # (N,) exit that decided
    confidence: np.ndarray        # (N,) criterion value at the deciding exit
    stage_seconds: list[float] = field(default_factory=list)   # wall time per stage
    stage_samples: list[int] = field(default_factory=list)     # rows that ran each stage
    rejected: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # window policy
    confidence_q: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # int8
    # ensemble: summed int8 probabilities of the winning class (-1 where no ensemble decided)
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # head bundles:
    handoff: dict[str, np.ndarray] = field(default_factory=dict)  # rows for the server

    def to_json(self) -> dict[str, Any]:
        return {"predictions": self.predictions.tolist(),
                "exit_index": self.exit_index.tolist(),
                "rejected": self.rejected.tolist(),
                "confidence": [round(float(c), 6) for c in self.confidence],
                "stage_seconds": self.stage_seconds, "stage_samples": self.stage_samples}


class _Deferred:
    """A field computed when first read, then an ordinary instance attribute (a non-data
    descriptor: once the instance's __dict__ holds the name, the descriptor is bypassed)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        obj._fill()
        return obj.__dict__[self.name]


class OneSampleResult(CascadeResult):
    """One sample's result (``Cascade.infer`` at batch 1): the same fields, values, dtypes
    and shapes as every other CascadeResult, made for a stream's speed.

    ``probabilities`` and ``confidence`` are computed when first read: the decision
    (exit, prediction, window rejection) is made in ``infer``, mostly from a scalar
    estimate of the score (eedge.runtime.cascade_one), and the exit's exact softmax
    and score, bit for bit the batch code's, take half a dozen numpy calls that a
    stream reading only the predictions does not need. Reading either computes both,
    once; afterwards they are plain attributes.

    ``predictions``, ``exit_index``, ``rejected``, ``confidence_q`` and ``pending``
    are shared read-only arrays (one per value): a fresh array costs as much as a
    small stage's decision. Copy them to modify them. Pickling and copying give a
    plain CascadeResult.
    """

    probabilities = _Deferred()  # type: ignore[assignment]
    confidence = _Deferred()  # type: ignore[assignment]

    def __init__(self, predictions: np.ndarray, exit_index: np.ndarray,
                 stage_seconds: list[float], stage_samples: list[int], rejected: np.ndarray,
                 confidence_q: np.ndarray, pending: np.ndarray,
                 fields: tuple[Callable[..., tuple[np.ndarray, np.ndarray]], tuple[Any, ...]]
                 ) -> None:
        # plain attribute stores (a dataclass __init__ or a dict update costs 2-4x more)
        self.predictions = predictions
        self.exit_index = exit_index
        self.stage_seconds = stage_seconds
        self.stage_samples = stage_samples
        self.rejected = rejected
        self.confidence_q = confidence_q
        self.pending = pending
        self.handoff = {}
        self._fields = fields

    def _fill(self) -> None:
        """Compute probabilities and confidence (a value set by the caller is kept)."""
        state = self.__dict__
        fields = state.get("_fields")
        if fields is None:  # computed already (by another thread, perhaps)
            return
        compute, args = fields
        probabilities, confidence = compute(*args)
        state.setdefault("probabilities", probabilities)
        state.setdefault("confidence", confidence)
        state.pop("_fields", None)

    def __reduce__(self) -> tuple[Any, ...]:
        return CascadeResult, tuple(getattr(self, f.name) for f in dataclasses.fields(self))
