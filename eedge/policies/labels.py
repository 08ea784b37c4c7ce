"""One check for class labels, shared by every command that scores predictions.

A label no exit can predict (12 for a 10-class model, or -1) is not a wrong
prediction but wrong data: counted as a miss it turns into a plausible-looking
accuracy (or 0.00 %) with exit code 0. So ``run``, ``evaluate`` and
``calibrate`` all refuse it here, with the same message and exit code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eedge.errors import InputDataError


def check_labels(y: np.ndarray, classes: int | Sequence[int], where: str,
                 samples: int | None = None) -> np.ndarray:
    """Return ``y`` as int64 labels if every one is a class of every exit, else raise.

    ``classes`` is the exits' class count (or one per exit: the smallest one
    bounds the labels); ``samples``, if given, is how many labels there must be.
    """
    limit = min(classes) if isinstance(classes, Sequence) else int(classes)
    labels = np.asarray(y)
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise InputDataError(f"{where}: y must be a 1-D integer array of class labels, got "
                             f"shape {list(labels.shape)} dtype {labels.dtype}")
    if samples is not None and len(labels) != samples:
        raise InputDataError(f"{where}: y has {len(labels)} labels but x has {samples} samples")
    bad = np.flatnonzero((labels < 0) | (labels >= limit))
    if bad.size:
        i = int(bad[0])
        raise InputDataError(f"{where}: label {int(labels[i])} at sample {i} is not a class of "
                             f"this model ({bad.size} of {len(labels)} labels are outside "
                             f"0..{limit - 1}; its exits have {limit} classes): fix the labels "
                             "or use the model they belong to")
    return labels.astype(np.int64)
