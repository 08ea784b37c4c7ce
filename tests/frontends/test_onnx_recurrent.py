"""GRU/LSTM/RNN unrolled into primitive ops compute what ONNX Runtime's nodes compute.

Single-node models built with ``onnx.helper`` over a grid of attributes,
initial states and used outputs, and the torch exports of the zoo's
recurrent keyword spotters (both exporters). ONNX Runtime has no batch-first
(``layout=1``) kernel, so such a node's reference is the same node with
``layout=0`` between Transposes.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from eedge.errors import ModelError, UnsupportedOpError
from eedge.frontends.onnx_recurrent import unroll_recurrent

GATES = {"GRU": 3, "LSTM": 4, "RNN": 1}
PRIMITIVE = {"MatMul", "Gemm", "Add", "Sub", "Mul", "Sigmoid", "Tanh", "Split", "Slice",
             "Squeeze", "Unsqueeze", "Concat"}
F, H = 5, 4


def _weights(op: str, dirs: int, bias: bool, init: str, batch: int, seed: int
             ) -> dict[str, np.ndarray]:
    """W, R, B and the initial states in layout 0 (``init``: absent, zero or rand)."""
    rng = np.random.default_rng(seed)
    g = GATES[op]
    arrays = {"W": rng.standard_normal((dirs, g * H, F)),
              "R": rng.standard_normal((dirs, g * H, H))}
    if bias:
        arrays["B"] = rng.standard_normal((dirs, 2 * g * H))
    for key in (("h", "c") if op == "LSTM" else ("h",)):
        if init == "zero":
            arrays[key] = np.zeros((dirs, batch, H))
        elif init == "rand":
            arrays[key] = rng.standard_normal((dirs, batch, H))
    return {k: v.astype(np.float32) for k, v in arrays.items()}


def _model(op: str, arrays: dict[str, np.ndarray], steps: int, layout: int, outputs: str,
           batch: int | str, direction: str = "forward", lbr: int = 1,
           wrap: bool = False) -> onnx.ModelProto:
    """One GRU/LSTM/RNN node; ``wrap``: layout 1 computed as layout 0 between Transposes."""
    dirs = arrays["W"].shape[0]
    node_layout = 0 if wrap else layout
    inits, inputs, nodes = [], ["X", "W", "R", "B" if "B" in arrays else "", ""], []
    for name in ("W", "R", "B"):
        if name in arrays:
            inits.append(numpy_helper.from_array(arrays[name], name))
    for key in (("h", "c") if op == "LSTM" else ("h",)):
        if key in arrays:
            value = arrays[key] if node_layout == 0 else arrays[key].transpose(1, 0, 2)
            inits.append(numpy_helper.from_array(np.ascontiguousarray(value), f"init_{key}"))
            inputs.append(f"init_{key}")
        else:
            inputs.append("")
    while inputs and not inputs[-1]:
        inputs.pop()
    names = ["Y", "Y_h", "Y_c"][:3 if op == "LSTM" else 2]
    wanted = {"y": {"Y"}, "h": {"Y_h"}, "all": set(names)}[outputs]
    attrs: dict[str, object] = {"hidden_size": H, "layout": node_layout, "direction": direction}
    if op == "GRU":
        attrs["linear_before_reset"] = lbr
    if wrap:
        nodes.append(helper.make_node("Transpose", ["X"], ["X_t"], perm=[1, 0, 2]))
        inputs[0] = "X_t"
    node_outs = [(n if not wrap else f"{n}_t") if n in wanted else "" for n in names]
    while not node_outs[-1]:
        node_outs.pop()
    nodes.append(helper.make_node(op, inputs, node_outs, name="rnn", **attrs))
    if wrap:
        for n in wanted:
            perm = [2, 0, 1, 3] if n == "Y" else [1, 0, 2]
            nodes.append(helper.make_node("Transpose", [f"{n}_t"], [n], perm=perm))
    shapes = {"Y": [steps, dirs, batch, H] if layout == 0 else [batch, steps, dirs, H],
              "Y_h": [dirs, batch, H] if layout == 0 else [batch, dirs, H]}
    shapes["Y_c"] = shapes["Y_h"]
    x_shape = [steps, batch, F] if layout == 0 else [batch, steps, F]
    graph = helper.make_graph(
        nodes, "rnn", [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n]) for n in names
         if n in wanted], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def _unrolled(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto.FromString(model.SerializeToString())
    notes = unroll_recurrent(copy)
    assert notes and all("unrolled" in n for n in notes)
    onnx.checker.check_model(copy)
    ops = {n.op_type for n in copy.graph.node}
    assert ops <= PRIMITIVE, ops - PRIMITIVE
    return copy


def _max_error(reference: onnx.ModelProto, unrolled: onnx.ModelProto,
               batches: tuple[int, ...], seed: int = 1) -> float:
    ref = ort.InferenceSession(reference.SerializeToString())
    got = ort.InferenceSession(unrolled.SerializeToString())
    rng = np.random.default_rng(seed)
    dims = [d.dim_value or None for d in reference.graph.input[0].type.tensor_type.shape.dim]
    name = reference.graph.input[0].name
    worst = 0.0
    for batch in batches:
        x = rng.standard_normal([d or batch for d in dims]).astype(np.float32)
        expected, actual = ref.run(None, {name: x}), got.run(None, {name: x})
        assert len(expected) == len(actual)
        for e, a in zip(expected, actual):
            assert e.shape == a.shape
            worst = max(worst, float(np.abs(e - a).max()))
    return worst


def _check(op: str, layout: int, lbr: int, bias: bool, init: str, steps: int, outputs: str,
           direction: str = "forward") -> None:
    dirs = 2 if direction == "bidirectional" else 1
    # a constant initial state fixes the batch (ONNX Runtime checks its shape)
    for batch in (("N",) if init == "absent" else (1, 3)):
        arrays = _weights(op, dirs, bias, init, 1 if batch == "N" else int(batch), seed=steps)
        model = _model(op, arrays, steps, layout, outputs, batch, direction, lbr)
        reference = model if layout == 0 else _model(op, arrays, steps, layout, outputs, batch,
                                                     direction, lbr, wrap=True)
        batches = (1, 3) if batch == "N" else (int(batch),)
        assert _max_error(reference, _unrolled(model), batches) < 1e-5


GRID = [(op, layout, lbr, bias, init, steps, outputs)
        for op, layout, lbr, bias, init, steps, outputs in itertools.product(
            ("GRU", "LSTM", "RNN"), (0, 1), (0, 1), (True, False), ("absent", "zero", "rand"),
            (1, 7),
            ("y", "h", "all"))
        if op == "GRU" or lbr == 0]


@pytest.mark.parametrize("op,layout,lbr,bias,init,steps,outputs", GRID,
                         ids=["-".join(map(str, p)) for p in GRID])
def test_single_node_grid(op: str, layout: int, lbr: int, bias: bool, init: str, steps: int,
                          outputs: str) -> None:
    _check(op, layout, lbr, bias, init, steps, outputs)


DIRECTIONS = [(op, direction, layout, init)
              for op, direction, layout, init in itertools.product(
                  ("GRU", "LSTM", "RNN"), ("reverse", "bidirectional"), (0, 1),
                  ("absent", "rand"))]


@pytest.mark.parametrize("op,direction,layout,init", DIRECTIONS,
                         ids=["-".join(map(str, p)) for p in DIRECTIONS])
def test_directions(op: str, direction: str, layout: int, init: str) -> None:
    _check(op, layout, 1, True, init, 7, "all", direction)


def test_initial_state_from_a_tensor() -> None:
    """A computed initial state (not folded to a constant) is read per step like any tensor."""
    arrays = _weights("LSTM", 1, True, "absent", 1, seed=3)
    model = _model("LSTM", arrays, 7, 0, "all", "N")
    graph = model.graph
    # initial h and c = tanh(X[0]) as (1, N, H): F == H + 1, so slice one feature off
    graph.initializer.extend([numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
                              (("s0", [0, 0]), ("s1", [1, H]), ("ax", [0, 2]))])
    graph.node.insert(0, helper.make_node("Slice", ["X", "s0", "s1", "ax"], ["X0"]))
    graph.node.insert(1, helper.make_node("Tanh", ["X0"], ["state"]))
    rnn = graph.node[2]
    rnn.input.extend(["", "state", "state"])
    unrolled = _unrolled(model)
    assert _max_error(model, unrolled, (1, 3)) < 1e-5


def test_names_are_deterministic_and_weights_dropped() -> None:
    arrays = _weights("GRU", 1, True, "zero", 1, seed=4)
    model = _model("GRU", arrays, 3, 0, "all", 1)
    a, b = _unrolled(model), _unrolled(model)
    assert a.SerializeToString() == b.SerializeToString()
    assert all(n.name.startswith("rnn/") for n in a.graph.node)
    assert {"W", "R", "B", "init_h"}.isdisjoint(i.name for i in a.graph.initializer)
    # a zero initial state: no recurrent product at t=0, so 2 Gemms for 3 steps
    assert sum(n.op_type == "Gemm" for n in a.graph.node) == 2


@pytest.mark.parametrize("op,graph_output", [("GRU", False), ("LSTM", False), ("LSTM", True),
                                             ("RNN", False)])
def test_stacked_layers_and_a_step_read_by_gather(op: str, graph_output: bool) -> None:
    """Layer 2 projects layer 1's states step by step; Gather(time, 3) reads step 3's state.

    ``graph_output``: layer 1's squeezed sequence is also an output, so it stays.
    """
    steps, batch = 5, "N"
    first = _model(op, _weights(op, 1, True, "absent", 1, 5), steps, 0, "y", batch)
    g = GATES[op]
    rng = np.random.default_rng(6)
    graph = first.graph
    graph.initializer.extend([
        numpy_helper.from_array(rng.standard_normal((1, g * H, H)).astype(np.float32), "W2"),
        numpy_helper.from_array(rng.standard_normal((1, g * H, H)).astype(np.float32), "R2"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array(3, np.int64), "three"),
        numpy_helper.from_array(rng.standard_normal((H, 2)).astype(np.float32), "head")])
    graph.node.extend([
        helper.make_node("Squeeze", ["Y", "one"], ["seq"]),
        helper.make_node(op, ["seq", "W2", "R2"], ["Y2"], name="rnn2", hidden_size=H),
        helper.make_node("Gather", ["seq", "three"], ["step3"], axis=0),
        helper.make_node("MatMul", ["step3", "head"], ["exit1"])])
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info("exit1", TensorProto.FLOAT, [batch, 2]),
                         helper.make_tensor_value_info("Y2", TensorProto.FLOAT,
                                                       [steps, 1, batch, H])])
    if graph_output:
        graph.output.append(helper.make_tensor_value_info("seq", TensorProto.FLOAT,
                                                          [steps, batch, H]))
    unrolled = _unrolled(first)
    ops = [n.op_type for n in unrolled.graph.node]
    assert "Gather" not in ops
    assert "three" not in {i.name for i in unrolled.graph.initializer}  # the Gather's index
    assert ops.count("MatMul") == 2  # layer 1's projection and the head; layer 2 uses Gemms
    assert ("Squeeze" in {n.op_type for n in unrolled.graph.node if "seq" in n.output}) \
        == graph_output
    assert _max_error(first, unrolled, (1, 3)) < 1e-5


def _set_attr(model: onnx.ModelProto, **attrs: object) -> onnx.ModelProto:
    node = model.graph.node[0]
    for key, value in attrs.items():
        kept = [a for a in node.attribute if a.name != key]
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute(key, value)])
    return model


@pytest.mark.parametrize("op,attrs,message", [
    ("GRU", {"clip": 3.0}, "clip=3.0 is not supported"),
    ("LSTM", {"input_forget": 1}, "input_forget=1 is not supported"),
    ("GRU", {"activations": ["Relu", "Tanh"]}, "activations=['relu', 'tanh']"),
    ("LSTM", {"activations": ["Sigmoid", "Tanh", "Relu"]}, "activations="),
    ("RNN", {"activations": ["Relu"]}, "activations=['relu']"),
    ("GRU", {"direction": "sideways"}, "direction='sideways'"),
])
def test_refused_attributes(op: str, attrs: dict[str, object], message: str) -> None:
    model = _set_attr(_model(op, _weights(op, 1, True, "absent", 1, 0), 3, 0, "all", 1), **attrs)
    with pytest.raises(UnsupportedOpError, match=f"{op} node 'rnn': .*{message[:12]}"):
        unroll_recurrent(model)


def test_default_activations_spelled_out_are_accepted() -> None:
    arrays = _weights("LSTM", 1, True, "absent", 1, 0)
    model = _set_attr(_model("LSTM", arrays, 3, 0, "all", "N"),
                      activations=["Sigmoid", "Tanh", "Tanh"])
    assert _max_error(model, _unrolled(model), (2,)) < 1e-5


def test_refused_inputs() -> None:
    arrays = _weights("LSTM", 1, True, "absent", 1, 0)
    model = _model("LSTM", arrays, 3, 0, "all", 2)
    model.graph.initializer.extend([numpy_helper.from_array(np.array([3, 2], np.int32), "lens"),
                                    numpy_helper.from_array(np.ones((1, 3 * H), np.float32), "P")])
    node = model.graph.node[0]
    del node.input[4:]
    node.input.extend(["lens"])
    with pytest.raises(UnsupportedOpError, match="sequence_lens"):
        unroll_recurrent(onnx.ModelProto.FromString(model.SerializeToString()))
    node.input[4] = ""
    node.input.extend(["", "", "P"])
    with pytest.raises(UnsupportedOpError, match=r"peepholes \(input P\)"):
        unroll_recurrent(model)


def test_sequence_length_must_be_fixed() -> None:
    model = _model("GRU", _weights("GRU", 1, True, "absent", 1, 0), 3, 0, "all", "N")
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "T"
    with pytest.raises(UnsupportedOpError, match="sequence length must be fixed"):
        unroll_recurrent(model)


def test_old_opset_is_refused() -> None:
    model = _model("GRU", _weights("GRU", 1, True, "absent", 1, 0), 3, 0, "all", "N")
    model.opset_import[0].version = 11
    with pytest.raises(ModelError, match="opset 13"):
        unroll_recurrent(model)


def test_models_without_recurrent_nodes_are_untouched() -> None:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph)
    before = model.SerializeToString()
    assert unroll_recurrent(model) == [] and model.SerializeToString() == before


# -- the zoo's torch exports -------------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


_EXPORTS: dict[tuple[str, bool], tuple[Any, onnx.ModelProto]] = {}


def _export(name: str, dynamo: bool, directory: Path) -> tuple[Any, onnx.ModelProto]:
    """An untrained zoo model and its export, made once per exporter (exports are slow)."""
    if (name, dynamo) not in _EXPORTS:
        import torch
        import zoo_sequence  # type: ignore[import-not-found]

        torch.manual_seed(0)
        module = zoo_sequence.MODELS[name].factory().eval()
        path = directory / f"{name}_{'dynamo' if dynamo else 'legacy'}.onnx"
        zoo_sequence.export_default(name, module, path, dynamo=dynamo)
        _EXPORTS[name, dynamo] = module, onnx.load(str(path))
    return _EXPORTS[name, dynamo]


@pytest.mark.parametrize("name,dynamo,fold", [
    (name, dynamo, fold) for name, dynamo, fold in itertools.product(
        ("gru", "lstm"), (True, False), (False, True))
    if fold or not dynamo])  # the dynamo exports have nothing to fold
def test_torch_exports(name: str, dynamo: bool, fold: bool,
                       tmp_path_factory: pytest.TempPathFactory) -> None:
    """Both exporters' models unroll and match ONNX Runtime and torch (batch 1, as exported).

    ``fold``: the shape arithmetic of the legacy exporter's zero initial state is
    folded first (as the frontend does), so the state is a constant and t=0 has no
    recurrent product; unfolded, the state is an ordinary tensor the steps read.
    """
    import torch

    module, source = _export(name, dynamo, tmp_path_factory.getbasetemp())
    model = onnx.ModelProto.FromString(source.SerializeToString())
    if fold:
        onnx_fold = pytest.importorskip("eedge.frontends.onnx_fold")
        onnx_fold.fold_constants(model)
    notes = unroll_recurrent(model)
    assert len(notes) == 2
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert not set(ops) & {"GRU", "LSTM"}
    if fold or dynamo:
        # torch's Y -> Squeeze/Transpose/Reshape -> Gather(time, -1) became the step's state:
        # one 3-D MatMul projects the input, everything else is 2-D
        assert set(ops) <= PRIMITIVE - {"Concat", "Unsqueeze"}, set(ops)
        assert ops.count("MatMul") == 1
        # layer 1: no recurrent product at t=0; layer 2: T input and T-1 recurrent; exits
        assert ops.count("Gemm") == 7 + (8 + 7) + 2
    assert _max_error(source, model, (1,)) < 1e-5
    if fold:  # the frontend's whole import: folding, unrolling, the operator check, the IR
        from eedge.frontends.onnx_frontend import import_onnx

        imported = import_onnx(source, name=name)
        assert not {n.op_type for n in imported.graph.nodes} & {"GRU", "LSTM"}
        assert _max_error(source, imported.model, (1,)) < 1e-5
    x = np.random.default_rng(0).standard_normal((1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = [o.numpy() for o in module(torch.from_numpy(x))]
    got = ort.InferenceSession(model.SerializeToString()).run(None, {
        model.graph.input[0].name: x})
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, atol=1e-5)
