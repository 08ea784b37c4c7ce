"""End to end: a torch model with a squeeze-excite block, to int8, C on the host and a Cortex-M4.

The SE block (AdaptiveAvgPool2d(1) -> 1x1 conv or Linear -> ReLU -> 1x1 conv
or Linear -> Sigmoid -> x * s) is the broadcast MUL (N,C,H,W) x (N,C,1,1),
NHWC (1,H,W,C) x (1,1,1,C); exit 0 sits right after it, so a stage boundary
cuts the graph there. The second stage uses constants the ONNX way
(x + 3, x * (1/6), x / 2, a (1,C,1,1) bias, Sub, Max, Min). The Cortex-M4
runs (DSP on and off) use tests/ops/test_binary.py's chain model, which
reaches every kernel branch (test_binary_qemu.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from eedge.codegen.device_run import DeviceRun, run_on_target
from eedge.codegen.inputs import device_samples
from eedge.codegen.model_source import CodegenModel, load_codegen_model
from eedge.export import export_onnx
from eedge.reference.executor import execute
from eedge.targets import load_target

C = 8


class SqueezeExcite(nn.Module):
    def __init__(self, linear: bool) -> None:
        super().__init__()
        self.linear = linear
        self.pool = nn.AdaptiveAvgPool2d(1)
        if linear:
            self.fc1, self.fc2 = nn.Linear(C, C // 2), nn.Linear(C // 2, C)
        else:
            self.fc1, self.fc2 = nn.Conv2d(C, C // 2, 1), nn.Conv2d(C // 2, C, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.pool(x)
        if self.linear:
            s = s.flatten(1)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
        if self.linear:
            s = s.view(-1, C, 1, 1)
        return x * s


class SENet(nn.Module):
    """conv -> SE -> exit 0 | conv -> constant arithmetic -> exit 1."""

    def __init__(self, linear: bool) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, C, 3, padding=1)
        self.se = SqueezeExcite(linear)
        self.head0 = nn.Linear(C * 4, 4)
        self.conv = nn.Conv2d(C, C, 3, padding=1)
        self.bias = nn.Parameter(torch.linspace(-0.5, 0.5, C).view(1, C, 1, 1))
        self.head1 = nn.Linear(C * 4, 4)
        self.pool = nn.AdaptiveAvgPool2d(2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.se(torch.relu(self.stem(x)))
        exit0 = self.head0(self.pool(y).flatten(1))
        z = self.conv(y)
        hswish = z * torch.clamp(z + 3, 0, 6) * (1 / 6)   # x + 3, x * (1/6): scalar constants
        w = torch.maximum(hswish / 2 - self.bias, torch.minimum(z, y))
        exit1 = self.head1(self.pool(w).flatten(1))
        return exit0, exit1


def _export(tmp_path: Path, linear: bool) -> Path:
    torch.manual_seed(0)
    model = SENet(linear).eval()
    x = torch.randn(2, 1, 8, 8)
    path = tmp_path / "senet.onnx"
    torch.onnx.export(model, (x,), str(path))   # the default (dynamo) exporter
    calibration = np.random.default_rng(0).standard_normal((32, 1, 8, 8)).astype(np.float32)
    result = export_onnx(path, tmp_path / "bundle", int8=True, calibration=calibration,
                         force=True)
    return result.bundle.path


@pytest.mark.parametrize("linear", [False, True])
def test_squeeze_excite_net_exports_int8_and_runs_bit_exactly_in_c(tmp_path: Path,
                                                                  linear: bool) -> None:
    """export_onnx verifies reference vs tflite-micro per stage; the host C build equals it."""
    bundle = _export(tmp_path, linear)
    model = load_codegen_model(bundle)
    ops = [n.op_type for n in model.graph.nodes]
    assert {"MUL", "ADD", "SUB", "MAXIMUM", "MINIMUM", "LOGISTIC"} <= set(ops)
    se_mul = next(n for n in model.graph.nodes if n.op_type == "MUL" and
                  {tuple(model.graph.tensors[t].shape[1:]) for t in n.inputs
                   if t in model.graph.tensors} == {(8, 8, C), (1, 1, C)})
    first_stage = model.stages[0]
    assert se_mul.outputs[0] in first_stage.outputs   # the cut right after the SE block
    x = np.random.default_rng(1).standard_normal((6, 1, 8, 8)).astype(np.float32)
    run = run_on_target(model, load_target("host"), x)
    _assert_device_equals_reference(model, x, run)


def _assert_device_equals_reference(model: CodegenModel, x: np.ndarray, run: DeviceRun) -> None:
    """Every stage output of every sample: the firmware's bytes equal the int8 reference's."""
    info = model.graph.tensors[model.input]
    samples = device_samples(x, tuple(int(d) for d in info.shape), model.input_quant.scale[0],
                             model.input_quant.zero_point[0], model.input_layout)
    env = execute(model.graph, {model.input: samples.reshape(
        [len(samples)] + [int(d) for d in info.shape[1:]])})
    assert len(run.run.samples) == len(x)
    compared = 0
    for n, sample in enumerate(run.run.samples):
        for stage, outputs in zip(model.stages, sample.stage_outputs):
            for name, got in zip(stage.outputs, outputs):
                expected = env[name][n].reshape(-1)[: got.size]
                assert np.array_equal(got, expected), f"sample {n} stage {stage.index} {name}"
                compared += got.size
    assert compared > 0
