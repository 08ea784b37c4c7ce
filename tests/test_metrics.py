"""Metrics against hand-computed values and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, log_loss, roc_auc_score

from eedge.errors import InputDataError
from eedge.metrics import (brier, expected_calibration_error, failure_auprc, failure_auroc,
                           macro_f1, nll, uncertainty_report)


def random_probs(n: int = 300, c: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, c, n)
    return probs, labels


def test_against_scikit_learn() -> None:
    probs, labels = random_probs()
    predicted = probs.argmax(axis=1)
    correct = predicted == labels
    assert macro_f1(probs, labels) == pytest.approx(
        f1_score(labels, predicted, average="macro", labels=np.union1d(labels, predicted)))
    assert nll(probs, labels) == pytest.approx(log_loss(labels, probs, labels=range(4)))
    assert failure_auroc(probs, labels) == pytest.approx(roc_auc_score(correct, probs.max(1)))
    assert failure_auprc(probs, labels) == pytest.approx(
        average_precision_score(~correct, -probs.max(1)))


def test_hand_computed_values() -> None:
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    labels = np.array([0, 1])
    assert brier(probs, labels) == pytest.approx((0.0 + 0.5) / 2)
    # bin of 1.0: accurate & confident; bin of 0.5: argmax 0 is wrong at confidence 0.5
    assert expected_calibration_error(probs, labels) == pytest.approx(0.5 * 0.5)
    assert failure_auroc(np.array([[1.0, 0.0]]), np.array([0])) is None
    with pytest.raises(InputDataError):
        uncertainty_report(probs[:0], labels[:0])
