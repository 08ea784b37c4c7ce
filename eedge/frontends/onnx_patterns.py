"""Fuse the decomposed GELU and LayerNorm exporters write back into single ONNX nodes.

Torch's TorchScript exporter writes ``nn.GELU`` as its formula
(``x * 0.5 * (1 + erf(x / sqrt(2)))``, or the tanh approximation) and, below
opset 17, ``nn.LayerNorm`` as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/
Mul/Add. eedge lowers ``Gelu`` and ``LayerNormalization`` (TFLite's GELU
builtin; MEAN/SQUARED_DIFFERENCE/RSQRT chains), not Erf, Tanh-of-a-cubic or
Sqrt, so the formulas are recognised and replaced by the node they compute.

A match must be exact: every constant is checked (with a float32 tolerance),
every intermediate tensor must be read only inside the pattern and be no
graph output, and the LayerNorm reductions must run over the last axis. A
near miss stays as it is (and is reported as an unsupported op later).
``Gelu`` needs opset 20 and ``LayerNormalization`` opset 17; an older model
is first converted with ``onnx.version_converter``.

GRU/LSTM/RNN initial states that are constant zeros (what the legacy
exporter writes as ``Expand(zeros, [1, batch, hidden])``, folded at the
export's batch) are dropped: zero is ONNX's default, and the dropped
constant would otherwise pin the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference, version_converter

from eedge.errors import ModelError

GELU_OPSET = 20
LAYER_NORM_OPSET = 17
RTOL = 1e-5  # float32 constants written by exporters (sqrt(2) as 1.4142135...)


@dataclass
class _Index:
    """Who produces and who reads each tensor, and the constants."""

    model: onnx.ModelProto
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    readers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: set[str] = field(default_factory=set)
    ranks: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, model: onnx.ModelProto) -> _Index:
        index = cls(model)
        graph = model.graph
        index.constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                attr = next((a for a in node.attribute if a.name == "value"), None)
                if attr is not None:
                    index.constants[node.output[0]] = numpy_helper.to_array(attr.t)
            for out in node.output:
                index.producer[out] = node
            for name in dict.fromkeys(node.input):
                if name:
                    index.readers.setdefault(name, []).append(node)
        index.outputs = {o.name for o in graph.output}
        try:
            inferred = shape_inference.infer_shapes(model)
        except Exception:
            inferred = model
        for value in list(inferred.graph.input) + list(inferred.graph.value_info):
            if value.type.tensor_type.HasField("shape"):
                index.ranks[value.name] = len(value.type.tensor_type.shape.dim)
        return index

    def scalar(self, name: str) -> float | None:
        """The value of a one-element float constant, else None."""
        value = self.constants.get(name)
        if value is None or value.size != 1 or value.dtype.kind != "f":
            return None
        return float(value.reshape(()))

    def is_scalar(self, name: str, expected: float) -> bool:
        value = self.scalar(name)
        return value is not None and math.isclose(value, expected, rel_tol=RTOL)

    def private(self, name: str) -> onnx.NodeProto | None:
        """The single reader of ``name`` when nothing else (no graph output) reads it."""
        readers = self.readers.get(name, [])
        return readers[0] if len(readers) == 1 and name not in self.outputs else None

    def made_by(self, name: str, op_type: str) -> onnx.NodeProto | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None


def _other(node: onnx.NodeProto, name: str) -> str | None:
    """The other input of a two-input node one of whose inputs is ``name``."""
    if len(node.input) != 2 or name not in node.input:
        return None
    return node.input[1] if node.input[0] == name else node.input[0]


@dataclass
class _Match:
    """Nodes to remove and the node that replaces them (placed where ``last`` was)."""

    nodes: list[onnx.NodeProto]
    last: onnx.NodeProto
    fused: onnx.NodeProto
    initializers: list[onnx.TensorProto] = field(default_factory=list)


def _gelu_tail(index: _Index, x: str, plus_one: str
               ) -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
    """The nodes computing ``x * 0.5 * plus_one`` in any of the orders exporters write."""
    first = index.private(plus_one)
    if first is None or first.op_type != "Mul":
        return None
    other = _other(first, plus_one)
    if other is None:
        return None
    if other == x or index.is_scalar(other, 0.5):
        second = index.private(first.output[0])
        if second is None or second.op_type != "Mul":
            return None
        want = (lambda n: index.is_scalar(n, 0.5)) if other == x else (lambda n: n == x)
        last = _other(second, first.output[0])
        return (second, [first, second]) if last is not None and want(last) else None
    half = index.made_by(other, "Mul")
    if half is None or index.private(other) is not first or x not in half.input or \
            not index.is_scalar(_other(half, x) or "", 0.5):
        return None
    return first, [half, first]


def _plus_one(index: _Index, name: str) -> onnx.NodeProto | None:
    node = index.private(name)
    if node is None or node.op_type != "Add" or not index.is_scalar(_other(node, name) or "", 1.0):
        return None
    return node


def _match_erf_gelu(index: _Index, erf: onnx.NodeProto) -> _Match | None:
    scaled = erf.input[0]
    div = index.producer.get(scaled)
    if div is None or index.private(scaled) is not erf:
        return None
    if div.op_type == "Div" and index.is_scalar(div.input[1], math.sqrt(2.0)):
        x = div.input[0]
    elif div.op_type == "Mul" and any(index.is_scalar(n, math.sqrt(0.5)) for n in div.input):
        x = div.input[1] if index.is_scalar(div.input[0], math.sqrt(0.5)) else div.input[0]
    else:
        return None
    return _gelu_match(index, x, erf.output[0], "none", [div, erf])


def _gelu_match(index: _Index, x: str, activated: str, approximate: str,
                head: list[onnx.NodeProto]) -> _Match | None:
    """The shared end of both GELU forms: ``activated`` (erf(...) or tanh(...)) plus one,
    times 0.5 and x in either order; the match from ``head`` through it, or None."""
    plus = _plus_one(index, activated)
    tail = None if plus is None else _gelu_tail(index, x, plus.output[0])
    if tail is None:
        return None
    last, tail_nodes = tail
    fused = helper.make_node("Gelu", [x], [last.output[0]], name=f"{last.name}__gelu",
                             approximate=approximate)
    return _Match([*head, plus, *tail_nodes], last, fused)  # type: ignore[list-item]


def _cube_of(index: _Index, name: str) -> tuple[str, list[onnx.NodeProto]] | None:
    """``x`` and the nodes when ``name`` is x**3 written as Pow(x, 3) or x*(x*x)."""
    node = index.producer.get(name)
    if node is None or index.private(name) is None:
        return None
    if node.op_type == "Pow" and index.is_scalar(node.input[1], 3.0):
        return node.input[0], [node]
    if node.op_type != "Mul" or len(node.input) != 2:
        return None
    for square_name, x in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        square = index.made_by(square_name, "Mul")
        if square is not None and list(square.input) == [x, x] and \
                index.private(square_name) is node:
            return x, [square, node]
    return None


def _match_tanh_gelu(index: _Index, tanh: onnx.NodeProto) -> _Match | None:
    scaled = index.made_by(tanh.input[0], "Mul")
    if scaled is None or index.private(tanh.input[0]) is not tanh:
        return None
    coeff = next((n for n in scaled.input if index.is_scalar(n, math.sqrt(2.0 / math.pi))), None)
    inner = _other(scaled, coeff) if coeff else None
    add = index.made_by(inner or "", "Add")
    if add is None or index.private(add.output[0]) is not scaled:
        return None
    for x, term in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):
        mul = index.made_by(term, "Mul")
        if mul is None or index.private(term) is not add:
            continue
        cube_name = next((_other(mul, n) for n in mul.input if index.is_scalar(n, 0.044715)),
                         None)
        cube = _cube_of(index, cube_name) if cube_name else None
        if cube is None or cube[0] != x:
            continue
        return _gelu_match(index, x, tanh.output[0], "tanh",
                           [*cube[1], mul, add, scaled, tanh])
    return None


def _reduces_last_axis(index: _Index, node: onnx.NodeProto, x: str) -> bool:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("keepdims", 1) != 1:
        return False
    axes = attrs.get("axes")
    if len(node.input) > 1 and node.input[1]:
        value = index.constants.get(node.input[1])
        axes = None if value is None else value.reshape(-1).tolist()
    rank = index.ranks.get(x)
    return axes is not None and len(axes) == 1 and rank is not None and \
        int(axes[0]) in (-1, rank - 1)


def _per_channel(value: np.ndarray | None) -> bool:
    """A LayerNorm weight/bias: only the last axis may exceed 1."""
    return value is not None and value.dtype.kind == "f" and \
        all(d == 1 for d in value.shape[:-1])


def _match_layer_norm(index: _Index, div: onnx.NodeProto) -> _Match | None:
    if len(div.input) != 2:
        return None
    centred, denom = div.input
    sub, sqrt = index.made_by(centred, "Sub"), index.made_by(denom, "Sqrt")
    if sub is None or sqrt is None or index.private(denom) is not div:
        return None
    x, mean_name = sub.input
    mean = index.made_by(mean_name, "ReduceMean")
    if mean is None or mean.input[0] != x or index.private(mean_name) is not sub or \
            not _reduces_last_axis(index, mean, x):
        return None
    add_eps = index.made_by(sqrt.input[0], "Add")
    if add_eps is None or index.private(sqrt.input[0]) is not sqrt:
        return None
    eps_name = next((n for n in add_eps.input if index.scalar(n) is not None), None)
    var_name = _other(add_eps, eps_name) if eps_name else None
    var = index.made_by(var_name or "", "ReduceMean")
    if var is None or index.private(var.output[0]) is not add_eps or \
            not _reduces_last_axis(index, var, centred):
        return None
    square = index.producer.get(var.input[0])
    if square is None or index.private(var.input[0]) is not var or not (
            (square.op_type == "Pow" and square.input[0] == centred and
             index.is_scalar(square.input[1], 2.0)) or
            (square.op_type == "Mul" and list(square.input) == [centred, centred])):
        return None
    if {id(n) for n in index.readers.get(centred, [])} != {id(square), id(div)} or \
            centred in index.outputs:
        return None
    nodes = [mean, sub, square, var, add_eps, sqrt, div]
    last, gamma, beta = div, None, None
    scale = index.private(div.output[0])
    if scale is not None and scale.op_type == "Mul" and \
            _per_channel(index.constants.get(_other(scale, div.output[0]) or "")):
        gamma, last = _other(scale, div.output[0]), scale
        nodes.append(scale)
    shift = index.private(last.output[0])
    if shift is not None and shift.op_type == "Add" and \
            _per_channel(index.constants.get(_other(shift, last.output[0]) or "")):
        beta, last = _other(shift, last.output[0]), shift
        nodes.append(shift)
    return _layer_norm_node(index, x, gamma, beta, float(index.scalar(eps_name)),  # type: ignore[arg-type]
                            nodes, last)


def _layer_norm_node(index: _Index, x: str, gamma: str | None, beta: str | None, eps: float,
                     nodes: list[onnx.NodeProto], last: onnx.NodeProto) -> _Match | None:
    """LayerNormalization(x, gamma, beta) with weights flattened to the channel axis."""
    shapes = shape_inference.infer_shapes(index.model).graph.value_info
    shape = next((v.type.tensor_type.shape for v in shapes if v.name == x), None)
    graph_input = next((v for v in index.model.graph.input if v.name == x), None)
    if shape is None and graph_input is not None:
        shape = graph_input.type.tensor_type.shape
    if shape is None or not len(shape.dim) or not shape.dim[-1].HasField("dim_value"):
        return None
    channels = int(shape.dim[-1].dim_value)
    inits: list[onnx.TensorProto] = []
    names: list[str] = []
    for role, name, default in (("scale", gamma, 1.0), ("bias", beta, 0.0)):
        value = np.full(channels, default, np.float32) if name is None else \
            index.constants[name].astype(np.float32).reshape(-1)
        if value.size == 1:
            value = np.full(channels, value[0], np.float32)
        if value.size != channels:
            return None
        new_name = f"{last.name}__layer_norm_{role}"
        inits.append(numpy_helper.from_array(value, new_name))
        names.append(new_name)
    fused = helper.make_node("LayerNormalization", [x, *names], [last.output[0]],
                             name=f"{last.name}__layer_norm", axis=-1, epsilon=eps)
    return _Match(nodes, last, fused, inits)


_MATCHERS: dict[str, tuple[Callable[[_Index, onnx.NodeProto], _Match | None], int]] = {
    "Erf": (_match_erf_gelu, GELU_OPSET),
    "Tanh": (_match_tanh_gelu, GELU_OPSET),
    "Div": (_match_layer_norm, LAYER_NORM_OPSET),
}


def _find(model: onnx.ModelProto) -> list[tuple[_Match, int]]:
    index = _Index.build(model)
    found: list[tuple[_Match, int]] = []
    taken: set[int] = set()
    for node in model.graph.node:
        entry = _MATCHERS.get(node.op_type)
        match = entry[0](index, node) if entry else None
        if match is None or any(id(n) in taken for n in match.nodes):
            continue
        taken |= {id(n) for n in match.nodes}
        found.append((match, entry[1]))  # type: ignore[index]
    return found


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _convert(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    try:
        converted = version_converter.convert_version(model, target)
    except Exception as exc:
        text = str(exc).strip()
        reason = (text.splitlines()[0] if text else type(exc).__name__).rpartition(" failed: ")[2]
        raise ModelError(f"the model's GELU/LayerNorm formulas need opset {target} to fuse and "
                         f"onnx.version_converter cannot convert it ({reason}); re-export "
                         f"with opset_version={target}") from exc
    converted.ir_version = max(converted.ir_version, helper.find_min_ir_version_for(
        [helper.make_opsetid("", target)]))
    return converted


def fuse_patterns(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Fuse GELU and LayerNorm formulas; returns the (possibly converted) model and notes."""
    notes: list[str] = []
    found = _find(model)
    if not found:
        return model, notes
    need = max(opset for _, opset in found)
    current = _opset(model)
    if current < need:
        model = _convert(model, need)
        notes.append(f"the model uses opset {current}; eedge converted it to opset {need} "
                     "with onnx.version_converter to fuse GELU/LayerNorm")
        found = _find(model)
    replace = {id(m.last): m for m, _ in found}
    removed = {id(n) for m, _ in found for n in m.nodes}
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if id(node) in replace:
            nodes.append(replace[id(node)].fused)
        elif id(node) not in removed:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(i for m, _ in found for i in m.initializers)
    del model.graph.value_info[:]
    counts: dict[str, int] = {}
    for match, _ in found:
        counts[match.fused.op_type] = counts.get(match.fused.op_type, 0) + 1
    notes.append("eedge fused " + ", ".join(f"{n} {op} formula(s)" for op, n in
                                              sorted(counts.items())) + " into single nodes")
    from eedge.frontends.onnx_fold import drop_unused_initializers
    drop_unused_initializers(model)
    return model, notes


RECURRENT_STATES = {"GRU": (5,), "RNN": (5,), "LSTM": (5, 6)}
"""Input slots of the initial hidden (and cell) state."""


def drop_zero_initial_states(model: onnx.ModelProto) -> list[str]:
    """Remove constant all-zero initial states of GRU/LSTM/RNN (zero is ONNX's default)."""
    index = _Index.build(model)
    dropped: list[str] = []
    for node in model.graph.node:
        for slot in RECURRENT_STATES.get(node.op_type, ()):
            if slot < len(node.input) and node.input[slot]:
                value = index.constants.get(node.input[slot])
                if value is not None and not np.any(value):
                    node.input[slot] = ""
                    dropped.append(node.name)
        while node.op_type in RECURRENT_STATES and node.input and not node.input[-1]:
            del node.input[-1]
    return sorted(set(dropped))
