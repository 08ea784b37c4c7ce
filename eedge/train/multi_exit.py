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
    """Train in place; returns the mean loss of each epoch.

    Runs on one thread with a seeded generator so the same seed gives the
    same weights on any machine of the same kind.
    """
    import torch

    seed_everything(config.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(config.seed)
        inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                      weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs)
        losses: list[float] = []
        model.train()
        for epoch in range(config.epochs):
            order = torch.randperm(len(inputs), generator=generator)
            total, batches = 0.0, 0
            for start in range(0, len(inputs), config.batch_size):
                idx = order[start:start + config.batch_size]
                outputs = model(inputs[idx])
                weights = config.exit_weights or [1.0] * len(outputs)
                loss = sum(w * torch.nn.functional.cross_entropy(o, labels[idx])
                           for w, o in zip(weights, outputs))
                optimizer.zero_grad()
                loss.backward()  # type: ignore[union-attr]
                optimizer.step()
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
