"""ONNX frontend: valid models become graphs; bad ones get errors that say what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from zoo import onnx_conv_model, onnx_two_exit_mlp

from eedge.errors import ModelError, UnsupportedOpError
from eedge.frontends.onnx_frontend import (import_onnx, load_onnx, onnx_to_graph,
                                           parse_input_shape)


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
    with pytest.raises(UnsupportedOpError, match=r"unsupported operator Softsign in node 'act0'"):
        onnx_to_graph(onnx_two_exit_mlp(op="Softsign"))


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


def _opset9_model() -> onnx.ModelProto:
    """Clip with min/max attributes and Pad with a pads attribute: both changed in opset 11."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Pad", ["x"], ["p"], name="pad", pads=[0, 1, 0, 1]),
             helper.make_node("Clip", ["p"], ["c"], name="clip", min=0.0, max=0.5),
             helper.make_node("Gemm", ["c", "w", "b"], ["exit0"], name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, "old", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("exit0", onnx.TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(rng.standard_normal((3, 8)).astype(np.float32), "w"),
                     numpy_helper.from_array(np.zeros(3, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 4
    onnx.checker.check_model(model)
    return model


def test_old_opset_is_converted_to_13() -> None:
    imported = import_onnx(_opset9_model())
    assert imported.graph.opset == 13
    assert any("opset 9" in n and "converted" in n for n in imported.notes)
    x = np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)
    w = numpy_helper.to_array(next(i for i in _opset9_model().graph.initializer))
    expected = np.clip(np.pad(x, ((0, 0), (1, 1))), 0.0, 0.5) @ w.T
    session = ort.InferenceSession(imported.model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    assert np.allclose(session.run(None, {"x": x})[0], expected, atol=1e-5)


def test_opset_the_converter_cannot_handle_is_refused() -> None:
    ones = [numpy_helper.from_array(np.ones(4, np.float32), n) for n in "sbmv"]
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["exit0"],
                            name="bn", spatial=0)
    graph = helper.make_graph(
        [node], "old", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("exit0", onnx.TensorProto.FLOAT, [1, 4])],
        initializer=ones)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)])
    model.ir_version = 4
    with pytest.raises(ModelError, match=r"opset 8 and onnx.version_converter cannot convert "
                                         r"it.*spatial.*opset_version=13") as info:
        onnx_to_graph(model)
    assert "\n" not in str(info.value) and "transformers.h" not in str(info.value)


def test_custom_domain_is_rejected() -> None:
    model = onnx_two_exit_mlp()
    model.graph.node[1].domain = "com.example"
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UnsupportedOpError, match="com.example"):
        onnx_to_graph(model)


def _batch4_reshape_model(second_shape: list[int] | None = None) -> onnx.ModelProto:
    """x[4,2,8] -> Reshape [4,16] -> Gemm: what view(4, -1) exports to at batch 4."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Reshape", ["x", "s"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "w"], ["exit0"], name="fc", transB=1)]
    inits = [numpy_helper.from_array(np.array([4, 16], np.int64), "s"),
             numpy_helper.from_array(rng.standard_normal((3, 16)).astype(np.float32), "w")]
    if second_shape is not None:  # merge the batch away, then split it back
        nodes = [helper.make_node("Reshape", ["x", "s0"], ["merged"], name="merge"),
                 helper.make_node("Reshape", ["merged", "s"], ["flat"], name="unmerge"),
                 nodes[1]]
        inits.append(numpy_helper.from_array(np.array(second_shape, np.int64), "s0"))
    graph = helper.make_graph(
        nodes, "b4", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4, 2, 8])],
        [helper.make_tensor_value_info("exit0", onnx.TensorProto.FLOAT, [4, 3])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_fixed_batch_4_becomes_symbolic() -> None:
    imported = import_onnx(_batch4_reshape_model())
    assert imported.graph.inputs[0].shape == ("batch", 2, 8)
    assert imported.graph.tensors["flat"].shape == ("batch", 16)
    assert imported.graph.tensors["exit0"].shape == ("batch", 3)
    assert any("fixed batch of 4" in n and "flatten" in n for n in imported.notes)
    session = ort.InferenceSession(imported.model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((7, 2, 8)).astype(np.float32)
    w = numpy_helper.to_array(_batch4_reshape_model().graph.initializer[1])
    assert np.allclose(session.run(None, {"x": x})[0], x.reshape(7, 16) @ w.T, atol=1e-5)


def test_input_shape_batch_does_not_fight_the_model() -> None:
    """--input-shape 1,... on a batch-4 model, 16,... on a symbolic one: both symbolic."""
    graph = onnx_to_graph(_batch4_reshape_model(), {None: (1, 2, 8)})
    assert graph.inputs[0].shape == ("batch", 2, 8)
    graph = onnx_to_graph(onnx_conv_model(), {None: (16, 3, 8, 8)})
    assert graph.inputs[0].shape == ("N", 3, 8, 8)


def test_batch_that_is_not_provably_the_batch_is_refused() -> None:
    with pytest.raises(ModelError, match=r"fixed to batch 4 and Reshape node 'merge'"):
        onnx_to_graph(_batch4_reshape_model(second_shape=[2, 32]))


def test_node_that_mixes_samples_is_named() -> None:
    model = onnx_two_exit_mlp()
    model.graph.node[0].input[0] = "mean"
    model.graph.node.insert(0, helper.make_node("ReduceMean", ["x"], ["mean"],
                                                name="batch_mean", axes=[0], keepdims=1))
    with pytest.raises(ModelError, match=r"node 'batch_mean' \(ReduceMean\) reduces over "
                                         r"the batch axis 0"):
        onnx_to_graph(model)


def test_two_input_model_is_refused() -> None:
    model = onnx_two_exit_mlp()
    model.graph.input.append(helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT,
                                                           ["N", 16]))
    model.graph.node[0].input[0] = "sum"
    model.graph.node.insert(0, helper.make_node("Add", ["x", "z"], ["sum"], name="add"))
    with pytest.raises(ModelError, match=r"2 inputs \(x, z\); eedge supports single-input"):
        onnx_to_graph(model)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_trailing_softmax_on_an_exit_is_removed(op: str) -> None:
    model = onnx_two_exit_mlp()
    model.graph.node[2].output[0] = "logits0"
    model.graph.node.insert(3, helper.make_node(op, ["logits0"], ["exit0"], name="probs",
                                                axis=-1))
    imported = import_onnx(model)
    assert imported.graph.exits == ["exit0", "exit1"]
    assert op not in {n.op_type for n in imported.graph.nodes}
    assert [(s.exit, s.op_type, s.node) for s in imported.stripped_exits] == [
        ("exit0", op, "probs")]
    assert any(f"ended in {op}" in n for n in imported.notes)
    plain = ort.InferenceSession(onnx_two_exit_mlp().SerializeToString(),
                                 providers=["CPUExecutionProvider"])
    stripped = ort.InferenceSession(imported.model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    for a, b in zip(plain.run(None, {"x": x}), stripped.run(None, {"x": x})):
        assert np.allclose(a, b, atol=1e-6)


def test_softmax_that_also_feeds_another_node_is_kept_for_it() -> None:
    model = onnx_two_exit_mlp()
    model.graph.node[5].output[0] = "logits1"
    model.graph.node.append(helper.make_node("Softmax", ["logits1"], ["exit1"], name="probs"))
    model.graph.node.append(helper.make_node("Mul", ["exit1", "exit1"], ["sq"], name="sq"))
    graph = onnx_to_graph(model)
    softmax = next(n for n in graph.nodes if n.op_type == "Softmax")
    assert softmax.inputs == ["exit1"] and softmax.outputs == ["exit1__probabilities"]
    assert graph.producer_index("exit1") is not None
    assert graph.nodes[graph.producer_index("exit1")].op_type == "Gemm"


def _external_data_model(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(onnx_two_exit_mlp(), path, save_as_external_data=True,
              all_tensors_to_one_file=True, location="m.onnx.data", size_threshold=0)
    return path


def test_external_data_is_read_from_the_model_folder(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = _external_data_model(tmp_path)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    graph, model = load_onnx(path)
    assert np.array_equal(graph.constants["w0"],
                          numpy_helper.to_array(onnx_two_exit_mlp().graph.initializer[0]))
    assert all(not t.external_data for t in model.graph.initializer)


def _set_location(path: Path, location: str) -> None:
    model = onnx.load(path, load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())


@pytest.mark.parametrize("location, message", [
    ("../m.onnx.data", "outside the model's folder"),
    ("/etc/passwd", "absolute path"),
    ("gone.data", "does not exist"),
])
def test_external_data_locations_are_confined(tmp_path: Path, location: str,
                                              message: str) -> None:
    sub = tmp_path / "model"
    sub.mkdir()
    path = _external_data_model(sub)
    (sub / "m.onnx.data").rename(tmp_path / "m.onnx.data")  # the escape target exists
    _set_location(path, location)
    with pytest.raises(ModelError, match=message):
        load_onnx(path)


def test_truncated_external_data_is_refused(tmp_path: Path) -> None:
    path = _external_data_model(tmp_path)
    data = tmp_path / "m.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(ModelError, match="truncated|another export"):
        load_onnx(path)


@pytest.mark.parametrize("target, expected", [
    ([-1, 32], [32]), ([0, -1], [32]), ([0, 8, 0, 2], [8, 2, 2]), ([-1, 8, 4], [8, 4]),
    ([-1, 16], None), ([2, -1], None), ([-1, -1], None), ([0, 5, -1], None)])
def test_reshape_keeps_the_batch_first_only_when_it_moves_one_sample(
        target: list[int], expected: list[int] | None) -> None:
    from eedge.frontends.onnx_batch import _batch_first_target

    assert _batch_first_target(np.array(target), ["N", 8, 2, 2]) == expected
