"""Exit criteria: how sure an exit is, as a score where higher means more confident.

Three criteria, each in [0, 1] for float logits, and the rule is always
"exit when score >= threshold":
- ``max_softmax``: the largest class probability;
- ``margin``: top-1 minus top-2 probability;
- ``entropy``: 1 - H(p) / ln(C), so a flat distribution scores 0 and a one-hot 1.
"""

from __future__ import annotations

import numpy as np

CRITERIA = ("max_softmax", "margin", "entropy")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float64 for stable ties)."""
    shifted = logits.astype(np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=-1, keepdims=True)


def score_from_probabilities(probs: np.ndarray, criterion: str) -> np.ndarray:
    if criterion == "max_softmax":
        return probs.max(axis=-1)
    if criterion == "margin":
        top2 = np.sort(probs, axis=-1)[..., -2:] if probs.shape[-1] > 1 else \
            np.concatenate([np.zeros_like(probs), probs], axis=-1)
        return top2[..., 1] - top2[..., 0]
    if criterion == "entropy":
        classes = probs.shape[-1]
        if classes < 2:
            return np.ones(probs.shape[:-1])
        p = np.clip(probs, 1e-300, 1.0)
        entropy = -(probs * np.log(p)).sum(axis=-1)
        return 1.0 - entropy / np.log(classes)
    raise ValueError(f"unknown exit criterion {criterion!r}; known: {', '.join(CRITERIA)}")


def confidence(logits: np.ndarray, criterion: str = "max_softmax") -> np.ndarray:
    """Per-sample score in [0, 1]; higher means more sure."""
    return score_from_probabilities(softmax(logits), criterion)
