"""Transformer operators lowered to TFLite builtins (eedge.ops.sequence_lowering).

Each model is a small torch module exported the way users export
(``torch.onnx.export``, the default dynamo exporter, batch 1); the lowered
float graph is run by eedge's reference executor and compared with ONNX
Runtime on the normalized model, at batch 3 where the batch is symbolic,
so a lowering that mixed samples along the first axis would fail. The
asserts on the lowered ops pin the cheap forms: one FULLY_CONNECTED per
Linear (bias folded), BATCH_MATMUL reading K stored transposed through
``adj_y`` instead of a TRANSPOSE, LayerNormalization as the TFLite
converter's eight builtins, x[:, 0] as SLICE + a free reshape.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from eedge.backends.onnx_writer import serialize
from eedge.errors import ModelError, UnsupportedOpError
from eedge.export import export_onnx, fixed_batch
from eedge.frontends.onnx_frontend import OnnxImport, import_onnx, read_onnx_file
from eedge.ir.graph import Graph
from eedge.ir.layout import input_layout, to_channels_last
from eedge.passes.layout_classes import PLAIN, SPATIAL, layout_classes
from eedge.passes.lower_tflite import lower_to_tflite
from eedge.reference.executor import execute

F32 = np.float32


def exported(module: nn.Module, shape: tuple[int, ...], path: Path,
             input_shape: tuple[object, ...] | None = None) -> OnnxImport:
    torch.manual_seed(0)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(shape),), str(path))
    shapes = {None: input_shape} if input_shape else None
    return import_onnx(read_onnx_file(path), shapes)


def lowered_matches_ort(imported: OnnxImport, batch: int) -> Graph:
    graph = imported.graph
    lowered = lower_to_tflite(graph) if imported.lowering_graph is None else \
        fixed_batch(lower_to_tflite(imported.lowering_graph))
    shape = [batch if isinstance(d, str) else d for d in graph.inputs[0].shape]
    x = np.random.default_rng(1).standard_normal(shape).astype(F32)
    session = ort.InferenceSession(serialize(imported.model))
    expected = session.run(None, {graph.inputs[0].name: x})
    layout = export_layout(imported)
    got = execute(lowered, {lowered.inputs[0].name: to_channels_last(x, layout)})
    for name, ref in zip(lowered.exits, expected):
        np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=1e-5)
    return lowered


def export_layout(imported: OnnxImport) -> str | None:
    """The input layout the bundle's manifest would record (what runtimes convert with)."""
    info = imported.graph.inputs[0]
    tokens = layout_classes(imported.graph).get(info.name) == PLAIN
    return input_layout(len(info.shape), "onnx", tokens)


def ops(graph: Graph) -> Counter[str]:
    return Counter(n.op_type for n in graph.nodes)


class TokenMLP(nn.Module):
    """Linear layers on (N, T, D) tokens, GELU between, mean-pooled exit."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(6, 12), nn.Linear(12, 6), nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc2(torch.nn.functional.gelu(self.fc1(x))).mean(dim=1))


class Attention(nn.Module):
    """timm's attention: qkv Linear, heads by reshape/permute, unbind, q @ k^T, softmax."""

    def __init__(self, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))
        return self.head(x[:, 0])


class TorchMHA(nn.Module):
    """nn.MultiheadAttention as most users write it (batch_first), torch merges batch x heads."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.mha(x, x, x, need_weights=False)[0].mean(dim=1))


def test_linear_on_tokens_is_one_fully_connected_keeping_dims(tmp_path: Path) -> None:
    lowered = lowered_matches_ort(exported(TokenMLP(), (1, 5, 6), tmp_path / "m.onnx",
                                           ("N", 5, 6)), batch=3)
    fcs = [n for n in lowered.nodes if n.op_type == "FULLY_CONNECTED"]
    assert sum(bool(n.attrs.get("keep_num_dims")) for n in fcs) == 2
    assert ops(lowered)["ADD"] == 0, "nn.Linear's bias Add is folded into the FC"
    assert ops(lowered)["GELU"] == 1 and ops(lowered)["TRANSPOSE"] == 0


class SingleHead(nn.Module):
    """One attention head on (N, T, D) tokens: K comes out of a Linear in ONNX order."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.head = (nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8),
                                             nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = (self.q(x) @ self.k(x).transpose(1, 2)).softmax(dim=-1)
        return self.head((attn @ self.v(x)).mean(dim=1))


def test_a_key_from_a_linear_is_read_transposed_for_free(tmp_path: Path) -> None:
    lowered = lowered_matches_ort(exported(SingleHead(), (1, 5, 8), tmp_path / "m.onnx",
                                           ("N", 5, 8)), batch=3)
    products = [n for n in lowered.nodes if n.op_type == "BATCH_MATMUL"]
    assert [bool(n.attrs["adj_y"]) for n in products] == [True, False]  # q @ k^T, p @ v
    assert ops(lowered)["TRANSPOSE"] == 0


def test_multi_head_attention_moves_each_byte_once(tmp_path: Path) -> None:
    """timm's permute(2, 0, 3, 1, 4) swaps tokens and heads: q, k and v are each
    transposed once (k straight into K^T), the heads merged back once; nothing else moves."""
    lowered = lowered_matches_ort(exported(Attention(), (1, 5, 8), tmp_path / "m.onnx",
                                           ("N", 5, 8)), batch=3)
    counts = ops(lowered)
    assert (counts["BATCH_MATMUL"], counts["SOFTMAX"], counts["TRANSPOSE"]) == (2, 1, 4)
    for node in lowered.nodes:  # the batch stays on axis 0: TFLite Micro's rule and eedge's
        if node.op_type == "TRANSPOSE":
            assert lowered.constants[node.inputs[1]][0] == 0


def test_layer_norm_is_the_converters_eight_builtins(tmp_path: Path) -> None:
    module = nn.Sequential(nn.LayerNorm(6), nn.Flatten(), nn.Linear(30, 3))
    with torch.no_grad():
        module[0].weight.uniform_(0.5, 1.5)
        module[0].bias.uniform_(-0.5, 0.5)
    lowered = lowered_matches_ort(exported(module, (1, 5, 6), tmp_path / "m.onnx",
                                           ("N", 5, 6)), batch=3)
    counts = ops(lowered)
    assert (counts["MEAN"], counts["SQUARED_DIFFERENCE"], counts["RSQRT"]) == (2, 1, 1)
    assert (counts["SUB"], counts["MUL"], counts["ADD"]) == (1, 2, 2)


def test_default_layer_norm_skips_unit_scale_and_zero_shift(tmp_path: Path) -> None:
    module = nn.Sequential(nn.LayerNorm(6), nn.Flatten(), nn.Linear(30, 3))
    lowered = lowered_matches_ort(exported(module, (1, 5, 6), tmp_path / "m.onnx"), batch=1)
    assert (ops(lowered)["MUL"], ops(lowered)["ADD"]) == (1, 1)  # normalize; epsilon


def test_torch_multihead_attention_keeps_the_batch_first(tmp_path: Path) -> None:
    """torch writes (T, N*h, d) tensors; the fixed-batch-1 export is lowered from its
    batch-followed twin, so every TFLite tensor keeps a batch (or unit) axis first."""
    imported = exported(TorchMHA(), (1, 5, 8), tmp_path / "m.onnx")
    assert imported.lowering_graph is not None
    lowered = lowered_matches_ort(imported, batch=1)
    assert all(not isinstance(d, str) for t in lowered.tensors.values() for d in t.shape)
    for node in lowered.nodes:
        if node.op_type == "TRANSPOSE":
            assert lowered.constants[node.inputs[1]][0] == 0
    symbolic = exported(TorchMHA(), (1, 5, 8), tmp_path / "s.onnx", ("N", 5, 8))
    lowered_matches_ort(symbolic, batch=3)


def test_sequence_and_convolution_tensors_get_their_own_layouts(tmp_path: Path) -> None:
    """A conv stem (channels-last) feeding tokens (ONNX order), as a ViT's patch embedding."""

    class PatchTokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.norm = nn.Conv2d(1, 8, 2, 2), nn.LayerNorm(8)
            self.head = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tokens = self.norm(self.embed(x).flatten(2).transpose(1, 2))
            return self.head(tokens.mean(dim=1))

    imported = exported(PatchTokens(), (1, 1, 8, 8), tmp_path / "m.onnx", ("N", 1, 8, 8))
    classes = layout_classes(imported.graph)
    conv_out = next(n.outputs[0] for n in imported.graph.nodes if n.op_type == "Conv")
    norm_out = next(n.outputs[0] for n in imported.graph.nodes
                    if n.op_type == "LayerNormalization")
    assert (classes[conv_out], classes[norm_out]) == (SPATIAL, PLAIN)
    lowered = lowered_matches_ort(imported, batch=3)
    assert ops(lowered)["TRANSPOSE"] == 0, "NHWC patches are already (N, T, D) tokens"


def test_softmax_over_a_channels_last_axis_is_refused(tmp_path: Path) -> None:
    class ChannelSoftmax(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.head = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 64, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(x).softmax(dim=-1).flatten(1))

    imported = exported(ChannelSoftmax(), (1, 1, 8, 8), tmp_path / "m.onnx")
    with pytest.raises(UnsupportedOpError, match="softmax over axis 3"):
        lower_to_tflite(imported.graph)


def test_attention_block_int8_equals_tflite_micro(tmp_path: Path) -> None:
    """LayerNorm, attention and the class-token Gather through PTQ: export verifies the
    int8 stages against TFLite Micro (it raises on any byte that differs)."""
    imported_path = tmp_path / "m.onnx"
    exported(Attention(), (1, 5, 8), imported_path)
    calib = np.random.default_rng(0).standard_normal((64, 5, 8)).astype(F32)
    result = export_onnx(imported_path, tmp_path / "bundle", int8=True, calibration=calib,
                         formats=("onnx",))
    stage = result.bundle.manifest["stages"][0]
    assert "tflite_int8" in stage["files"]


class StackedRNN(nn.Module):
    """nn.RNN, which the dynamo exporter writes already unrolled: each step adds the input
    projection, an (N, H) tensor, to the recurrent one, a (1, N, H) tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn1, self.rnn2 = nn.RNN(4, 6, batch_first=True), nn.RNN(6, 6, batch_first=True)
        self.exit1, self.exit2 = nn.Linear(6, 3), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1, _ = self.rnn1(x)
        h2, _ = self.rnn2(h1)
        return self.exit1(h1[:, -1]), self.exit2(h2[:, -1])


def test_lower_rank_operands_broadcast_by_a_free_reshape(tmp_path: Path) -> None:
    lowered = lowered_matches_ort(exported(StackedRNN(), (1, 5, 4), tmp_path / "m.onnx"),
                                  batch=1)
    assert ops(lowered)["TANH"] == 10 and ops(lowered)["TRANSPOSE"] == 0


class TimeMajor(nn.Module):
    """torch's defaults: time-major (T, N, D) layers, a bidirectional GRU, mean over time."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 6, bidirectional=True)
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.gru(x.transpose(0, 1))      # (T, N, 12): the batch on axis 1
        return self.head(y.mean(dim=0))


def test_time_major_tensors_keep_the_batch_first_once_lowered(tmp_path: Path) -> None:
    """Concatenating per-step states along time and reducing over time (axis 0) while the
    batch sits on axis 1 or 2: the lowered tensors store the batch first."""
    lowered = lowered_matches_ort(exported(TimeMajor(), (1, 5, 4), tmp_path / "m.onnx"),
                                  batch=1)
    for node in lowered.nodes:
        if node.op_type == "TRANSPOSE":
            assert lowered.constants[node.inputs[1]][0] == 0
    lowered_matches_ort(exported(TimeMajor(), (1, 5, 4), tmp_path / "s.onnx", ("N", 5, 4)),
                        batch=3)


class TimeMajorExits(nn.Module):
    """Time-major recurrent layers with an exit after each: unrolled, the layers hand on
    per-step (N, H) states, so the stage boundary is batch first after all."""

    def __init__(self) -> None:
        super().__init__()
        self.gru1, self.gru2 = nn.GRU(4, 6), nn.GRU(6, 6)
        self.exit1, self.exit2 = nn.Linear(6, 3), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1, _ = self.gru1(x.transpose(0, 1))
        h2, _ = self.gru2(h1)
        return self.exit1(h1[-1]), self.exit2(h2[-1])


class TimeMajorTransformer(nn.Module):
    """torch's default encoder layer (batch_first=False) with an exit after each layer."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
                                    for _ in range(2))
        self.exits = nn.ModuleList(nn.Linear(8, 3) for _ in range(2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h, outs = x.transpose(0, 1), []
        for layer, head in zip(self.layers, self.exits):
            h = layer(h)
            outs.append(head(h.mean(dim=0)))
        return tuple(outs)


def test_time_major_recurrent_exits_export(tmp_path: Path) -> None:
    exported(TimeMajorExits(), (1, 5, 4), tmp_path / "m.onnx")
    calib = np.random.default_rng(0).standard_normal((32, 5, 4)).astype(F32)
    export_onnx(tmp_path / "m.onnx", tmp_path / "bundle", int8=True, calibration=calib,
                formats=("onnx",))


def test_time_major_hand_offs_are_transposed_batch_first(tmp_path: Path) -> None:
    """torch's default (T, N, D) encoder layers with an exit after each: the hand-off is
    transposed batch first at the boundary, so the cascade routes rows correctly."""
    from eedge.runtime import Cascade

    exported(TimeMajorTransformer(), (1, 5, 8), tmp_path / "m.onnx")
    calib = np.random.default_rng(0).standard_normal((32, 5, 8)).astype(F32)
    result = export_onnx(tmp_path / "m.onnx", tmp_path / "bundle", int8=True,
                         calibration=calib, formats=("onnx",))
    handoffs = result.bundle.manifest["stages"][0]["outputs"][1:]
    assert [h["name"].endswith("/batch_first") for h in handoffs] == [True]
    x = np.random.default_rng(3).standard_normal((16, 5, 8)).astype(F32)
    whole = ort.InferenceSession(str(tmp_path / "bundle" / "model.onnx"))
    logits = [np.concatenate(parts) for parts in zip(*(whole.run(None, {"x": row[None]})
                                                       for row in x))]
    probs = np.exp(logits[0]) / np.exp(logits[0]).sum(axis=1, keepdims=True)
    threshold = float(np.median(probs.max(axis=1)))
    got = Cascade(tmp_path / "bundle", thresholds=[threshold, None]).infer(x)
    assert 0 < int((got.exit_index == 0).sum()) < len(x)
    for row, k in enumerate(got.exit_index):
        assert got.predictions[row] == int(np.argmax(logits[k][row]))


def test_long_sequences_concatenate_in_groups_tflite_micro_accepts(tmp_path: Path) -> None:
    """A bidirectional GRU's output over 12 steps is one Concat of 12 states; TFLite Micro
    takes at most 10 inputs per CONCATENATION (export verifies the int8 file in it)."""
    exported(TimeMajor(), (1, 12, 4), tmp_path / "m.onnx")
    calib = np.random.default_rng(0).standard_normal((32, 12, 4)).astype(F32)
    result = export_onnx(tmp_path / "m.onnx", tmp_path / "bundle", int8=True,
                         calibration=calib, formats=("onnx",))
    from eedge.frontends.tflite_frontend import read_tflite_bytes
    stage = result.bundle.path / result.bundle.manifest["stages"][0]["files"]["tflite_int8"]
    graph, _ = read_tflite_bytes(stage.read_bytes())
    concats = [n for n in graph.nodes if n.op_type == "CONCATENATION"]
    assert concats and max(len(n.inputs) for n in concats) <= 10
