"""End to end: a torch model with every activation, default torch.onnx.export, int8 export.

export_onnx runs its own checks (float stages vs ONNX Runtime, int8 staged vs
monolithic, eedge's int8 reference vs TFLite Micro on every stage output): a
model that exports is verified.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from eedge.export import export_onnx

ACTIVATION_ONNX_OPS = {"Sigmoid", "Tanh", "HardSwish", "LeakyRelu", "PRelu", "Elu"}


class TwoExits(nn.Module):
    """conv -> Hardswish -> PReLU(per channel) -> exit 0 (via Sigmoid, SiLU) and
    -> conv -> LeakyReLU -> ELU -> Tanh -> exit 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(1, 6, 3, padding=1)
        self.act0 = nn.Sequential(nn.Hardswish(), nn.PReLU(6))
        self.head0 = nn.Linear(6 * 16, 4)
        self.conv1 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.act1 = nn.Sequential(nn.LeakyReLU(0.1), nn.ELU(), nn.PReLU())
        self.head1 = nn.Linear(8 * 4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act0(self.conv0(x))
        gate = torch.sigmoid(h)
        e0 = self.head0(torch.flatten(nn.functional.silu(h) * gate, 1))
        g = self.act1(self.conv1(h))
        e1 = self.head1(torch.flatten(torch.tanh(g), 1))
        return e0, e1


def test_torch_model_with_every_activation_exports_int8_and_verifies(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = TwoExits().eval()
    x = torch.randn(1, 1, 4, 4)
    path = tmp_path / "acts.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path))
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert ACTIVATION_ONNX_OPS <= ops and "Mul" in ops
    calibration = np.random.default_rng(0).standard_normal((64, 1, 4, 4)).astype(np.float32)
    export_onnx(path, tmp_path / "bundle", int8=True, calibration=calibration, force=True)
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    report = manifest["verification"]["tflite_int8"]["reference_vs_tflm"]
    assert report["stages"] and all(s["reference"] == "TFLite Micro interpreter"
                                    for s in report["stages"])
