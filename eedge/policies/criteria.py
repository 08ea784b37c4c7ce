"""Exit criteria: how sure an exit is, as a score where higher means more confident.

Four criteria, each in [0, 1] for float logits, and the rule is always
"exit when score >= threshold":
- ``max_softmax``: the largest class probability;
- ``margin``: top-1 minus top-2 probability;
- ``entropy``: 1 - H(p) / ln(C), so a flat distribution scores 0 and a one-hot 1;
- ``gate``: sigmoid of a learned gate logit (JEI-DNN style), for exits exported
  with a gate: their tensor holds the C class logits and then the gate logit
  (one extra column), so a model keeps one output per exit. The gate is not a
  function of the class probabilities: it needs the exit tensor itself.
"""

from __future__ import annotations

import numpy as np

CRITERIA = ("max_softmax", "margin", "entropy", "gate")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float64 for stable ties)."""
    shifted = logits.astype(np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in float64, without overflow warnings for large |x|."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def split_gate(values: np.ndarray, gate_column: int | None
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """An exit tensor -> (class columns, gate column or None for an exit without a gate)."""
    if gate_column is None:
        return values, None
    return values[..., :gate_column], values[..., gate_column]


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
    if criterion == "gate":
        raise ValueError("the gate criterion scores the gate logit, not the class "
                         "probabilities: use gate_score")
    raise ValueError(f"unknown exit criterion {criterion!r}; known: {', '.join(CRITERIA)}")


def gate_score(gate_logits: np.ndarray) -> np.ndarray:
    """The gate criterion's score: the probability of exiting, sigmoid(gate logit)."""
    return sigmoid(gate_logits)


def confidence(logits: np.ndarray, criterion: str = "max_softmax") -> np.ndarray:
    """Per-sample score in [0, 1]; higher means more sure.

    For ``gate`` the logits are a gated exit's whole tensor (gate logit last).
    """
    if criterion == "gate":
        return gate_score(np.asarray(logits)[..., -1])
    return score_from_probabilities(softmax(logits), criterion)
