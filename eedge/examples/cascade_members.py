"""Three independent digit classifiers of increasing size: the cascade demo's members.

They share nothing: each is a plain CNN with one logits output, trained on
its own, as a user would have them. The largest starts with a bilinear
resize to 16x16 (a member that wants another resolution resizes the shared
input itself), so a cascade of them also exercises members of different
input resolutions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

SIZES = ("small", "medium", "large")


def build_member(size: str) -> "torch.nn.Module":
    """A CNN for (N, 1, 8, 8) digits: small ~6k, medium ~0.16M, large ~0.6M MACs."""
    import torch
    from torch import nn

    class Member(nn.Module):
        def __init__(self, body: nn.Module, features: int, resize: int | None) -> None:
            super().__init__()
            self.resize = resize
            self.body = body
            self.head = nn.Linear(features, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.resize is not None:
                x = nn.functional.interpolate(x, size=(self.resize, self.resize),
                                              mode="bilinear", align_corners=False)
            return self.head(torch.flatten(self.body(x), 1))

    if size == "small":
        body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        return Member(body, 8 * 4 * 4, None)
    if size == "medium":
        body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        return Member(body, 16 * 4 * 4, None)
    if size == "large":
        body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        return Member(body, 64 * 2 * 2, 16)
    raise ValueError(f"size must be one of {SIZES}")


def train_member(size: str, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> Any:
    """Train one member alone (eedge's training loop, one exit)."""
    import torch

    from eedge.train.multi_exit import LoopSettings, run_training, seed_everything

    seed_everything(seed)
    model = build_member(size)

    class OneExit(torch.nn.Module):  # the loop takes a list of exit logits
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, v: torch.Tensor) -> list[torch.Tensor]:
            return [self.inner(v)]

    run_training(OneExit(model), x, y, None, LoopSettings(epochs, 64, 5e-3, 1e-4, seed))
    return model.eval()


def export_member(model: Any, path: Any) -> None:
    """What a user does: ``torch.onnx.export`` with its defaults (weights in ``.onnx.data``)."""
    import torch

    from eedge.frontends.torch_frontend import _quiet_exporter

    with _quiet_exporter():  # the exporter's log lines are not the user's business here
        torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path))
