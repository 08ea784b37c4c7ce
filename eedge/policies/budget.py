"""A budget-aware exit policy for streams: keep the average cost near a target.

Fixed thresholds spend whatever the input distribution makes them spend. Here
one offset is added to every early-exit threshold and adapted after each
sample: a sample that cost more than the budget lowers the thresholds (more
early exits), a cheaper one raises them (more accuracy), in proportion to the
relative error. The state is one number, updated in O(1) per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from eedge.errors import InputDataError
from eedge.progress import Tick, quiet_tick
from eedge.runtime.cascade import Cascade


@dataclass
class BudgetController:
    budget: float                    # target mean cost per sample (MACs, ms, ...)
    exit_costs: Sequence[float]      # cost of a sample that leaves at each exit
    gain: float = 0.05
    offset: float = 0.0
    spent: float = 0.0
    seen: int = 0

    def __post_init__(self) -> None:
        if self.budget <= 0:
            raise InputDataError("the budget must be positive")
        if self.budget < min(self.exit_costs):
            raise InputDataError(f"a budget of {self.budget:g} is below the cheapest exit "
                                 f"({min(self.exit_costs):g}); it cannot be met")

    def thresholds(self, base: Sequence[float | None]) -> list[float | None]:
        return [None if t is None else float(np.clip(t + self.offset, 0.0, 1.0))
                for t in base]

    def update(self, exit_index: int) -> None:
        cost = float(self.exit_costs[exit_index])
        self.spent += cost
        self.seen += 1
        self.offset -= self.gain * (cost - self.budget) / self.budget
        self.offset = float(np.clip(self.offset, -1.0, 1.0))

    @property
    def average_cost(self) -> float:
        return self.spent / max(self.seen, 1)


@dataclass
class BudgetRun:
    predictions: np.ndarray
    exit_index: np.ndarray
    average_cost: float
    offsets: list[float] = field(default_factory=list)


def run_budgeted(cascade: Cascade, x: np.ndarray, controller: BudgetController,
                 tick: Tick | None = None) -> BudgetRun:
    """Process ``x`` one sample at a time, adapting thresholds to the budget.

    ``tick(done, total)`` follows the stream (one inference per sample is slow).
    """
    tick = tick or quiet_tick
    base = list(cascade.thresholds)
    predictions, exits, offsets = [], [], []
    try:
        for i in range(len(x)):
            cascade.set_thresholds(controller.thresholds(base[:-1]) + [base[-1]])
            result = cascade.infer(x[i:i + 1])
            exit_index = int(result.exit_index[0])
            controller.update(exit_index)
            predictions.append(int(result.predictions[0]))
            exits.append(exit_index)
            offsets.append(controller.offset)
            tick(i + 1, len(x))
    finally:
        cascade.set_thresholds(base)
    return BudgetRun(np.array(predictions), np.array(exits), controller.average_cost, offsets)


class IntegerBudgetController:
    """The budget policy in integers, exactly as the generated firmware runs it.

    The offset is in int8 score units (1/256 of probability for max_softmax and
    margin) and moves by trunc(gain_q * (cost - budget) / budget) after each
    inference, clamped to +-limit; C's truncating division is reproduced.
    """

    def __init__(self, budget_macs: float, exit_costs: Sequence[float], gain: float = 0.05,
                 limit: int = 256) -> None:
        self.budget = int(round(budget_macs))
        self.exit_costs = [int(c) for c in exit_costs]
        if self.budget <= 0 or self.budget < min(self.exit_costs):
            raise InputDataError(f"a budget of {budget_macs:g} MACs cannot be met (the "
                                 f"cheapest exit costs {min(self.exit_costs)})")
        self.gain_q = int(round(gain * 256))
        self.limit = limit
        self.offset = 0

    def update(self, exit_index: int) -> None:
        product = self.gain_q * (self.exit_costs[exit_index] - self.budget)
        step = abs(product) // self.budget * (1 if product >= 0 else -1)
        self.offset = max(-self.limit, min(self.limit, self.offset - step))


def run_budgeted_int8(cascade: Cascade, x: np.ndarray,
                      controller: IntegerBudgetController) -> BudgetRun:
    """The int8 runtimes under the integer budget policy (what the device decides)."""
    predictions, exits, offsets = [], [], []
    try:
        for i in range(len(x)):
            cascade.threshold_offset_q = controller.offset
            result = cascade.infer(x[i:i + 1])
            exit_index = int(result.exit_index[0])
            controller.update(exit_index)
            predictions.append(int(result.predictions[0]))
            exits.append(exit_index)
            offsets.append(float(controller.offset))
    finally:
        cascade.threshold_offset_q = 0
    spent = sum(controller.exit_costs[e] for e in exits)
    return BudgetRun(np.array(predictions), np.array(exits), spent / max(len(exits), 1), offsets)
