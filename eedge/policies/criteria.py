"""Exit criteria: how confident an exit is, computed from its logits.

The cascade exits at the first exit whose confidence reaches its threshold.
"""

from __future__ import annotations

import numpy as np

CRITERIA = ("max_softmax",)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float64 for stable ties)."""
    shifted = logits.astype(np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=-1, keepdims=True)


def confidence(logits: np.ndarray, criterion: str = "max_softmax") -> np.ndarray:
    """Per-sample confidence in [0, 1]; higher means more sure."""
    if criterion == "max_softmax":
        return softmax(logits).max(axis=-1)
    raise ValueError(f"unknown exit criterion {criterion!r}; known: {', '.join(CRITERIA)}")
