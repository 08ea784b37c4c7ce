"""The demo's threshold rule on hand-made logits."""

from __future__ import annotations

import numpy as np
import pytest

from eedge.errors import InputDataError
from eedge.policies.criteria import confidence, softmax
from eedge.policies.simple import thresholds_matching_final_accuracy


def test_softmax_and_confidence() -> None:
    logits = np.array([[0.0, 0.0], [10.0, 0.0], [1000.0, -1000.0]], np.float32)
    assert np.allclose(softmax(logits).sum(axis=1), 1)
    assert confidence(logits)[0] == pytest.approx(0.5)
    assert confidence(logits)[2] == 1.0
    with pytest.raises(ValueError):
        confidence(logits, "bogus")


def test_threshold_admits_only_a_subset_as_accurate_as_the_final_exit() -> None:
    labels = np.zeros(10, np.int64)
    final = np.tile([5.0, 0.0], (10, 1))  # final exit: always right (accuracy 1)
    margins = np.linspace(4, 0.2, 10)  # early exit: confident first, wrong on the last 3
    early = np.stack([margins, np.zeros(10)], axis=1)
    early[7:] = early[7:, ::-1]
    thresholds = thresholds_matching_final_accuracy([early, final], labels, min_support=2)
    conf = confidence(early)
    assert thresholds[-1] is None
    assert thresholds[0] == pytest.approx(conf[6])
    admitted = conf >= thresholds[0]
    assert admitted.sum() == 7 and (early[admitted].argmax(1) == 0).all()


def test_no_safe_threshold_and_bad_data() -> None:
    labels = np.zeros(6, np.int64)
    wrong = np.tile([0.0, 3.0], (6, 1))
    right = np.tile([3.0, 0.0], (6, 1))
    assert thresholds_matching_final_accuracy([wrong, right], labels) == [None, None]
    with pytest.raises(InputDataError):
        thresholds_matching_final_accuracy([wrong, right], labels[:3])
    with pytest.raises(InputDataError):
        thresholds_matching_final_accuracy([wrong[:0], right[:0]], labels[:0])
