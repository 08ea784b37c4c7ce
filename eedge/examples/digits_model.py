"""The built-in example's model: a 3-exit CNN for 8x8 digits.

Exit heads pool to 2x2 rather than globally: on 8x8 inputs a global pool
throws away the spatial layout the early exits need. The first stage has
16 channels: with 8, the first exit sat so close to its decision
boundaries that int8 rounding flipped about 1% of its answers. ``build_model`` is a
factory `eedge export eedge.examples.digits_model:build_model` can load.
"""

from __future__ import annotations

import torch
from torch import nn

from eedge.examples.digits import NUM_CLASSES


class DigitsNet(nn.Module):
    """Three conv stages with an exit classifier after each."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16),
                                    nn.ReLU())
        self.exit1 = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                   nn.Linear(64, NUM_CLASSES))
        self.stage2 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16),
                                    nn.ReLU(), nn.MaxPool2d(2))
        self.exit2 = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                   nn.Linear(64, NUM_CLASSES))
        self.stage3 = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32),
                                    nn.ReLU(), nn.MaxPool2d(2))
        self.exit3 = nn.Sequential(nn.Flatten(), nn.Linear(128, NUM_CLASSES))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage (the protocol `eedge.train.qute` builds on)."""
        h1 = self.stage1(x)
        h2 = self.stage2(h1)
        return [h1, h2, self.stage3(h2)]

    @property
    def exit_heads(self) -> list[nn.Module]:
        return [self.exit1, self.exit2, self.exit3]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h1, h2, h3 = self.features(x)
        return self.exit1(h1), self.exit2(h2), self.exit3(h3)


def build_model() -> DigitsNet:
    """A fresh, untrained model (load trained weights with ``--weights``)."""
    return DigitsNet()
