"""Classification, calibration and failure-detection metrics (numpy only).

All take class probabilities (N, C) and integer labels (N,). Failure detection
asks how well the confidence (max probability) separates correct predictions
from wrong ones: AUROC, and AUPRC with the *errors* as the positive class.
"""

from __future__ import annotations

import numpy as np

from eedge.errors import InputDataError

EPS = 1e-12


def _check(probs: np.ndarray, labels: np.ndarray) -> None:
    if len(labels) == 0:
        raise InputDataError("no samples to evaluate")
    if len(probs) != len(labels):
        raise InputDataError(f"{len(probs)} predictions for {len(labels)} labels")


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    _check(probs, labels)
    return float(np.mean(np.argmax(probs, axis=-1) == labels))


def macro_f1(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean F1 over the classes present in the labels or the predictions."""
    _check(probs, labels)
    predicted = np.argmax(probs, axis=-1)
    scores = []
    for c in np.union1d(labels, predicted):
        tp = np.sum((predicted == c) & (labels == c))
        fp = np.sum((predicted == c) & (labels != c))
        fn = np.sum((predicted != c) & (labels == c))
        scores.append(2 * tp / max(2 * tp + fp + fn, 1))
    return float(np.mean(scores))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared distance to the one-hot label (summed over classes)."""
    _check(probs, labels)
    onehot = np.eye(probs.shape[-1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=-1)))


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    _check(probs, labels)
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], EPS, 1.0))))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: |accuracy - confidence| per equal-width confidence bin, weighted by bin size."""
    _check(probs, labels)
    confidence = probs.max(axis=-1)
    correct = np.argmax(probs, axis=-1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def failure_auroc(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """P(a correct prediction is more confident than a wrong one); None if one kind is absent."""
    _check(probs, labels)
    confidence = probs.max(axis=-1)
    correct = np.argmax(probs, axis=-1) == labels
    n_pos, n_neg = int(correct.sum()), int((~correct).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _ranks(confidence)
    return float((ranks[correct].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def failure_auprc(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """Average precision of finding errors by low confidence; None without errors."""
    _check(probs, labels)
    wrong = np.argmax(probs, axis=-1) != labels
    if not wrong.any():
        return None
    order = np.argsort(probs.max(axis=-1), kind="mergesort")  # least confident first
    hits = wrong[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(np.sum(precision * hits) / hits.sum())


def uncertainty_report(probs: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    return {"accuracy": accuracy(probs, labels), "macro_f1": macro_f1(probs, labels),
            "brier": brier(probs, labels), "nll": nll(probs, labels),
            "ece": expected_calibration_error(probs, labels),
            "failure_auroc": failure_auroc(probs, labels),
            "failure_auprc": failure_auprc(probs, labels)}
