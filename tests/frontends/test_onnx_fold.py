"""Constant folding of exporters' shape arithmetic (eedge.frontends.onnx_fold)."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from eedge.frontends.onnx_fold import fold_constants
from eedge.frontends.onnx_frontend import import_onnx

SHAPE_OPS = {"Shape", "ConstantOfShape", "Equal", "Where", "Cast", "Mod", "Expand", "Sqrt",
             "Gather", "Unsqueeze", "Concat", "Slice", "Constant", "Range", "Div"}


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def _model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto],
           x_shape: list[int | str], out_shape: list[int | str] | None = None,
           opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "fold", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


class _ViewByShape(torch.nn.Module):
    """``x.view(x.shape[0], -1)`` and a scale from ``x.shape[-1] ** -0.5``: shape arithmetic."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.tensor(x.shape[-1], dtype=torch.float32).sqrt()
        return self.fc(x.reshape(x.shape[0], -1) / scale)


def _legacy_export(module: torch.nn.Module, shape: tuple[int, ...], path: Path,
                   dynamic: bool = False) -> onnx.ModelProto:
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(shape),), str(path), dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}} if dynamic else None,
                          do_constant_folding=False)  # keep torch's shape chains for eedge
    return onnx.load(str(path))


def test_legacy_shape_chains_fold_to_initializers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _legacy_export(_ViewByShape(), (1, 3, 4), tmp_path / "m.onnx")
    assert {"Unsqueeze", "Concat"} <= {n.op_type for n in model.graph.node}
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    done = fold_constants(folded)
    assert {op for _, op in done} >= {"Unsqueeze", "Concat"}
    left = {n.op_type for n in folded.graph.node}
    assert not left & (SHAPE_OPS - {"Div"}), left
    x = np.random.default_rng(0).standard_normal((1, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(_run(folded, x)[0], _run(model, x)[0], atol=1e-6)
    onnx.checker.check_model(folded)


def test_nothing_is_folded_through_an_activation() -> None:
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMax", ["sf"], ["m"], keepdims=0),
             helper.make_node("Mul", ["x", "m"], ["y"])]
    model = _model(nodes, [], [2, 5])
    fold_constants(model)
    assert [n.op_type for n in model.graph.node] == ["Mul"]  # x * 5: x is no constant
    m = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "m"))
    assert float(m) == 5.0


def test_shape_of_a_symbolic_tensor_is_not_folded() -> None:
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Reshape", ["x", "s"], ["y"])]
    model = _model(nodes, [], ["n", 4])
    assert fold_constants(model) == []
    assert [n.op_type for n in model.graph.node] == ["Shape", "Reshape"]


def test_huge_results_stay_nodes() -> None:
    shape = numpy_helper.from_array(np.array([1 << 12, 1 << 12], np.int64), "big")
    nodes = [helper.make_node("ConstantOfShape", ["big"], ["zeros"]),
             helper.make_node("ReduceSum", ["zeros"], ["total"], keepdims=0),
             helper.make_node("Add", ["x", "total"], ["y"])]
    model = _model(nodes, [shape], [1, 4])
    fold_constants(model, max_elements=1 << 20)
    assert [n.op_type for n in model.graph.node] == ["ConstantOfShape", "ReduceSum", "Add"]
    assert fold_constants(model, max_elements=1 << 25)  # allowed: folds, then the sum
    assert [n.op_type for n in model.graph.node] == ["Add"]


def test_random_nodes_are_never_folded() -> None:
    nodes = [helper.make_node("RandomNormal", [], ["r"], shape=[1, 4]),
             helper.make_node("Add", ["x", "r"], ["y"])]
    model = _model(nodes, [], [1, 4])
    fold_constants(model)
    assert [n.op_type for n in model.graph.node] == ["RandomNormal", "Add"]


def test_constant_nodes_become_initializers_and_unused_ones_go() -> None:
    nodes = [helper.make_node("Constant", [], ["c"], value_floats=[1.0, 2.0]),
             helper.make_node("Constant", [], ["unused"], value_int=3),
             helper.make_node("Add", ["x", "c"], ["y"])]
    model = _model(nodes, [], [1, 2])
    fold_constants(model)
    assert [n.op_type for n in model.graph.node] == ["Add"]
    assert [i.name for i in model.graph.initializer] == ["c"]


def test_dynamic_batch_export_folds_at_batch_1_and_stays_symbolic(tmp_path: Path) -> None:
    """dynamic_axes exports compute shapes from the batch; eedge folds and re-symbolizes."""
    torch.manual_seed(0)
    model = _legacy_export(_ViewByShape(), (2, 3, 4), tmp_path / "m.onnx", dynamic=True)
    imported = import_onnx(model)
    assert imported.graph.inputs[0].shape == ("n", 3, 4)
    assert not {n.op_type for n in imported.model.graph.node} & {"Shape", "Gather", "Concat"}
    assert any("folded them at batch 1" in n for n in imported.notes)
    x = np.random.default_rng(1).standard_normal((5, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(_run(imported.model, x)[0], _run(model, x)[0], atol=1e-5)


def test_folding_is_part_of_the_import(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _legacy_export(_ViewByShape(), (1, 3, 4), tmp_path / "m.onnx")
    imported = import_onnx(model, {None: ("N", 3, 4)})
    assert any("folded" in n for n in imported.notes)
    assert imported.graph.inputs[0].shape == ("N", 3, 4)
    x = np.random.default_rng(2).standard_normal((3, 3, 4)).astype(np.float32)
    rows = np.concatenate([_run(model, x[i:i + 1])[0] for i in range(3)])
    np.testing.assert_allclose(_run(imported.model, x)[0], rows, atol=1e-5)


@pytest.mark.parametrize("op", ["Shape", "Size"])
def test_shape_and_size_of_a_static_tensor(op: str) -> None:
    nodes = [helper.make_node(op, ["x"], ["s"]),
             helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "sf"], ["y"])]
    model = _model(nodes, [], [2, 3])
    fold_constants(model)
    value = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "sf"))
    assert value.tolist() == ([2.0, 3.0] if op == "Shape" else 6.0)
