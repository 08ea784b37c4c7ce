"""ONNX frontend: valid models become graphs; bad ones get errors that say what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from zoo import onnx_conv_model, onnx_two_exit_mlp

from eedge.errors import ModelError, UnsupportedOpError
from eedge.frontends.onnx_frontend import load_onnx, onnx_to_graph, parse_input_shape


def test_helper_built_model_reads_into_graph() -> None:
    graph = onnx_to_graph(onnx_two_exit_mlp(), name="mlp")
    assert graph.exits == ["exit0", "exit1"]
    assert [t.name for t in graph.inputs] == ["x"]
    assert graph.inputs[0].shape == ("N", 16)
    assert graph.tensors["h1"].shape == ("N", 32)
    assert graph.opset == 17
    assert set(graph.constants) >= {"w0", "b0", "we1"}


def test_constant_nodes_become_constants() -> None:
    model = onnx_two_exit_mlp()
    value = helper.make_tensor("scale", onnx.TensorProto.FLOAT, [1], [2.0])
    model.graph.node.insert(0, helper.make_node("Constant", [], ["scale"], value=value))
    model.graph.node[2].CopyFrom(helper.make_node("Mul", ["g0", "scale"], ["h"], name="act0"))
    graph = onnx_to_graph(model)
    assert np.array_equal(graph.constants["scale"], [2.0])
    assert "Constant" not in {n.op_type for n in graph.nodes}


def test_unsupported_op_names_op_and_node() -> None:
    with pytest.raises(UnsupportedOpError, match=r"unsupported operator Sigmoid in node 'act0'"):
        onnx_to_graph(onnx_two_exit_mlp(op="Sigmoid"))


def test_symbolic_spatial_dims_need_input_shape() -> None:
    model = onnx_conv_model()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    with pytest.raises(ModelError, match="--input-shape"):
        onnx_to_graph(model)
    graph = onnx_to_graph(model, {None: ("N", 3, 8, 8)})
    assert graph.tensors["d"].shape == ("N", 8, 8, 8)


def test_input_shape_that_contradicts_the_model() -> None:
    with pytest.raises(ModelError, match="fixes it to 3"):
        onnx_to_graph(onnx_conv_model(), {None: (1, 4, 8, 8)})
    with pytest.raises(ModelError, match="rank 4"):
        onnx_to_graph(onnx_conv_model(), {None: (1, 3, 8)})
    with pytest.raises(ModelError, match="inputs are: x"):
        onnx_to_graph(onnx_conv_model(), {"y": (1, 3, 8, 8)})


def test_fixed_batch_is_kept() -> None:
    graph = onnx_to_graph(onnx_conv_model(batch=1))
    assert graph.inputs[0].shape == (1, 3, 8, 8)


@pytest.mark.parametrize("text, expected", [
    ("1,1,8,8", (None, (1, 1, 8, 8))), ("x:N,3,32,32", ("x", ("N", 3, 32, 32)))])
def test_parse_input_shape(text: str, expected: tuple) -> None:
    assert parse_input_shape(text) == expected


@pytest.mark.parametrize("text", ["1,,8", "1,0,8", "N,C,8"])
def test_parse_input_shape_rejects(text: str) -> None:
    with pytest.raises(ModelError):
        parse_input_shape(text)


def test_exit_that_is_not_logits_is_rejected() -> None:
    model = onnx_conv_model()
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("d", onnx.TensorProto.FLOAT,
                                                                 ["N", 8, 8, 8]))
    with pytest.raises(ModelError, match=r"\(batch, classes\)"):
        onnx_to_graph(model)


def test_garbage_file_and_missing_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x01this is not a protobuf\xff\xff")
    with pytest.raises(ModelError, match="not a valid ONNX file|invalid"):
        load_onnx(junk)
    with pytest.raises(ModelError, match="does not exist"):
        load_onnx(tmp_path / "nope.onnx")


def test_old_opset_is_rejected() -> None:
    model = onnx_two_exit_mlp()
    model.opset_import[0].version = 11
    with pytest.raises(ModelError, match="opset 11"):
        onnx_to_graph(model)


def test_custom_domain_is_rejected() -> None:
    model = onnx_two_exit_mlp()
    model.graph.node[1].domain = "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UnsupportedOpError, match="com.example"):
        onnx_to_graph(model)
