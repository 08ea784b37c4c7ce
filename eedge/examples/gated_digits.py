"""A gated 3-exit CNN on digits: train with eedge.train.gates, export with torch.onnx.export.

The backbone and exit classifiers are the built-in example's (DigitsNet). Each
early exit also has a gate head reading what JEI-DNN's gates read: the
exit's pooled features and its class probabilities. The exit's output is
``cat(class logits, gate logit)`` (11 columns for 10 classes), and the ONNX
outputs are named ``exit0_gated``, ``exit1_gated``, ``exit2``, so
`eedge export` marks the gates without a flag. Trains in a few seconds.

    python -m eedge.examples.gated_digits OUT_DIR   # writes OUT_DIR/gated.onnx (+ .data)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from eedge.examples.digits import NUM_CLASSES, DigitsSplits, load_digits_splits
from eedge.examples.digits_model import DigitsNet
from eedge.train.gates import GateTrainConfig, train_gated

OUTPUT_NAMES = ["exit0_gated", "exit1_gated", "exit2"]


class GatedExit(nn.Module):
    """An exit classifier plus a gate: (N, features) -> (N, classes + 1).

    The gate reads the pooled features, the class probabilities and the largest of
    them (a linear layer on the probabilities cannot compute their maximum, the one
    feature max-softmax relies on). It reads them detached: the gate learns from the
    exit but never changes it, so the exits are those of plain multi-exit training and
    max-softmax on this model is the usual baseline. Letting the gate's gradient into
    the backbone made the first exit's ECE worse (0.14 vs 0.10 on 3 seeds) and the gate
    no better.

    The gate's first layer is Linear(features) + Linear(probabilities) rather than one
    Linear over their concatenation: int8 concatenation shares one scale among its
    inputs, and a softmax output's scale is fixed at 1/256, which would then squeeze the
    backbone's features into [0, 1) (int8 accuracy fell to 24% that way).
    """

    def __init__(self, classifier: nn.Module, features: int, hidden: int = 16) -> None:
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.classifier = classifier
        self.gate = nn.ModuleDict({"features": nn.Linear(features, hidden),
                                   "probabilities": nn.Linear(NUM_CLASSES, hidden),
                                   "top": nn.Linear(1, hidden),
                                   "out": nn.Linear(hidden, 1)})

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(h)
        logits = self.classifier(pooled)
        probabilities = torch.softmax(logits, dim=1).detach()
        top = torch.amax(probabilities, dim=1, keepdim=True)  # what max-softmax thresholds
        hidden = torch.relu(self.gate["features"](pooled.detach()) +
                            self.gate["probabilities"](probabilities) + self.gate["top"](top))
        return torch.cat([logits, self.gate["out"](hidden)], dim=1)


class GatedDigitsNet(nn.Module):
    """DigitsNet with gates on exits 0 and 1 (the final exit always decides)."""

    def __init__(self) -> None:
        super().__init__()
        base = DigitsNet()
        self.stage1, self.stage2, self.stage3 = base.stage1, base.stage2, base.stage3
        self.exit1 = GatedExit(base.exit1[2], 64)
        self.exit2 = GatedExit(base.exit2[2], 64)
        self.exit3 = base.exit3

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h1 = self.stage1(x)
        h2 = self.stage2(h1)
        return self.exit1(h1), self.exit2(h2), self.exit3(self.stage3(h2))


@dataclass
class TrainedGated:
    model: GatedDigitsNet
    data: DigitsSplits
    losses: list[float]
    gate_rows: int   # the gates were refitted on data.x_val[:gate_rows]; the rest is unseen


def train_gated_digits(seed: int = 0, epochs: int = 40, gate_epochs: int = 30,
                       cost_weight: float = 0.5, gate_fraction: float = 1.0) -> TrainedGated:
    """Train on the training split; the gates are refitted on the first ``gate_fraction``
    of the validation split (keep the rest to calibrate thresholds on data the gates
    never saw: calibrating on the gates' own refit data picks over-eager thresholds)."""
    data = load_digits_splits(seed)
    torch.manual_seed(seed)
    model = GatedDigitsNet()
    config = GateTrainConfig(epochs=epochs, gate_epochs=gate_epochs, cost_weight=cost_weight,
                             seed=seed)
    rows = max(1, int(round(gate_fraction * len(data.x_val))))
    losses = train_gated(model, data.x_train, data.y_train, NUM_CLASSES, config,
                         gate_data=(data.x_val[:rows], data.y_val[:rows]))
    return TrainedGated(model, data, losses, rows)


def export_onnx(model: nn.Module, path: Path) -> Path:
    """``torch.onnx.export`` with its defaults (dynamo; weights in ``path``.data)."""
    model.eval()
    example = torch.zeros(1, 1, 8, 8)
    torch.onnx.export(model, (example,), str(path), output_names=OUTPUT_NAMES)
    return path


def torch_outputs(model: nn.Module, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        return [o.numpy() for o in model(torch.from_numpy(np.asarray(x, np.float32)))]


def main(argv: list[str]) -> None:
    out = Path(argv[0] if argv else "gated-out")
    out.mkdir(parents=True, exist_ok=True)
    trained = train_gated_digits()
    path = export_onnx(trained.model, out / "gated.onnx")
    np.savez(out / "val.npz", x=trained.data.x_val, y=trained.data.y_val)
    np.savez(out / "test.npz", x=trained.data.x_test, y=trained.data.y_test)
    print(f"wrote {path} (outputs {', '.join(OUTPUT_NAMES)}), {out / 'val.npz'}, "
          f"{out / 'test.npz'}")


if __name__ == "__main__":
    main(sys.argv[1:])
