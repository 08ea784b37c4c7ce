"""Lowering to the TFLite dialect preserves what the ONNX model computes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import exported_onnx
from onnx import helper
from zoo import example_input, onnx_conv_model, onnx_two_exit_mlp

from eedge.backends.onnx_writer import serialize
from eedge.errors import UnsupportedOpError
from eedge.frontends.onnx_frontend import onnx_to_graph
from eedge.passes.lower_tflite import flatten_permutation, lower_to_tflite
from eedge.reference.executor import execute


@pytest.mark.parametrize("name", ["sequential", "residual", "branchy", "depthwise"])
def test_lowered_graph_computes_the_onnx_model(name: str) -> None:
    model = exported_onnx(name)
    lowered = lower_to_tflite(onnx_to_graph(model))
    assert lowered.dialect == "tflite"
    assert not {"BatchNormalization", "Relu", "Conv", "Gemm"} & {n.op_type for n in lowered.nodes}
    x = example_input(seed=4, batch=6)
    expected = ort.InferenceSession(serialize(model)).run(None, {"input": x})
    env = execute(lowered, {"input": x.transpose(0, 2, 3, 1)})
    for exit_name, ref in zip(lowered.exits, expected):
        np.testing.assert_allclose(env[exit_name], ref, atol=1e-5)


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


def test_grouped_conv_is_rejected() -> None:
    from onnx import numpy_helper

    model = onnx_conv_model()
    rng = np.random.default_rng(0)
    model.graph.initializer[2].CopyFrom(numpy_helper.from_array(
        rng.standard_normal((8, 4, 3, 3)).astype(np.float32), "wd"))
    model.graph.node[2].CopyFrom(helper.make_node("Conv", ["r", "wd", "bd"], ["d"], name="dw",
                                                  pads=[1, 1, 1, 1], group=2,
                                                  kernel_shape=[3, 3]))
    with pytest.raises(UnsupportedOpError, match="group=2"):
        lower_to_tflite(onnx_to_graph(model))
