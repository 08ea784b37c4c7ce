"""QUTE: early-view exits after the final block, for uncertainty on small devices.

``qute(model, K)`` wraps a multi-exit model that exposes ``features(x)`` (one
tensor per stage) and ``exit_heads`` (one head per stage, each ending in a
``Linear``). It adds K early-view (EV) exits on the final features: EV exit k
is a pointwise convolution to the channel count of early exit k followed by
a copy of early exit k's head. During training the EV heads' classifier
weights are copied from the early exits after every step ("early-view
assistance"), so each EV exit sees the final features through the eyes of
an earlier exit; only its pointwise adapter is its own. The prediction is the
mean of the softmaxes of the final exit and the K EV exits.

Outputs, in the order partitioning needs (depth, then the ensemble):
early exits..., final exit, EV exit 1..K.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from eedge.errors import ModelError
from eedge.train.multi_exit import LoopSettings, run_training


def _linear(head: nn.Module) -> nn.Linear:
    layers = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ModelError("each exit head must contain a Linear classifier for QUTE")
    return layers[-1]


class QuteNet(nn.Module):
    def __init__(self, base: nn.Module, k: int, channels: Sequence[int]) -> None:
        super().__init__()
        heads = list(base.exit_heads)
        if not 1 <= k <= len(heads) - 1:
            raise ModelError(f"K must be between 1 and the number of early exits "
                             f"({len(heads) - 1})")
        self.base = base
        self.k = k
        final_channels = channels[-1]
        # bias-free pointwise adapters: the only parameters an EV exit does not share
        self.adapters = nn.ModuleList(nn.Conv2d(final_channels, channels[i], 1, bias=False)
                                      for i in range(k))
        self.ev_heads = nn.ModuleList(copy.deepcopy(heads[i]) for i in range(k))
        self.assist()

    @torch.no_grad()
    def assist(self) -> None:
        """Copy the early exits' classifier weights into the EV heads."""
        for i, head in enumerate(self.ev_heads):
            source, target = _linear(self.base.exit_heads[i]), _linear(head)
            target.weight.copy_(source.weight)
            target.bias.copy_(source.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.base.features(x)
        heads = self.base.exit_heads
        outputs = [head(f) for head, f in zip(heads, features)]
        final = features[-1]
        outputs += [head(torch.relu(adapter(final)))
                    for adapter, head in zip(self.adapters, self.ev_heads)]
        return tuple(outputs)

    @property
    def ensemble_members(self) -> list[int]:
        """Exit indices averaged into the prediction: the final exit and the EV exits."""
        final = len(self.base.exit_heads) - 1
        return [final] + [final + 1 + i for i in range(self.k)]


def qute(model: nn.Module, k: int, example: torch.Tensor) -> QuteNet:
    """Wrap ``model`` with K early-view exits (channel counts read from ``example``)."""
    with torch.no_grad():
        channels = [int(f.shape[1]) for f in model.features(example)]
    return QuteNet(model, k, channels)


@dataclass
class QuteConfig:
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 5e-3
    freeze_fraction: float = 0.1   # last share of epochs: backbone and early exits frozen
    ev_weight_start: float = 1.5   # loss weight of the first EV exit...
    ev_weight_step: float = 0.25   # ...rising by this per EV exit
    seed: int = 0


def exit_weights(model: QuteNet, config: QuteConfig) -> list[float]:
    early_and_final = [1.0] * len(model.base.exit_heads)
    ev = [config.ev_weight_start + config.ev_weight_step * i for i in range(model.k)]
    return early_and_final + ev


def train_qute(model: QuteNet, x: np.ndarray, y: np.ndarray, config: QuteConfig = QuteConfig(),
               on_epoch: Callable[[int, float], None] | None = None) -> list[float]:
    """Joint training with early-view assistance after every step; seeded, one thread.

    The backbone and early exits are frozen for the last ``freeze_fraction``
    of epochs so the EV adapters settle on fixed features.
    """
    freeze_from = int(round(config.epochs * (1 - config.freeze_fraction)))

    def freeze_late(epoch: int) -> None:
        for p in model.base.parameters():
            p.requires_grad_(epoch < freeze_from)

    try:
        return run_training(model, x, y, exit_weights(model, config), LoopSettings(
            config.epochs, config.batch_size, config.learning_rate, 1e-4, config.seed),
            on_epoch, before_epoch=freeze_late, after_step=model.assist)
    finally:
        for p in model.base.parameters():
            p.requires_grad_(True)
