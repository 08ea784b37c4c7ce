"""Train a multi-exit model with a weighted sum of per-exit cross-entropies.

Joint training (all exits at once) is the common baseline of the early-exit
literature; later exits get no less weight than earlier ones so the final
classifier is not sacrificed for the early ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 5e-3
    weight_decay: float = 1e-4
    exit_weights: Sequence[float] | None = None  # default: all 1
    seed: int = 0


def seed_everything(seed: int) -> None:
    import torch

    np.random.seed(seed)
    torch.manual_seed(seed)


def train_multi_exit(model: "torch.nn.Module", x: np.ndarray, y: np.ndarray,
                     config: TrainConfig = TrainConfig(),
                     on_epoch: Callable[[int, float], None] | None = None) -> list[float]:
    """Train in place with a weighted sum of the exits' losses; returns each epoch's mean loss."""
    return run_training(model, x, y, config.exit_weights, LoopSettings(
        config.epochs, config.batch_size, config.learning_rate, config.weight_decay, config.seed),
        on_epoch)


@dataclass
class LoopSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int


def run_training(model: "torch.nn.Module", x: np.ndarray, y: np.ndarray,
                 exit_weights: list[float] | None, settings: LoopSettings,
                 on_epoch: Callable[[int, float], None] | None = None,
                 before_epoch: Callable[[int], None] | None = None,
                 after_step: Callable[[], None] | None = None) -> list[float]:
    """The training loop every eedge model uses: AdamW, cosine schedule, weighted exit losses.

    Runs on one thread with a seeded generator so the same seed gives the
    same weights on any machine of the same kind. ``before_epoch`` and
    ``after_step`` let variants (QUTE's freezing and weight copying) hook in.
    """
    import torch

    seed_everything(settings.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(settings.seed)
        inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate,
                                      weight_decay=settings.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.epochs)
        losses: list[float] = []
        for epoch in range(settings.epochs):
            if before_epoch is not None:
                before_epoch(epoch)
            model.train()
            order = torch.randperm(len(inputs), generator=generator)
            total, batches = 0.0, 0
            for start in range(0, len(inputs), settings.batch_size):
                idx = order[start:start + settings.batch_size]
                outputs = model(inputs[idx])
                weights = exit_weights or [1.0] * len(outputs)
                loss = sum(w * torch.nn.functional.cross_entropy(o, labels[idx])
                           for w, o in zip(weights, outputs))
                optimizer.zero_grad()
                loss.backward()  # type: ignore[union-attr]
                optimizer.step()
                if after_step is not None:
                    after_step()
                total += float(loss.detach())  # type: ignore[union-attr]
                batches += 1
            scheduler.step()
            losses.append(total / batches)
            if on_epoch is not None:
                on_epoch(epoch, losses[-1])
        model.eval()
        return losses
    finally:
        torch.set_num_threads(threads)
