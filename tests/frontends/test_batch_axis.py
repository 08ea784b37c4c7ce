"""The batch may sit on any axis inside the model (eedge.frontends.onnx_batch).

The zoo's transformers and recurrent nets, exported both ways, import with
a symbolic batch and the normalized model computes every sample exactly as
the user's batch-1 file does; operators that would mix samples are refused
in one line naming the node.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import eedge.frontends.onnx_frontend as onnx_frontend
from eedge.errors import ModelError
from eedge.frontends.onnx_batch import _reshape_batch, make_batch_symbolic
from eedge.frontends.onnx_frontend import import_onnx, read_onnx_file
from eedge.passes.partition import partition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import zoo_sequence  # noqa: E402

LEFT_TO_FOLD = {"Shape", "ConstantOfShape", "Equal", "Where", "Cast", "Mod", "Erf", "Expand",
                "Sqrt", "Size", "Range"}
LOWERED_ELSEWHERE = ("LayerNormalization", "Gelu", "Gather")  # registered by their owners


@pytest.fixture
def lowerable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accept the transformer ops whose lowerings other parts of issue 18 register."""
    supported = onnx_frontend.supported_onnx_ops
    monkeypatch.setattr(onnx_frontend, "supported_onnx_ops", lambda: {
        **{op: "test" for op in LOWERED_ELSEWHERE}, **supported()})


def _session(model: onnx.ModelProto | str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _rows_equal(source: onnx.ModelProto | str, normalized: onnx.ModelProto,
                shape: tuple[int, ...], batch: int = 3) -> None:
    """The normalized model at ``batch`` == the user's model on each row at batch 1."""
    x = np.random.default_rng(0).standard_normal((batch, *shape[1:])).astype(np.float32)
    original, new = _session(source), _session(normalized)
    rows = [original.run(None, {original.get_inputs()[0].name: x[i:i + 1]})
            for i in range(batch)]
    got = new.run(None, {new.get_inputs()[0].name: x})
    for k, have in enumerate(got):
        want = np.concatenate([r[k] for r in rows])
        np.testing.assert_allclose(have, want, atol=2e-5, rtol=1e-5)
    one = new.run(None, {new.get_inputs()[0].name: x[:1]})
    for k, have in enumerate(one):
        np.testing.assert_allclose(have, rows[0][k], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy"])
@pytest.mark.parametrize("name", sorted(zoo_sequence.MODELS))
def test_zoo_exports_import_with_a_symbolic_batch(name: str, dynamo: bool, tmp_path: Path,
                                                  lowerable: None) -> None:
    torch.manual_seed(0)
    module = zoo_sequence.MODELS[name].factory().eval()
    path = zoo_sequence.export_default(name, module, tmp_path / f"{name}.onnx", dynamo=dynamo)
    shape = zoo_sequence.MODELS[name].input_shape
    imported = import_onnx(read_onnx_file(path), {None: ("N", *shape[1:])})
    assert imported.graph.inputs[0].shape == ("N", *shape[1:])
    assert imported.graph.opset == next(o.version for o in imported.model.opset_import
                                        if o.domain == "")  # after any conversion
    ops = {n.op_type for n in imported.model.graph.node}
    assert not ops & LEFT_TO_FOLD, ops & LEFT_TO_FOLD
    if name in ("vit", "kwt"):
        assert {"Gelu", "LayerNormalization"} <= ops
    for info in imported.graph.tensors.values():
        if info.name not in imported.graph.constants:
            assert list(info.shape).count("N") == 1, info
    for exit_name in imported.graph.exits:
        assert imported.graph.tensors[exit_name].shape[0] == "N"
    _rows_equal(str(path), imported.model, shape)


def test_vit_token_tensors_keep_the_batch_off_axis_0(tmp_path: Path, lowerable: None) -> None:
    """timm's qkv.reshape(b, n, 3, h, d).permute(2, 0, 3, 1, 4): batch at axis 1 of 5."""
    torch.manual_seed(0)
    module = zoo_sequence.MODELS["vit"].factory().eval()
    path = zoo_sequence.export_default("vit", module, tmp_path / "vit.onnx", dynamo=False)
    graph = import_onnx(read_onnx_file(path), {None: ("N", 1, 8, 8)}).graph
    permuted = [t.shape for t in graph.tensors.values() if len(t.shape) == 5]
    assert permuted.count((3, "N", 2, 17, 16)) == 6  # one per block
    assert permuted.count(("N", 17, 3, 2, 16)) == 6
    pads = [n for n in graph.nodes if n.op_type == "Pad"]
    assert len(pads) == 1 and not any(n.op_type == "Concat" for n in graph.nodes)


@pytest.mark.parametrize("in_shape, axis, target, new, out_axis", [
    ([1, 17, 96], 0, [1, 17, 3, 2, 16], [-1, 17, 3, 2, 16], 0),    # timm qkv reshape
    ([3, 1, 2, 17, 16], 1, [3, 1, 2, 17, 16], [3, -1, 2, 17, 16], 1),  # batch at axis 1
    ([1, 17, 2, 16], 0, [1, 17, 32], [-1, 17, 32], 0),
    ([49, 1, 96], 1, [49, 1, 3, 32], [49, -1, 3, 32], 1),            # torch MHA, time-major
    ([4, 2, 8], 0, [4, 16], [-1, 16], 0),                            # export batch 4
])
def test_reshape_keeps_the_batch_wherever_it_is(in_shape: list[int], axis: int,
                                                target: list[int], new: list[int],
                                                out_axis: int) -> None:
    batch = in_shape[axis]
    (found_target, act), = _reshape_batch(in_shape, axis, batch, target)
    assert found_target == new and act.axis == out_axis and act.groups is None


def test_merged_batch_becomes_an_axis_of_its_own() -> None:
    """view(tgt, bsz * heads, d): the batch is kept apart as (tgt, bsz, heads, d)."""
    readings = _reshape_batch([49, 1, 32], 1, 1, [49, 2, 16])
    assert [r[0] for r in readings] == [[49, -1, 2, 16], [49, -1, 2, 16]]
    assert [r[1].groups for r in readings] == [[[0, 1], [2], [3]], [[0], [1, 2], [3]]]
    assert _reshape_batch([4, 2, 8], 0, 4, [2, 32]) == []  # half a batch per row: mixes


def _model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto],
           x_shape: list[int | str], outputs: dict[str, list[int | str]],
           opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "b", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _weights(*shape: int, name: str = "w") -> onnx.TensorProto:
    rng = np.random.default_rng(len(name) + sum(shape))
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def _time_major(middle: list[onnx.NodeProto], inits: list[onnx.TensorProto],
                batch: int = 1) -> onnx.ModelProto:
    """x (b, 4, 8) -> Transpose -> t (4, b, 8) -> middle -> m -> ... -> exit (b, 3)."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2], name="to_time")]
    nodes += middle
    nodes += [helper.make_node("Transpose", ["m"], ["mb"], perm=[1, 0, 2], name="back"),
              helper.make_node("ReduceMean", ["mb"], ["pooled"], axes=[1], keepdims=0,
                               name="pool"),
              helper.make_node("Gemm", ["pooled", "head"], ["exit0"], transB=1, name="fc")]
    return _model(nodes, inits + [_weights(3, 8, name="head")], [batch, 4, 8],
                  {"exit0": [batch, 3]})


def test_time_major_tensors_are_followed() -> None:
    model = _time_major([helper.make_node("MatMul", ["t", "w"], ["m"], name="mm")],
                        [_weights(8, 8)])
    imported = import_onnx(model, {None: ("N", 4, 8)})
    assert imported.graph.tensors["t"].shape == (4, "N", 8)
    _rows_equal(model, imported.model, (1, 4, 8))


@pytest.mark.parametrize("middle, inits, message", [
    ([helper.make_node("Softmax", ["t"], ["m"], axis=1, name="mix")], [],
     r"'mix' \(Softmax\) works over the batch axis 1"),
    ([helper.make_node("ReduceMean", ["t"], ["r"], axes=[1], keepdims=1, name="mix"),
      helper.make_node("Add", ["t", "r"], ["m"])], [],
     r"'mix' \(ReduceMean\) reduces over the batch axis 1"),
    ([helper.make_node("Transpose", ["t"], ["tt"], perm=[0, 2, 1]),
      helper.make_node("MatMul", ["t", "tt"], ["s"], name="mix"),
      helper.make_node("MatMul", ["s", "t"], ["m"])], [],
     r"'mix' \(MatMul\) (contracts over the batch axis|multiplies tensors whose batch)"),
    ([helper.make_node("Concat", ["t", "t"], ["c"], axis=1, name="mix"),
      helper.make_node("ReduceMean", ["c"], ["m"], axes=[1], keepdims=1)], [],
     r"'mix' \(Concat\) concatenates along the batch axis 1"),
    ([helper.make_node("Gather", ["t", "zero"], ["g"], axis=1, name="mix"),
      helper.make_node("Unsqueeze", ["g", "one"], ["m"])],
     [numpy_helper.from_array(np.array(0, np.int64), "zero"),
      numpy_helper.from_array(np.array([1], np.int64), "one")],
     r"'mix' \(Gather\) gathers along the batch axis 1"),
    ([helper.make_node("Flatten", ["t"], ["f"], axis=2, name="mix"),
      helper.make_node("Reshape", ["f", "back"], ["m"])],
     [numpy_helper.from_array(np.array([4, 1, 8], np.int64), "back")],
     r"'mix' \(Flatten\) \(axis 2\) merges the batch \(axis 1\)"),
], ids=["softmax", "reduce", "matmul", "concat", "gather", "flatten"])
def test_operators_that_mix_samples_are_refused(middle: list[onnx.NodeProto],
                                                inits: list[onnx.TensorProto],
                                                message: str) -> None:
    with pytest.raises(ModelError, match=message):
        import_onnx(_time_major(middle, inits), {None: ("N", 4, 8)})


def test_exit_must_be_batch_first() -> None:
    nodes = [helper.make_node("Transpose", ["x"], ["exit0"], perm=[1, 0], name="flip")]
    model = _model(nodes, [], [1, 3], {"exit0": [3, 1]})
    with pytest.raises(ModelError, match=r"exit 'exit0' \(node 'flip'\) has the batch at axis 1"):
        import_onnx(model, {None: ("N", 3)})


def test_class_token_concat_becomes_pad_and_add() -> None:
    """cat([cls.expand(B, -1, -1), x], 1), folded at batch 1, runs at any batch."""
    cls = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(1, 1, 8) + 1, "cls")
    tail = numpy_helper.from_array(np.full((1, 2, 8), -2.0, np.float32), "tail")
    nodes = [helper.make_node("Concat", ["cls", "x", "tail"], ["tokens"], axis=1, name="cat"),
             helper.make_node("ReduceMean", ["tokens"], ["pooled"], axes=[1], keepdims=0),
             helper.make_node("Gather", ["tokens", "zero"], ["first"], axis=1),
             helper.make_node("Add", ["pooled", "first"], ["feat"]),
             helper.make_node("Gemm", ["feat", "head"], ["exit0"], transB=1)]
    inits = [cls, tail, _weights(3, 8, name="head"),
             numpy_helper.from_array(np.array(0, np.int64), "zero")]
    model = _model(nodes, inits, [1, 4, 8], {"exit0": [1, 3]})
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert "cat" in make_batch_symbolic(rewritten, "x", 1)
    assert [n.op_type for n in rewritten.graph.node][:2] == ["Pad", "Add"]
    _rows_equal(model, rewritten, (1, 4, 8), batch=5)


def test_constant_that_differs_per_sample_is_refused() -> None:
    per_sample = numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(2, 1, 8), "c")
    nodes = [helper.make_node("Concat", ["c", "x"], ["tokens"], axis=1, name="cat"),
             helper.make_node("ReduceMean", ["tokens"], ["pooled"], axes=[1], keepdims=0),
             helper.make_node("Gemm", ["pooled", "head"], ["exit0"], transB=1)]
    model = _model(nodes, [per_sample, _weights(3, 8, name="head")], [2, 4, 8],
                   {"exit0": [2, 3]})
    with pytest.raises(ModelError, match=r"'cat' \(Concat\) concatenates constant 'c', which "
                                         "differs from sample to sample"):
        import_onnx(model)


def test_batch_merged_away_and_split_back_is_followed() -> None:
    """x[4,2,8] -> Reshape [1, 64] -> Reshape [4, 16]: batch 4 folded into one row and back."""
    nodes = [helper.make_node("Reshape", ["x", "s0"], ["merged"], name="merge"),
             helper.make_node("Reshape", ["merged", "s"], ["flat"], name="unmerge"),
             helper.make_node("Gemm", ["flat", "w"], ["exit0"], transB=1, name="fc")]
    inits = [numpy_helper.from_array(np.array([1, 64], np.int64), "s0"),
             numpy_helper.from_array(np.array([4, 16], np.int64), "s"), _weights(3, 16)]
    model = _model(nodes, inits, [4, 2, 8], {"exit0": [4, 3]})
    imported = import_onnx(model)
    assert imported.graph.tensors["merged"].shape == (1, "batch", 16)
    x = np.random.default_rng(0).standard_normal((7, 2, 8)).astype(np.float32)
    w = numpy_helper.to_array(inits[2])
    np.testing.assert_allclose(_session(imported.model).run(None, {"x": x})[0],
                               x.reshape(7, 16) @ w.T, atol=1e-5)


def test_hand_off_with_the_batch_inside_is_refused() -> None:
    """Exit 0 branches off a time-major tensor that stage 1 also reads."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2], name="to_time"),
             helper.make_node("MatMul", ["t", "w"], ["tw"], name="mm"),
             helper.make_node("Transpose", ["tw"], ["b0"], perm=[1, 0, 2]),
             helper.make_node("ReduceMean", ["b0"], ["p0"], axes=[1], keepdims=0),
             helper.make_node("Gemm", ["p0", "head"], ["exit0"], transB=1, name="fc0"),
             helper.make_node("MatMul", ["tw", "w"], ["tw2"], name="mm2"),
             helper.make_node("Transpose", ["tw2"], ["b1"], perm=[1, 0, 2]),
             helper.make_node("ReduceMean", ["b1"], ["p1"], axes=[1], keepdims=0),
             helper.make_node("Gemm", ["p1", "head"], ["exit1"], transB=1, name="fc1")]
    model = _model(nodes, [_weights(8, 8), _weights(3, 8, name="head")], [1, 4, 8],
                   {"exit0": [1, 3], "exit1": [1, 3]})
    graph = import_onnx(model, {None: ("N", 4, 8)}).graph
    with pytest.raises(ModelError, match=r"stage 0 hands tensor 'tw' \(shape \[4, 'N', 8\]\) "
                                         r"to a later stage with the batch at axis 1"):
        partition(graph)


def test_dynamic_export_that_cannot_be_proven_asks_for_a_fixed_batch() -> None:
    """A dynamic-batch file computing shapes: folded at batch 1, then every Reshape proven."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMax", ["sf"], ["k"], keepdims=0),
             helper.make_node("Mul", ["x", "k"], ["xs"]),
             helper.make_node("Transpose", ["xs"], ["t"], perm=[1, 0, 2]),
             helper.make_node("Reshape", ["t", "odd"], ["r"], name="odd_view"),
             helper.make_node("Reshape", ["r", "back"], ["m"]),
             helper.make_node("Transpose", ["m"], ["mb"], perm=[1, 0, 2]),
             helper.make_node("ReduceMean", ["mb"], ["p"], axes=[1], keepdims=0),
             helper.make_node("Gemm", ["p", "head"], ["exit0"], transB=1)]
    inits = [numpy_helper.from_array(np.array([2, 6], np.int64), "odd"),
             numpy_helper.from_array(np.array([3, 1, 4], np.int64), "back"),
             _weights(3, 4, name="head")]
    model = _model(nodes, inits, ["n", 3, 4], {"exit0": ["n", 3]})
    with pytest.raises(ModelError, match=r"Reshape node 'odd_view' bakes it in .* export the "
                                         r"model with a fixed batch \(eedge makes the batch "
                                         r"symbolic itself\)"):
        import_onnx(model)


def test_constant_expanded_to_the_export_batch_is_cut_to_one_row() -> None:
    """x + bias.expand(4, -1) at export batch 4: one row broadcasts at any batch."""
    row = np.linspace(-1, 1, 8).astype(np.float32)
    nodes = [helper.make_node("Add", ["x", "bias"], ["h"], name="add_bias"),
             helper.make_node("Gemm", ["h", "head"], ["exit0"], transB=1)]
    inits = [numpy_helper.from_array(np.tile(row, (4, 1)), "bias"), _weights(3, 8, name="head")]
    model = _model(nodes, inits, [4, 8], {"exit0": [4, 3]})
    imported = import_onnx(model)
    assert imported.graph.inputs[0].shape == ("batch", 8)
    x = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    w = numpy_helper.to_array(inits[1])
    np.testing.assert_allclose(_session(imported.model).run(None, {"x": x})[0],
                               (x + row) @ w.T, atol=1e-5)
    inits[0] = numpy_helper.from_array(np.arange(32, dtype=np.float32).reshape(4, 8), "bias")
    with pytest.raises(ModelError, match=r"'add_bias' \(Add\) combines the batch axis with "
                                         r"constant 'bias' of shape \[4, 8\], which differs"):
        import_onnx(_model(nodes, inits, [4, 8], {"exit0": [4, 3]}))


def test_fixed_batch_class_token_concat_takes_the_same_form(tmp_path: Path,
                                                             lowerable: None) -> None:
    """Kept at batch 1, the class token still becomes Pad + Add: one form to lower."""
    torch.manual_seed(0)
    module = zoo_sequence.MODELS["vit"].factory().eval()
    path = zoo_sequence.export_default("vit", module, tmp_path / "vit.onnx", dynamo=True)
    imported = import_onnx(read_onnx_file(path))
    assert imported.graph.inputs[0].shape == (1, 1, 8, 8)
    ops = [n.op_type for n in imported.model.graph.node]
    assert "Concat" not in ops and ops.count("Pad") == 1
    assert any("Pad + Add" in n for n in imported.notes)
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    for want, have in zip(_session(str(path)).run(None, {"x": x}),
                          _session(imported.model).run(None, {"x": x})):
        np.testing.assert_allclose(have, want, atol=1e-5)
