"""A simple, explainable per-exit threshold rule used by the demo.

Exits are visited in order, each on the validation samples earlier exits
let through. Exit k takes the most confident of them, as many as it can
while it is at least as accurate on the samples it takes as the final exit
is on those same samples. On the validation set the cascade therefore
never does worse than the final exit alone; on new data it is an estimate.
It is a quick baseline, not an optimum: a joint search for an accuracy or
cost budget is the job of calibration.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eedge.errors import InputDataError
from eedge.policies.criteria import confidence


def thresholds_matching_final_accuracy(exit_logits: Sequence[np.ndarray], labels: np.ndarray,
                                       min_support: int = 5) -> list[float | None]:
    """Per-exit max-softmax thresholds; ``None`` where no threshold is safe.

    ``min_support`` is the fewest validation samples an exit must take for
    its accuracy estimate to be trusted.
    """
    labels = np.asarray(labels)
    if not exit_logits or any(len(lg) != len(labels) for lg in exit_logits):
        raise InputDataError("each exit needs logits for every labelled sample")
    if len(labels) == 0:
        raise InputDataError("no validation samples: thresholds need labelled data")
    final_correct = np.argmax(exit_logits[-1], axis=-1) == labels
    remaining = np.ones(len(labels), dtype=bool)
    thresholds: list[float | None] = []
    for logits in exit_logits[:-1]:
        idx = np.nonzero(remaining)[0]
        conf = confidence(logits[idx])
        correct = (np.argmax(logits[idx], axis=-1) == labels[idx]).astype(np.int64)
        order = np.argsort(-conf, kind="stable")
        sorted_conf = conf[order]
        count = np.arange(1, len(order) + 1)
        # the set {conf >= sorted_conf[i]} is only well defined at the end of a tie run
        run_end = np.append(sorted_conf[1:] < sorted_conf[:-1], True)
        ok = np.nonzero(run_end & (np.cumsum(correct[order]) >=
                                   np.cumsum(final_correct[idx][order]))
                        & (count >= min_support))[0]
        if ok.size == 0:
            thresholds.append(None)
            continue
        threshold = float(sorted_conf[ok[-1]])
        thresholds.append(threshold)
        remaining[idx[conf >= threshold]] = False
    thresholds.append(None)
    return thresholds
