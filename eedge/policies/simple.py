"""A simple, explainable per-exit threshold rule used by the demo.

For each early exit, take the smallest confidence threshold at which the
validation samples that would exit there are at least as accurate as the
final exit is overall. Each exit is judged on its own (ignoring which
samples earlier exits already took), so it is a quick baseline, not an
optimum; a joint search for an accuracy or cost budget is the job of
calibration.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eedge.errors import InputDataError
from eedge.policies.criteria import confidence


def thresholds_matching_final_accuracy(exit_logits: Sequence[np.ndarray], labels: np.ndarray,
                                       min_support: int = 5) -> list[float | None]:
    """Per-exit max-softmax thresholds; ``None`` where no threshold is safe.

    ``min_support`` is the fewest validation samples that must pass a
    threshold for its accuracy estimate to be trusted.
    """
    labels = np.asarray(labels)
    if not exit_logits or any(len(lg) != len(labels) for lg in exit_logits):
        raise InputDataError("each exit needs logits for every labelled sample")
    if len(labels) == 0:
        raise InputDataError("no validation samples: thresholds need labelled data")
    target = float(np.mean(np.argmax(exit_logits[-1], axis=-1) == labels))
    thresholds: list[float | None] = []
    for logits in exit_logits[:-1]:
        conf = confidence(logits)
        correct = np.argmax(logits, axis=-1) == labels
        order = np.argsort(-conf, kind="stable")
        sorted_conf = conf[order]
        count = np.arange(1, len(order) + 1)
        # accuracy of {conf >= sorted_conf[i]} is only well defined at the end of a tie run
        running = np.cumsum(correct[order]) / count
        run_end = np.append(sorted_conf[1:] < sorted_conf[:-1], True)
        ok = np.nonzero(run_end & (running >= target) & (count >= min_support))[0]
        thresholds.append(float(sorted_conf[ok[-1]]) if ok.size else None)
    thresholds.append(None)
    return thresholds
