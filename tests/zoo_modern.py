"""Modern small architectures with early exits, written the way users write them.

Issue 17 grew eedge's operator set so that the blocks of today's edge
networks import, quantize and run on every path. These five models are the
evidence: each uses the idioms its family is known for (``nn.Hardswish``,
``nn.SiLU``, ``torch.chunk`` and a view/transpose channel shuffle,
``nn.Upsample`` with a skip concat, tanh·sigmoid gates), has 2-3 exits
(pooled features -> ``nn.Linear`` logits) and trains for a few seconds on
scikit-learn's digits, upsampled to 16x16 so strided blocks have room.

``ARCHITECTURES`` maps a name to (factory, the ONNX operators its export
needs beyond eedge's original set), so the tests can say which missing op
keeps an architecture from running.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eedge.examples.digits import DigitsSplits, load_digits_splits

SIDE = 16
CLASSES = 10


def _exit_head(channels: int) -> nn.Module:
    """Pooled features -> logits: what an early exit usually is."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, CLASSES))


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout)]


class SqueezeExcite(nn.Module):
    """Channel attention: global pool -> bottleneck -> gate, multiplied back (broadcast)."""

    def __init__(self, channels: int, squeezed: int, gate: nn.Module,
                 act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 and MBConv: expand 1x1 -> depthwise kxk -> SE -> project 1x1."""

    def __init__(self, cin: int, expanded: int, cout: int, k: int, stride: int,
                 act: type[nn.Module], se: nn.Module | None) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(cin, expanded, 1), act(),
                                   *_conv_bn(expanded, expanded, k, stride, expanded), act()]
        if se is not None:
            layers.append(se)
        layers += _conv_bn(expanded, cout, 1)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3Small(nn.Module):
    """Hard-swish, inverted residuals with depthwise convs, SE with a hard-sigmoid gate."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(1, 16, 3, 2), nn.Hardswish())           # 8x8
        self.b1 = InvertedResidual(16, 32, 16, 3, 1, nn.Hardswish,
                                   SqueezeExcite(32, 8, nn.Hardsigmoid()))
        self.b2 = InvertedResidual(16, 48, 24, 3, 2, nn.ReLU, None)                  # 4x4
        self.b3 = InvertedResidual(24, 64, 24, 5, 1, nn.Hardswish,
                                   SqueezeExcite(64, 16, nn.Hardsigmoid()))
        self.e1, self.e2, self.e3 = _exit_head(16), _exit_head(24), _exit_head(24)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h1 = self.b1(self.stem(x))
        h2 = self.b2(h1)
        h3 = self.b3(h2)
        return self.e1(h1), self.e2(h2), self.e3(h3)


class EfficientNetLite(nn.Module):
    """EfficientNet-B0 style: SiLU everywhere, MBConv, SE with a sigmoid gate."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(1, 16, 3, 2), nn.SiLU())                 # 8x8
        self.b1 = InvertedResidual(16, 64, 16, 3, 1, nn.SiLU,
                                   SqueezeExcite(64, 4, nn.Sigmoid(), nn.SiLU))
        self.b2 = InvertedResidual(16, 64, 24, 5, 2, nn.SiLU,
                                   SqueezeExcite(64, 4, nn.Sigmoid(), nn.SiLU))      # 4x4
        self.e1, self.e2 = _exit_head(16), _exit_head(24)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h1 = self.b1(self.stem(x))
        h2 = self.b2(h1)
        return self.e1(h1), self.e2(h2)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, -1, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: split channels, transform one half, concat, shuffle."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        branch_in = cin if stride == 2 else half
        self.branch2 = nn.Sequential(*_conv_bn(branch_in, half, 1), nn.ReLU(),
                                     *_conv_bn(half, half, 3, stride, half),
                                     *_conv_bn(half, half, 1), nn.ReLU())
        self.branch1 = nn.Sequential(*_conv_bn(cin, cin, 3, stride, cin),
                                     *_conv_bn(cin, half, 1), nn.ReLU()) if stride == 2 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(1, 16, 3, 2), nn.ReLU())                 # 8x8
        self.u1 = ShuffleUnit(16, 16, 1)
        self.u2 = ShuffleUnit(16, 32, 2)                                              # 4x4
        self.u3 = ShuffleUnit(32, 32, 1)
        self.e1, self.e2, self.e3 = _exit_head(16), _exit_head(32), _exit_head(32)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h1 = self.u1(self.stem(x))
        h2 = self.u2(h1)
        h3 = self.u3(h2)
        return self.e1(h1), self.e2(h2), self.e3(h3)


class TinyDetectorNet(nn.Module):
    """A YOLO-like neck: LeakyReLU backbone, upsample the deep map, concat the skip."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> nn.Module:
            return nn.Sequential(*_conv_bn(cin, cout, 3, stride), nn.LeakyReLU(0.1))

        self.c1 = block(1, 8, 1)                                                      # 16x16
        self.c2 = block(8, 16, 2)                                                     # 8x8
        self.c3 = block(16, 32, 2)                                                    # 4x4
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fuse = block(48, 24, 1)                                                  # 8x8
        self.e1, self.e2, self.e3 = _exit_head(16), _exit_head(32), _exit_head(24)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h2 = self.c2(self.c1(x))
        h3 = self.c3(h2)
        h4 = self.fuse(torch.cat([self.up(h3), h2], dim=1))
        return self.e1(h2), self.e2(h3), self.e3(h4)


class GatedKWS(nn.Module):
    """Keyword spotting on a (features, time) sequence: WaveNet-style tanh·sigmoid gates."""

    def __init__(self) -> None:
        super().__init__()
        self.front = nn.Sequential(nn.Conv1d(SIDE, 24, 3, padding=1), nn.BatchNorm1d(24),
                                   nn.ReLU())
        self.filter1, self.gate1 = nn.Conv1d(24, 24, 3, padding=1), nn.Conv1d(24, 24, 3, padding=1)
        self.filter2 = nn.Conv1d(24, 24, 3, padding=2, dilation=2)
        self.gate2 = nn.Conv1d(24, 24, 3, padding=2, dilation=2)
        self.mix = nn.Conv1d(24, 24, 1)
        self.e1, self.e2 = self._head(), self._head()

    @staticmethod
    def _head() -> nn.Module:
        return nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(24, CLASSES))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.front(x)
        h1 = h + torch.tanh(self.filter1(h)) * torch.sigmoid(self.gate1(h))
        h2 = h1 + self.mix(torch.tanh(self.filter2(h1)) * torch.sigmoid(self.gate2(h1)))
        return self.e1(h1), self.e2(h2)


@dataclass(frozen=True)
class Architecture:
    factory: Callable[[], nn.Module]
    needs: tuple[str, ...]
    """ONNX operators its default export uses beyond eedge's original set."""
    input_shape: tuple[int, ...]


ARCHITECTURES: dict[str, Architecture] = {
    "mobilenetv3": Architecture(MobileNetV3Small, ("HardSwish", "HardSigmoid", "Mul broadcast"),
                                (1, 1, SIDE, SIDE)),
    "efficientnet": Architecture(EfficientNetLite, ("Sigmoid", "Mul broadcast"),
                                 (1, 1, SIDE, SIDE)),
    "shufflenetv2": Architecture(ShuffleNetV2, ("Split", "Transpose", "5-D Reshape"),
                                 (1, 1, SIDE, SIDE)),
    "detector": Architecture(TinyDetectorNet, ("LeakyRelu", "Resize"), (1, 1, SIDE, SIDE)),
    "kws_gated": Architecture(GatedKWS, ("Tanh", "Sigmoid"), (1, SIDE, SIDE)),
}


def digits16(name: str) -> DigitsSplits:
    """scikit-learn's digits upsampled to 16x16 (bilinear), in ``name``'s input layout.

    The KWS model reads an image as a sequence: 16 rows are the features, the
    16 columns the time steps.
    """
    splits = load_digits_splits(seed=0)

    def up(x: np.ndarray) -> np.ndarray:
        big = F.interpolate(torch.from_numpy(x), size=(SIDE, SIDE), mode="bilinear",
                            align_corners=False).numpy().astype(np.float32)
        return big[:, 0] if len(ARCHITECTURES[name].input_shape) == 3 else big

    return DigitsSplits(up(splits.x_train), splits.y_train, up(splits.x_val), splits.y_val,
                        up(splits.x_test), splits.y_test)


def train(name: str, data: DigitsSplits, steps: int = 150, seed: int = 0) -> nn.Module:
    """Train every exit jointly (summed cross-entropy), a fixed number of Adam steps."""
    return fit_exits(ARCHITECTURES[name].factory, data, steps, seed, lr=5e-3, batch=32)


def fit_exits(factory: Callable[[], nn.Module], data: DigitsSplits, steps: int, seed: int,
              lr: float, batch: int) -> nn.Module:
    """Build a model and train all its exits jointly (summed cross-entropy) with Adam.

    One thread and a fixed step count: the result is the same on every run
    (about 1-5 s per model unloaded), and pytest-xdist workers do not fight over cores.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = factory()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
        rng = np.random.default_rng(seed)
        model.train()
        for _step in range(steps):
            rows = torch.from_numpy(rng.choice(len(x), batch, replace=False))
            optimizer.zero_grad()
            loss = sum(F.cross_entropy(logits, y[rows]) for logits in model(x[rows]))
            loss.backward()  # type: ignore[union-attr]
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> list[float]:
    with torch.no_grad():
        outs = model(torch.from_numpy(x))
    return [float((o.argmax(1).numpy() == y).mean()) for o in outs]


def export_default(model: nn.Module, path: Path) -> Path:
    """``torch.onnx.export`` as a user calls it (dynamo, batch 1, weights in ``.onnx.data``)."""
    import contextlib
    import io
    import warnings

    shape = next(a.input_shape for a in ARCHITECTURES.values()
                 if isinstance(model, a.factory))  # type: ignore[arg-type]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(shape),), str(path))
    return path
