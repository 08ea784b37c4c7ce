"""GELU / LayerNorm formula fusion and zero recurrent states (eedge.frontends.onnx_patterns)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from eedge.frontends.onnx_patterns import drop_zero_initial_states, fuse_patterns

Build = Callable[[str, str], list[onnx.NodeProto]]


def _scalar(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, np.float32), name)


def _model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], opset: int,
           shape: tuple[int, ...] = (2, 5, 8), out: tuple[int, ...] | None = None
           ) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "p", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out or shape))],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


CONSTANTS = [_scalar("sqrt2", math.sqrt(2.0)), _scalar("rsqrt2", math.sqrt(0.5)),
             _scalar("one", 1.0), _scalar("half", 0.5), _scalar("three", 3.0),
             _scalar("k", math.sqrt(2.0 / math.pi)), _scalar("c", 0.044715),
             _scalar("two", 2.0), _scalar("eps", 1e-5),
             numpy_helper.from_array(np.linspace(0.5, 1.5, 8).astype(np.float32), "gamma"),
             numpy_helper.from_array(np.linspace(-1, 1, 8).astype(np.float32), "beta")]


def _erf_front(divide: bool) -> list[onnx.NodeProto]:
    scale = helper.make_node("Div", ["x", "sqrt2"], ["d"]) if divide else \
        helper.make_node("Mul", ["rsqrt2", "x"], ["d"])
    return [scale, helper.make_node("Erf", ["d"], ["e"]),
            helper.make_node("Add", ["one", "e"], ["a"])]


TAILS: dict[str, list[onnx.NodeProto]] = {
    "x*a*half": [helper.make_node("Mul", ["x", "a"], ["m"]),
                 helper.make_node("Mul", ["m", "half"], ["y"])],
    "half*a*x": [helper.make_node("Mul", ["half", "a"], ["m"]),
                 helper.make_node("Mul", ["x", "m"], ["y"])],
    "(x*half)*a": [helper.make_node("Mul", ["x", "half"], ["m"]),
                   helper.make_node("Mul", ["a", "m"], ["y"])],
}


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _check_fused(model: onnx.ModelProto, op: str, attrs: dict[str, object] | None = None
                 ) -> onnx.ModelProto:
    original = onnx.ModelProto()
    original.CopyFrom(model)
    fused, notes = fuse_patterns(model)
    ops = [n.op_type for n in fused.graph.node if n.op_type != "Constant"]
    assert ops == [op], ops
    node = fused.graph.node[-1]
    for key, value in (attrs or {}).items():
        got = helper.get_attribute_value(next(a for a in node.attribute if a.name == key))
        assert (got.decode() if isinstance(got, bytes) else got) == pytest.approx(value)
    assert any("fused" in n for n in notes)
    assert next(o.version for o in fused.opset_import if o.domain == "") >= 17
    onnx.checker.check_model(fused)
    x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32) * 3
    np.testing.assert_allclose(_run(fused, x), _run(original, x), atol=1e-5)
    return fused


@pytest.mark.parametrize("tail", sorted(TAILS))
@pytest.mark.parametrize("divide", [True, False])
@pytest.mark.parametrize("opset", [13, 17, 20])
def test_erf_gelu_is_fused(tail: str, divide: bool, opset: int) -> None:
    model = _model(_erf_front(divide) + TAILS[tail], CONSTANTS, opset)
    _check_fused(model, "Gelu", {"approximate": "none"})


CUBES = {
    "pow": [helper.make_node("Pow", ["x", "three"], ["cube"])],
    "mul": [helper.make_node("Mul", ["x", "x"], ["sq"]),
            helper.make_node("Mul", ["x", "sq"], ["cube"])],
}


@pytest.mark.parametrize("cube", sorted(CUBES))
@pytest.mark.parametrize("tail", sorted(TAILS))
def test_tanh_gelu_is_fused(cube: str, tail: str) -> None:
    nodes = CUBES[cube] + [helper.make_node("Mul", ["c", "cube"], ["w"]),
                           helper.make_node("Add", ["x", "w"], ["v"]),
                           helper.make_node("Mul", ["k", "v"], ["u"]),
                           helper.make_node("Tanh", ["u"], ["t"]),
                           helper.make_node("Add", ["one", "t"], ["a"])] + TAILS[tail]
    _check_fused(_model(nodes, CONSTANTS, 17), "Gelu", {"approximate": "tanh"})


def test_erf_gelu_with_a_wrong_constant_is_left_alone() -> None:
    inits = [_scalar("sqrt2", 1.5)] + CONSTANTS[1:]
    model = _model(_erf_front(True) + TAILS["x*a*half"], inits, 17)
    fused, notes = fuse_patterns(model)
    assert "Erf" in [n.op_type for n in fused.graph.node] and not notes


def test_erf_gelu_whose_intermediate_is_read_elsewhere_is_left_alone() -> None:
    nodes = _erf_front(True) + [helper.make_node("Mul", ["x", "a"], ["m"]),
                                helper.make_node("Mul", ["m", "half"], ["g"]),
                                helper.make_node("Add", ["g", "e"], ["y"])]
    fused, notes = fuse_patterns(_model(nodes, CONSTANTS, 17))
    assert "Gelu" not in [n.op_type for n in fused.graph.node] and not notes


def _layer_norm(opset: int, square: str, scale: bool, shift: bool) -> onnx.ModelProto:
    inits = list(CONSTANTS)
    if opset >= 18:
        inits.append(numpy_helper.from_array(np.array([-1], np.int64), "axes"))
        mean = [helper.make_node("ReduceMean", ["x", "axes"], ["mu"]),
                helper.make_node("ReduceMean", ["sq", "axes"], ["var"])]
    else:
        mean = [helper.make_node("ReduceMean", ["x"], ["mu"], axes=[-1]),
                helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1])]
    sq = helper.make_node("Pow", ["d", "two"], ["sq"]) if square == "pow" else \
        helper.make_node("Mul", ["d", "d"], ["sq"])
    nodes = [mean[0], helper.make_node("Sub", ["x", "mu"], ["d"]), sq, mean[1],
             helper.make_node("Add", ["var", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["s"]),
             helper.make_node("Div", ["d", "s"], ["n" if scale or shift else "y"])]
    if scale:
        nodes.append(helper.make_node("Mul", ["n", "gamma"], ["ng" if shift else "y"]))
    if shift:
        nodes.append(helper.make_node("Add", ["ng" if scale else "n", "beta"], ["y"]))
    return _model(nodes, inits, opset)


@pytest.mark.parametrize("opset", [13, 17, 18])
@pytest.mark.parametrize("square", ["pow", "mul"])
@pytest.mark.parametrize("scale, shift", [(True, True), (False, False), (True, False)])
def test_decomposed_layer_norm_is_fused(opset: int, square: str, scale: bool,
                                        shift: bool) -> None:
    model = _layer_norm(opset, square, scale, shift)
    _check_fused(model, "LayerNormalization", {"axis": -1, "epsilon": 1e-5})


def test_layer_norm_over_another_axis_is_left_alone() -> None:
    model = _layer_norm(17, "pow", True, True)
    for node in model.graph.node:
        if node.op_type == "ReduceMean":
            del node.attribute[:]
            node.attribute.append(helper.make_attribute("axes", [1]))
    fused, notes = fuse_patterns(model)
    assert "LayerNormalization" not in [n.op_type for n in fused.graph.node] and not notes


def test_zero_initial_states_are_dropped_others_kept() -> None:
    hidden = 3
    inits = [numpy_helper.from_array(np.zeros((1, 3 * hidden, 4), np.float32), "W"),
             numpy_helper.from_array(np.zeros((1, 3 * hidden, hidden), np.float32), "R"),
             numpy_helper.from_array(np.zeros((1, 1, hidden), np.float32), "h0"),
             numpy_helper.from_array(np.ones((1, 1, hidden), np.float32), "h1")]
    nodes = [helper.make_node("GRU", ["x", "W", "R", "", "", "h0"], ["ya", "yh"],
                              hidden_size=hidden, name="zero"),
             helper.make_node("GRU", ["x", "W", "R", "", "", "h1"], ["yb", "y"],
                              hidden_size=hidden, name="ones")]
    model = _model(nodes, inits, 17, (5, 1, 4), (1, 1, hidden))
    assert drop_zero_initial_states(model) == ["zero"]
    assert list(model.graph.node[0].input) == ["x", "W", "R"]
    assert model.graph.node[1].input[5] == "h1"
