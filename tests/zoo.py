"""Small multi-exit architectures the tests partition, export and run.

Each one stresses a different partitioning case: a plain chain, a residual
connection that jumps over a stage boundary, exit heads with branches,
depthwise-separable blocks, and a 1-D audio net (NCL input, lowered as
unit-height 2-D). Plus ONNX-only models built with ``onnx.helper`` (no torch
involved) and helpers to make broken models.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn


def _head(channels: int, classes: int = 5) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(channels * 4, classes))


class SequentialNet(nn.Module):
    """conv -> exit, conv -> exit, conv -> exit; nothing crosses more than one boundary."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU())
        self.c3 = nn.Sequential(nn.Conv2d(12, 16, 3, padding=1), nn.ReLU6())
        self.e1, self.e2, self.e3 = _head(8), _head(12), _head(16)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h1 = self.c1(x)
        h2 = self.c2(h1)
        h3 = self.c3(h2)
        return self.e1(h1), self.e2(h2), self.e3(h3)


class ResidualNet(nn.Module):
    """A skip connection from stage 0 into stage 2 crosses stage 1 entirely."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 8, 3, padding=1)
        self.c4 = nn.Conv2d(8, 8, 3, padding=1)
        self.e1, self.e2, self.e3 = _head(8), _head(8), _head(8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h1 = F.relu(self.c1(x))
        h2 = F.relu(self.c2(h1))
        h3 = F.relu(self.c3(h2) + h1)  # skip over the stage-1 boundary
        h4 = F.relu(self.c4(h3) + h3)  # an ordinary residual block inside stage 2
        return self.e1(h1), self.e2(h2), self.e3(h4)


class BranchyHeadNet(nn.Module):
    """Exit heads with two parallel branches (avg and max pooling) joined again."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.a1, self.m1 = nn.Linear(32, 5), nn.Linear(32, 5)
        self.head2 = nn.Linear(128, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h1 = F.relu(self.c1(x))
        avg = torch.flatten(F.adaptive_avg_pool2d(h1, 2), 1)
        mx = torch.flatten(F.max_pool2d(h1, 4), 1)
        e1 = self.a1(avg) + self.m1(mx)
        h2 = F.relu(self.c2(h1))
        both = torch.cat([torch.flatten(F.adaptive_avg_pool2d(h2, 2), 1),
                          torch.flatten(F.max_pool2d(h2, 2), 1)], dim=1)
        return e1, self.head2(both)


class DepthwiseNet(nn.Module):
    """MobileNet-style depthwise-separable blocks with two exits."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU6())
        self.dw1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6(),
                                 nn.Conv2d(8, 16, 1), nn.ReLU6())
        self.dw2 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU6(),
                                 nn.Conv2d(16, 24, 1), nn.ReLU6())
        self.e1, self.e2 = _head(16), _head(24)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h1 = self.dw1(self.stem(x))
        h2 = self.dw2(h1)
        return self.e1(h1), self.e2(h2)


class Audio1dNet(nn.Module):
    """Keyword-spotting style: MFCC-like (N, 8, 49) frames, 1-D convs, three exits.

    Covers what 1-D lowering must get right: BN on the input features (no
    layer to fold it into) and BN after Conv1d, max pooling, a padded average
    pool (count_include_pad), a dilated strided depthwise conv, a grouped
    (g=2) pointwise conv, asymmetric 'same' padding (even kernel),
    AdaptiveAvgPool1d and mean exits, and a Flatten of (C, L) whose order the
    fully connected layer must keep.
    """

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(8)   # per-feature input normalization
        self.b1 = nn.Sequential(nn.Conv1d(8, 16, 5, padding=2), nn.BatchNorm1d(16), nn.ReLU(),
                                nn.MaxPool1d(2))
        self.e1 = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, 5))
        self.b2 = nn.Sequential(nn.Conv1d(16, 16, 3, stride=2, padding=2, dilation=2,
                                          groups=16), nn.ReLU6(),
                                nn.Conv1d(16, 24, 1, groups=2), nn.ReLU(),
                                nn.AvgPool1d(3, 2, padding=1))
        self.e2 = nn.Sequential(nn.Flatten(), nn.Linear(24 * 6, 5))
        self.b3 = nn.Sequential(nn.Conv1d(24, 32, 4, padding="same"), nn.ReLU())
        self.e3 = nn.Linear(32, 5)
        with torch.no_grad():  # trained-looking statistics, not the identity
            for bn in (self.norm, self.b1[1]):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.3, 0.3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h1 = self.b1(self.norm(x))
        h2 = self.b2(h1)
        h3 = self.b3(h2)
        return self.e1(h1), self.e2(h2), self.e3(h3.mean(dim=-1))


def _separable(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin), nn.BatchNorm2d(cin), nn.ReLU6(),
            nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout), nn.ReLU6()]


class VWWLikeNet(nn.Module):
    """MobileNetV1 (alpha 0.25) at 96x96x3, two classes: an exit after the first block,
    the final exit after 12 more depthwise-separable blocks (the split serving test on
    QEMU and bench/serve_bench.py; not one of the small TORCH_MODELS)."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU6(),
                                    *_separable(8, 16, 1))
        self.exit1 = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))
        blocks = [(16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2)] + \
            [(128, 128, 1)] * 5 + [(128, 256, 2), (256, 256, 1)]
        self.body = nn.Sequential(*[m for b in blocks for m in _separable(*b)])
        self.exit2 = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.block1(x)
        return self.exit1(h), self.exit2(self.body(h))


TORCH_MODELS = {"sequential": SequentialNet, "residual": ResidualNet,
                "branchy": BranchyHeadNet, "depthwise": DepthwiseNet, "audio1d": Audio1dNet}
INPUT_SHAPE = (2, 3, 8, 8)
INPUT_SHAPES = {"audio1d": (2, 8, 49)}   # models whose input is not INPUT_SHAPE


def example_input(seed: int = 0, batch: int = 2, name: str | None = None) -> np.ndarray:
    """Random float inputs for zoo model ``name`` (the 2-D models when None)."""
    shape = INPUT_SHAPES.get(name or "", INPUT_SHAPE)
    return np.random.default_rng(seed).standard_normal((batch,) + shape[1:]).astype(np.float32)


def build_torch(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TORCH_MODELS[name]().eval()


def _two_exit_model(nodes: list[onnx.NodeProto], name: str, input_shape: list[int | str],
                    inits: list[onnx.TensorProto]) -> onnx.ModelProto:
    """A checked opset-17 model: input x, two 4-class exits exit0 and exit1."""
    batch = input_shape[0]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("exit0", TensorProto.FLOAT, [batch, 4]),
         helper.make_tensor_value_info("exit1", TensorProto.FLOAT, [batch, 4])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def onnx_two_exit_mlp(batch: int | str = "N", op: str = "Relu") -> onnx.ModelProto:
    """A two-exit MLP written directly with onnx.helper (no torch).

    x[batch,16] -> Gemm -> op -> h ; exit0 = Gemm(h) ; exit1 = Gemm(Relu(Gemm(h)))
    """
    rng = np.random.default_rng(1)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3,
                                       name)

    inits = [weight("w0", 32, 16), weight("b0", 32), weight("we0", 4, 32), weight("be0", 4),
             weight("w1", 32, 32), weight("b1", 32), weight("we1", 4, 32), weight("be1", 4)]
    nodes = [
        helper.make_node("Gemm", ["x", "w0", "b0"], ["g0"], name="fc0", transB=1),
        helper.make_node(op, ["g0"], ["h"], name="act0"),
        helper.make_node("Gemm", ["h", "we0", "be0"], ["exit0"], name="exit0_fc", transB=1),
        helper.make_node("Gemm", ["h", "w1", "b1"], ["g1"], name="fc1", transB=1),
        helper.make_node("Relu", ["g1"], ["h1"], name="act1"),
        helper.make_node("Gemm", ["h1", "we1", "be1"], ["exit1"], name="exit1_fc", transB=1),
    ]
    return _two_exit_model(nodes, "mlp", [batch, 16], inits)


def onnx_conv_model(batch: int | str = "N") -> onnx.ModelProto:
    """conv 3->8 (3x3) -> relu -> depthwise 3x3 -> global pool -> flatten -> gemm (1 exit)."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in
             (("wc", (8, 3, 3, 3)), ("bc", (8,)), ("wd", (8, 1, 3, 3)), ("bd", (8,)),
              ("wf", (5, 8)), ("bf", (5,)))]
    nodes = [
        helper.make_node("Conv", ["x", "wc", "bc"], ["c"], name="conv", pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "wd", "bd"], ["d"], name="dw", pads=[1, 1, 1, 1],
                         group=8, kernel_shape=[3, 3]),
        helper.make_node("GlobalAveragePool", ["d"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "convnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                         [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 5])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def onnx_conv1d_model(batch: int | str = "N") -> onnx.ModelProto:
    """A two-exit 1-D net with onnx.helper: what plain exporters leave unfolded.

    x[N,1,64] -> Conv 1->6 (k5, pads 1,3: not TFLite SAME) -> BatchNormalization
    -> Relu -> h; exit0 = Gemm(Flatten(GlobalAveragePool(h)));
    h -> depthwise Conv (k3, pads 0,2) -> MaxPool (k3, s2) -> Flatten -> Gemm = exit1.
    """
    rng = np.random.default_rng(3)

    def init(name: str, *shape: int, low: float | None = None) -> onnx.TensorProto:
        value = 0.3 * rng.standard_normal(shape) if low is None else rng.uniform(low, 2.0, shape)
        return numpy_helper.from_array(value.astype(np.float32), name)

    inits = [init("wc", 6, 1, 5), init("bc", 6), init("gamma", 6, low=0.5), init("beta", 6),
             init("mean", 6), init("var", 6, low=0.5), init("w0", 4, 6), init("b0", 4),
             init("wd", 6, 1, 3), init("bd", 6), init("w1", 4, 6 * 31), init("b1", 4)]
    nodes = [
        helper.make_node("Conv", ["x", "wc", "bc"], ["c"], name="conv", pads=[1, 3],
                         kernel_shape=[5]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"],
                         name="bn", epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["h"], name="relu"),
        helper.make_node("GlobalAveragePool", ["h"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f0"], name="flat0"),
        helper.make_node("Gemm", ["f0", "w0", "b0"], ["exit0"], name="exit0_fc", transB=1),
        helper.make_node("Conv", ["h", "wd", "bd"], ["d"], name="dw", pads=[0, 2], group=6,
                         kernel_shape=[3]),
        helper.make_node("MaxPool", ["d"], ["p"], name="pool", kernel_shape=[3], strides=[2]),
        helper.make_node("Flatten", ["p"], ["f1"], name="flat1"),
        helper.make_node("Gemm", ["f1", "w1", "b1"], ["exit1"], name="exit1_fc", transB=1),
    ]
    return _two_exit_model(nodes, "conv1d", [batch, 1, 64], inits)
