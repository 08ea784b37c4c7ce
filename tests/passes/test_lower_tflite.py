"""Lowering to the TFLite dialect preserves what the ONNX model computes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from conftest import exported_onnx
from onnx import helper
from zoo import example_input, onnx_conv1d_model, onnx_conv_model, onnx_two_exit_mlp

from eedge.backends.onnx_writer import serialize
from eedge.errors import UnsupportedOpError
from eedge.frontends.onnx_frontend import onnx_to_graph
from eedge.ir.graph import Graph
from eedge.ir.layout import to_channels_last
from eedge.passes.lower_tflite import flatten_permutation, lower_to_tflite, moves_no_bytes
from eedge.reference.executor import execute


def assert_lowering_is_exact(model: onnx.ModelProto, x: np.ndarray, layout: str) -> Graph:
    """The lowered graph's exits equal onnxruntime's on the same (channels-first) x."""
    lowered = lower_to_tflite(onnx_to_graph(model))
    assert lowered.dialect == "tflite"
    assert not {"BatchNormalization", "Relu", "Conv", "Gemm"} & {n.op_type for n in lowered.nodes}
    name = model.graph.input[0].name
    expected = ort.InferenceSession(serialize(model)).run(None, {name: x})
    env = execute(lowered, {name: to_channels_last(x, layout)})
    for exit_name, ref in zip(lowered.exits, expected):
        np.testing.assert_allclose(env[exit_name], ref, atol=1e-5)
    return lowered


@pytest.mark.parametrize("name", ["sequential", "residual", "branchy", "depthwise", "audio1d"])
def test_lowered_graph_computes_the_onnx_model(name: str) -> None:
    layout = "NCL" if name == "audio1d" else "NCHW"
    assert_lowering_is_exact(exported_onnx(name), example_input(seed=4, batch=6, name=name),
                             layout)


def test_relu_is_fused_and_bn_folded() -> None:
    lowered = lower_to_tflite(onnx_to_graph(exported_onnx("sequential")))
    convs = [n for n in lowered.nodes if n.op_type == "CONV_2D"]
    assert [c.attrs["activation"] for c in convs] == ["RELU", "RELU", "RELU6"]


def test_flatten_permutation_maps_nhwc_order_to_nchw() -> None:
    c, h, w = 3, 2, 2
    nchw = np.arange(c * h * w).reshape(1, c, h, w)
    nhwc_flat = nchw.transpose(0, 2, 3, 1).reshape(-1)
    perm = flatten_permutation(c, h, w)
    assert np.array_equal(nchw.reshape(-1)[perm], nhwc_flat)
    assert flatten_permutation(5, 1, 1) is None


def test_protected_tensor_is_not_fused_away() -> None:
    graph = onnx_to_graph(onnx_two_exit_mlp())
    assert "g0" not in lower_to_tflite(graph).tensors
    assert "g0" in lower_to_tflite(graph, protected=["g0"]).tensors


def test_depthwise_and_global_pool_lowering() -> None:
    lowered = lower_to_tflite(onnx_to_graph(onnx_conv_model()))
    ops = [n.op_type for n in lowered.nodes]
    assert ops == ["CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "RESHAPE", "FULLY_CONNECTED"]


def test_explicit_default_dilations_still_lower() -> None:
    model = onnx_conv_model()
    model.graph.node[2].attribute.extend([helper.make_attribute("dilations", [1, 1])])
    assert lower_to_tflite(onnx_to_graph(model)).nodes[1].op_type == "DEPTHWISE_CONV_2D"


def test_clip_that_is_not_a_relu_is_rejected() -> None:
    from onnx import numpy_helper

    model = onnx_conv_model()
    model.graph.node[1].CopyFrom(helper.make_node("Clip", ["c", "lo", "hi"], ["r"], name="relu"))
    model.graph.initializer.extend([numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
                                    numpy_helper.from_array(np.array(3.0, np.float32), "hi")])
    with pytest.raises(UnsupportedOpError, match=r"Clip node 'relu'.*Clip\(0.0, 3.0\)"):
        lower_to_tflite(onnx_to_graph(model))


def test_grouped_conv_lowers_to_a_block_diagonal_conv() -> None:
    from onnx import numpy_helper

    model = onnx_conv_model()
    rng = np.random.default_rng(0)
    model.graph.initializer[2].CopyFrom(numpy_helper.from_array(
        rng.standard_normal((8, 4, 3, 3)).astype(np.float32), "wd"))
    model.graph.node[2].CopyFrom(helper.make_node("Conv", ["r", "wd", "bd"], ["d"], name="dw",
                                                  pads=[1, 1, 1, 1], group=2,
                                                  kernel_shape=[3, 3]))
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    lowered = assert_lowering_is_exact(model, x, "NCHW")
    grouped = lowered.nodes[1]
    assert grouped.op_type == "CONV_2D"
    weight = lowered.constants[grouped.inputs[1]]  # OHWI
    assert weight.shape == (8, 3, 3, 8)
    assert not weight[:4, :, :, 4:].any() and not weight[4:, :, :, :4].any()


def test_conv1d_lowers_to_unit_height_2d_ops() -> None:
    lowered = lower_to_tflite(onnx_to_graph(exported_onnx("audio1d")))
    assert lowered.inputs[0].shape[1:] == (1, 49, 8)   # (N, 8, 49) NCL -> (N, 1, L, C)
    convs = {n.op_type: n for n in lowered.nodes if "CONV" in n.op_type}
    dw = convs["DEPTHWISE_CONV_2D"]
    assert lowered.constants[dw.inputs[1]].shape == (1, 1, 3, 16)
    assert (dw.attrs["stride_h"], dw.attrs["stride_w"]) == (1, 2)
    assert (dw.attrs["dilation_h"], dw.attrs["dilation_w"]) == (1, 2)
    pools = [n for n in lowered.nodes if "POOL" in n.op_type]
    assert [(p.op_type, p.attrs["filter_h"], p.attrs["filter_w"]) for p in pools] == \
        [("MAX_POOL_2D", 1, 2), ("AVERAGE_POOL_2D", 1, 3)]
    # pads (2, 2) of the dilated depthwise are not TFLite SAME (that is (1, 2)): a PAD;
    # AvgPool1d(3, 2, padding=1) counts its pads: a PAD; Conv1d(padding='same', k=4)
    # pads (1, 2), which is SAME: none
    pads = [n for n in lowered.nodes if n.op_type == "PAD"]
    assert [lowered.constants[p.inputs[1]].tolist() for p in pads] == \
        [[[0, 0], [0, 0], [2, 2], [0, 0]], [[0, 0], [0, 0], [1, 1], [0, 0]]]
    assert [n.attrs["padding"] for n in lowered.nodes if n.op_type == "CONV_2D"] == \
        ["SAME", "VALID", "SAME"]


def test_conv1d_with_batchnorm_and_explicit_padding() -> None:
    model = onnx_conv1d_model()
    x = np.random.default_rng(3).standard_normal((4, 1, 64)).astype(np.float32)
    lowered = assert_lowering_is_exact(model, x, "NCL")
    ops = [n.op_type for n in lowered.nodes]
    assert ops == ["PAD", "CONV_2D", "MEAN", "RESHAPE", "FULLY_CONNECTED", "PAD",
                   "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"]


def test_batchnorm_on_the_input_is_a_1x1_depthwise_conv() -> None:
    lowered = lower_to_tflite(onnx_to_graph(exported_onnx("audio1d")))
    first = lowered.nodes[0]
    assert first.op_type == "DEPTHWISE_CONV_2D" and first.inputs[0] == lowered.inputs[0].name
    assert lowered.constants[first.inputs[1]].shape == (1, 1, 1, 8)


def _mlp_with_batchnorm(after: str) -> onnx.ModelProto:
    """onnx_two_exit_mlp with a BatchNormalization on tensor ``after`` (its readers follow)."""
    from onnx import numpy_helper

    model = onnx_two_exit_mlp()
    width = 16 if after == "x" else 32
    rng = np.random.default_rng(5)
    stats = {"bn_g": rng.uniform(0.5, 2, width), "bn_b": rng.standard_normal(width),
             "bn_m": rng.standard_normal(width), "bn_v": rng.uniform(0.5, 2, width)}
    model.graph.initializer.extend(numpy_helper.from_array(v.astype(np.float32), k)
                                   for k, v in stats.items())
    nodes = list(model.graph.node)
    for n in nodes:
        n.input[:] = [f"{after}_bn" if t == after else t for t in n.input]
    producer = next((i for i, n in enumerate(nodes) if after in n.output), -1)
    nodes.insert(producer + 1, helper.make_node("BatchNormalization", [after, *stats],
                                                [f"{after}_bn"], name="bn", epsilon=1e-3))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def test_batchnorm_after_a_fully_connected_layer_is_folded_into_it() -> None:
    model = _mlp_with_batchnorm("g1")
    x = np.random.default_rng(2).standard_normal((5, 16)).astype(np.float32)
    lowered = assert_lowering_is_exact(model, x, "")
    assert [n.op_type for n in lowered.nodes] == ["FULLY_CONNECTED"] * 4


def test_batchnorm_on_a_2d_input_is_rejected_with_the_reason() -> None:
    with pytest.raises(UnsupportedOpError, match="BatchNormalization node 'bn'.*2-D tensor "
                                                 "that does not follow a fully connected"):
        lower_to_tflite(onnx_to_graph(_mlp_with_batchnorm("x")))


def test_fold_batchnorm_keeps_the_conv1d_weight_shape() -> None:
    from eedge.passes.fold_batchnorm import fold_batchnorm

    folded = fold_batchnorm(onnx_to_graph(onnx_conv1d_model()))
    conv = next(n for n in folded.nodes if n.op_type == "Conv")
    assert "BatchNormalization" not in {n.op_type for n in folded.nodes}
    assert folded.constants[conv.inputs[1]].shape == (6, 1, 5)


def test_reshape_between_3d_and_4d_must_not_move_bytes() -> None:
    assert moves_no_bytes(("N", 16, 24), ("N", 16, 1, 24))   # unsqueeze H
    assert moves_no_bytes(("N", 16, 1, 1), ("N", 16, 1))
    assert moves_no_bytes(("N", 1, 64), ("N", 1, 8, 8))      # one channel
    assert not moves_no_bytes(("N", 16, 24), ("N", 1, 16, 24))  # channels become rows


def test_a_reshape_that_needs_a_transpose_is_rejected() -> None:
    from onnx import numpy_helper

    model = onnx_conv1d_model()
    nodes = list(model.graph.node)
    # exit 0 reads h (N, 6, 64) as a one-channel image (N, 1, 6, 64): rows are channels
    nodes.insert(3, helper.make_node("Unsqueeze", ["h", "ax"], ["img"], name="as_image"))
    nodes[4].input[0] = "img"
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    inits = [i for i in model.graph.initializer if i.name != "w0"]
    inits += [numpy_helper.from_array(np.array([1], np.int64), "ax"),
              numpy_helper.from_array(np.ones((4, 1), np.float32), "w0")]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
    with pytest.raises(UnsupportedOpError, match="Unsqueeze node 'as_image'.*needs a transpose"):
        lower_to_tflite(onnx_to_graph(model))


def test_every_accepted_operator_has_a_lowering() -> None:
    """The frontend accepts exactly the operators the lowering knows (the README's table of
    them is checked against the paths by tests/ops/test_table.py)."""
    from eedge.frontends.ops import SUPPORTED_OPS, supported_onnx_ops
    from eedge.ops import registry
    from eedge.passes.lower_tflite import _Lowerer

    assert [op for op in SUPPORTED_OPS if not hasattr(_Lowerer, f"op_{op}")] == []
    # operators added through the registry are accepted exactly when they have a lowering
    assert [op for op in supported_onnx_ops() if not hasattr(_Lowerer, f"op_{op}")
            and registry.lowering(op) is None] == []
    assert "1-D" in SUPPORTED_OPS["Conv"]


class _PaddedPools(torch.nn.Module):
    """Pools with torch's usual padding=1, which is not TFLite SAME for even sizes."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        conv = torch.nn.Conv1d if dims == 1 else torch.nn.Conv2d
        self.dims = dims
        self.conv = conv(4, 8, 3)
        features = 8 * (14 if dims == 1 else 7 * 7)
        self.fc0, self.fc1 = torch.nn.Linear(features, 3), torch.nn.Linear(features, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.conv(x))
        pool = F.max_pool1d if self.dims == 1 else F.max_pool2d
        avg = F.avg_pool1d if self.dims == 1 else F.avg_pool2d
        return (self.fc0(torch.flatten(pool(h, 3, 2, 1), 1)),
                self.fc1(torch.flatten(avg(h, 3, 2, 1), 1)))  # count_include_pad=True


@pytest.mark.parametrize("dims", [1, 2])
def test_padded_max_over_relu_and_counting_average_pools_pad_with_zeros(dims: int) -> None:
    from eedge.backends.tflite_writer import graph_to_tflite
    from eedge.frontends.torch_frontend import torch_to_onnx
    from eedge.passes.quantize import observe_ranges, quantize_graph
    from eedge.reference.int8_kernels import quantize_input
    from eedge.runtime.interpreters import TFLMModel

    torch.manual_seed(0)
    shape = (2, 4, 30) if dims == 1 else (2, 4, 16, 16)
    rng = np.random.default_rng(0)
    model = torch_to_onnx(_PaddedPools(dims).eval(), rng.standard_normal(shape).astype(np.float32))
    x = rng.standard_normal((40,) + shape[1:]).astype(np.float32)
    lowered = assert_lowering_is_exact(model, x, "NCL" if dims == 1 else "NCHW")
    pools = [n for n in lowered.nodes if "POOL" in n.op_type]
    assert [p.attrs["padding"] for p in pools] == ["VALID", "VALID"]
    assert sum(n.op_type == "PAD" for n in lowered.nodes) == 2
    # int8: the zero pad is the zero point, the ReLU output's minimum; TFLM agrees
    name = lowered.inputs[0].name
    xl = to_channels_last(x, "NCL" if dims == 1 else "NCHW")
    q = quantize_graph(lowered, observe_ranges(lowered, [{name: xl}]))
    xq = quantize_input(xl, q.inputs[0].quant)
    env = execute(q, {name: xq})
    tflm = TFLMModel(graph_to_tflite(q, range(len(q.nodes)), [name], q.exits), 2).run([xq])
    for exit_name, theirs in zip(q.exits, tflm):
        assert np.array_equal(env[exit_name], theirs.reshape(env[exit_name].shape))


def test_padded_max_pool_over_a_signed_tensor_is_rejected() -> None:
    from onnx import numpy_helper

    model = onnx_conv1d_model()
    # the max pool reads the depthwise conv's output, which can be negative
    model.graph.node[7].CopyFrom(helper.make_node("MaxPool", ["d"], ["p"], name="pool",
                                                  kernel_shape=[3], strides=[2], pads=[1, 1]))
    model.graph.initializer.remove(next(i for i in model.graph.initializer if i.name == "w1"))
    model.graph.initializer.append(numpy_helper.from_array(
        np.zeros((4, 6 * 32), np.float32), "w1"))
    with pytest.raises(UnsupportedOpError, match=r"MaxPool node 'pool'.*not TFLite SAME.*ReLU"):
        lower_to_tflite(onnx_to_graph(model))
