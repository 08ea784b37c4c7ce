"""Transformers and recurrent nets with early exits, written the way users write them.

Issue 18 made these families deploy: every model here uses its family's
usual idioms and is exported with the default ``torch.onnx.export``:

- ``vit``: an LGViT-style early-exit vision transformer on digits cut into
  2x2 patches (patch embedding = conv with stride = patch), a learned class
  token and positional embedding, 6 pre-norm encoder blocks written like
  timm's (fused qkv Linear, reshape/permute into heads, scaled dot-product
  attention with Softmax, GELU MLP), exits (LayerNorm + Linear on the class
  token) after blocks 2, 4 and 6.
- ``kwt``: a keyword transformer on a 49x10 MFCC-shaped input (frames are
  tokens) built from ``nn.TransformerEncoderLayer(batch_first=True)``,
  mean-pooled exits after blocks 1 and 2 (and 3).
- ``gru`` / ``lstm``: 2-layer recurrent keyword spotters (``nn.GRU`` /
  ``nn.LSTM`` with ``batch_first=True``), one exit on the last hidden state of
  layer 1 and one on layer 2's.

They train for a few seconds on scikit-learn's digits (the images read as
patches, or as a sequence of rows) or on synthetic MFCC-like sequences.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eedge.examples.digits import DigitsSplits, load_digits_splits
from eedge.examples.vit_model import EarlyExitViT  # the ViT `eedge demo --model vit` trains
from zoo_modern import accuracy, fit_exits

CLASSES = 10


class KeywordTransformer(nn.Module):
    """KWT-style: MFCC frames are tokens; torch's own encoder layers; mean-pooled exits."""

    def __init__(self, frames: int = 49, features: int = 10, dim: int = 32, depth: int = 3,
                 heads: int = 2) -> None:
        super().__init__()
        self.embed = nn.Linear(features, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, frames, dim) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(depth))
        self.heads = nn.ModuleList(nn.Linear(dim, CLASSES) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.embed(x) + self.pos_embed
        outs = []
        for block, head in zip(self.blocks, self.heads):
            x = block(x)
            outs.append(head(x.mean(dim=1)))
        return tuple(outs)


class RecurrentKWS(nn.Module):
    """Two stacked GRU or LSTM layers over a (time, features) sequence, an exit after each."""

    def __init__(self, cell: type[nn.Module], features: int = 8, hidden: int = 24) -> None:
        super().__init__()
        self.layer1 = cell(features, hidden, batch_first=True)
        self.layer2 = cell(hidden, hidden, batch_first=True)
        self.exit1, self.exit2 = nn.Linear(hidden, CLASSES), nn.Linear(hidden, CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h1, _ = self.layer1(x)
        h2, _ = self.layer2(h1)
        return self.exit1(h1[:, -1]), self.exit2(h2[:, -1])


@dataclass(frozen=True)
class SequenceModel:
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    data: str
    """"patches" (digits as 1x8x8 images), "rows" (8 rows of 8 pixels), "mfcc" (49x10)."""


MODELS: dict[str, SequenceModel] = {
    "vit": SequenceModel(EarlyExitViT, (1, 1, 8, 8), "patches"),
    "kwt": SequenceModel(KeywordTransformer, (1, 49, 10), "mfcc"),
    "gru": SequenceModel(lambda: RecurrentKWS(nn.GRU), (1, 8, 8), "rows"),
    "lstm": SequenceModel(lambda: RecurrentKWS(nn.LSTM), (1, 8, 8), "rows"),
}
VARIANTS: dict[str, SequenceModel] = {
    "vit-relu": SequenceModel(lambda: EarlyExitViT(mlp_act=nn.ReLU), (1, 1, 8, 8), "patches"),
}
"""Test-only variants (not part of the zoo's four): ``spec`` finds them by name too."""


def spec(name: str) -> SequenceModel:
    """A zoo model's or a variant's description."""
    return MODELS[name] if name in MODELS else VARIANTS[name]


def mfcc_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic 49x10 "MFCC" sequences: class k is a bump moving at speed k through time.

    Each class puts energy in a coefficient band that drifts over the frames
    at its own rate, plus noise: a sequence task a transformer solves with
    attention over time, not from any single frame.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    t = np.arange(49)[None, :, None]
    band = np.arange(10)[None, None, :]
    centre = (rng.uniform(0, 10, (n, 1, 1)) + (y[:, None, None] - 4.5) * 0.2 * t / 4) % 10
    x = np.exp(-0.5 * ((band - centre) ** 2)) + 0.3 * rng.standard_normal((n, 49, 10))
    return x.astype(np.float32), y.astype(np.int64)


def dataset(name: str) -> DigitsSplits:
    """Train/val/test splits in ``name``'s input layout."""
    kind = spec(name).data
    if kind == "mfcc":
        parts = [mfcc_like(n, seed) for n, seed in ((1000, 1), (300, 2), (300, 3))]
        return DigitsSplits(*parts[0], *parts[1], *parts[2])
    splits = load_digits_splits(seed=0)
    if kind == "rows":
        return DigitsSplits(splits.x_train[:, 0], splits.y_train, splits.x_val[:, 0],
                            splits.y_val, splits.x_test[:, 0], splits.y_test)
    return splits


def train(name: str, data: DigitsSplits, steps: int = 300, seed: int = 0) -> nn.Module:
    """Train every exit jointly (summed cross-entropy), fixed Adam steps on one thread."""
    return fit_exits(spec(name).factory, data, steps, seed, lr=3e-3, batch=64)


def export_default(name: str, model: nn.Module, path: Path, dynamo: bool = True) -> Path:
    """``torch.onnx.export`` as a user calls it: batch 1, the default (dynamo) exporter.

    ``dynamo=False`` is the legacy TorchScript exporter, which writes the
    shape arithmetic (Shape/Gather/Unsqueeze/Concat) the frontend folds.
    """
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        args = (torch.zeros(spec(name).input_shape),)
        if dynamo:
            torch.onnx.export(model.eval(), args, str(path))
        else:
            torch.onnx.export(model.eval(), args, str(path), dynamo=False, opset_version=17)
    return path


__all__ = ["EarlyExitViT", "MODELS", "VARIANTS", "accuracy", "spec", "dataset", "export_default",
           "train"]
