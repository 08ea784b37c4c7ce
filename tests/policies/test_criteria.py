"""Softmax and float confidence on hand-made logits."""

from __future__ import annotations

import numpy as np
import pytest

from eedge.policies.criteria import confidence, softmax


def test_softmax_and_confidence() -> None:
    logits = np.array([[0.0, 0.0], [10.0, 0.0], [1000.0, -1000.0]], np.float32)
    assert np.allclose(softmax(logits).sum(axis=1), 1)
    assert confidence(logits)[0] == pytest.approx(0.5)
    assert confidence(logits)[2] == 1.0
    with pytest.raises(ValueError):
        confidence(logits, "bogus")
