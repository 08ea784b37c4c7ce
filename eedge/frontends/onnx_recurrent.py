"""Unroll ONNX GRU, LSTM and RNN nodes over their fixed sequence length into primitive ops.

No TFLite builtin, reference kernel or C kernel runs a recurrent cell, but
every piece of one is an op eedge already deploys on every path (float,
int8, C): a recurrent node over a *fixed* number of time steps is exactly a
chain of fully connected layers, logistic/tanh activations and elementwise
arithmetic. Unrolling in the frontend lets every backend, the quantizer and
the early-exit splitter see ordinary nodes (an exit may then sit after any
time step or layer), at the cost of a graph whose size grows with T.

The pass rewrites the ModelProto in place; the contract for the lowering:

- inputs of all time steps are projected at once: one ``MatMul`` of the
  sequence by a constant ``Wᵀ`` (+ one ``Add`` of the folded biases), then
  ``Slice`` + ``Squeeze`` per step give 2-D ``(N, gates·H)`` tensors. When
  the sequence is the output (or has a consumer) ``Transpose(perm=[1, 0, 2])``
  (what torch writes for ``batch_first=True``) the projection reads the
  batch-first tensor instead, so nothing time-major is computed;
- a layer whose input is a previous layer's ``Y`` (through the Squeeze/
  Transpose/Reshape torch writes) projects each step's 2-D state with its
  own ``Gemm`` instead: T FCs replace MatMul + T Slice/Squeeze + the T
  Unsqueeze and the Concat that built ``Y`` (same MACs); and a
  ``Gather`` of one time step from such a sequence (torch's ``h[:, -1]``)
  becomes that step's state, so exits read 2-D states and the 4-D ``Y``
  disappears when nothing else reads it;
- the recurrent product is one ``Gemm(h, R, transB=1)`` per step with a
  constant ``R`` (one FULLY_CONNECTED), whose result is cut into gates by a
  ``Split`` on the last axis: one FC and one SPLIT are cheaper than one FC
  per gate (same MACs, one op instead of three, ``h`` read once);
- gate activations run on the concatenated gates where they share one
  (GRU ``z·r``, LSTM ``i·o·f``), then a ``Split`` separates them;
- all per-step states are 2-D ``(N, H)``, batch first; the GRU update is
  ``h = n + z·(h_prev − n)`` (SUB, MUL, ADD: no ``1 − z`` constant, which
  int8 would quantize badly); the LSTM's ``c = f·c_prev + i·g``,
  ``h = o·tanh(c)``;
- a constant initial state (absent = zeros, the torch exporters' case) is
  folded: its recurrent product is computed here, and zero terms are
  dropped, so no node has only constant inputs;
- ``Y``/``Y_h``/``Y_c`` are built (``Unsqueeze`` + ``Concat``) exactly as
  ONNX defines them, and only when something reads them;
- new nodes and tensors are named ``<recurrent node>/<direction>/t<step>/<what>``;
  the weights and unread nodes the rewrite leaves behind are dropped.

Only default activations, no ``clip``, no peepholes, no ``input_forget``,
and ``sequence_lens`` only when it is constant and equal to the sequence
length: anything else is refused with one line naming the node.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from eedge.errors import ModelError, UnsupportedOpError

RECURRENT_OPS = ("GRU", "LSTM", "RNN")
GATES = {"GRU": 3, "LSTM": 4, "RNN": 1}
DEFAULT_ACTIVATIONS = {"GRU": ("sigmoid", "tanh"), "LSTM": ("sigmoid", "tanh", "tanh"),
                       "RNN": ("tanh",)}
MIN_OPSET = 13  # Slice/Squeeze/Unsqueeze/Split take their axes and sizes as inputs


def unroll_recurrent(model: onnx.ModelProto) -> list[str]:
    """Replace every GRU and LSTM node of the main graph; return one note per node.

    Run after constant folding (so an initial state computed from shapes is a
    constant by now) and before the operator check; the model must use
    opset 13 or newer.
    """
    graph = model.graph
    if not any(n.op_type in RECURRENT_OPS for n in graph.node):
        return []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise ModelError(f"unrolling GRU/LSTM/RNN needs opset {MIN_OPSET} or newer (the model "
                         f"uses {opset}); convert it first")
    shapes = _static_shapes(model)
    constants = _constants(graph)
    used = {name for n in graph.node for name in list(n.input) + list(n.output)}
    used |= {v.name for v in list(graph.input) + list(graph.output) + list(graph.initializer)}
    used |= {n.name for n in graph.node}
    graph_outputs = {o.name for o in graph.output}
    consumed = {name for n in graph.node for name in n.input} | graph_outputs
    producers = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)

    new_nodes: list[onnx.NodeProto] = []
    notes: list[str] = []
    candidates: set[str] = set()  # what may be left unread: dropped at the end
    sequences: dict[str, _Seq] = {}
    alias: dict[str, str] = {}  # a Gather of one time step -> that step's state
    for index, node in enumerate(graph.node):
        for k, name in enumerate(node.input):
            if name in alias:
                node.input[k] = alias[name]
        if node.op_type not in RECURRENT_OPS or node.domain not in ("", "ai.onnx"):
            step = _follow(node, sequences, constants, shapes)
            if isinstance(step, str) and node.output[0] not in graph_outputs:
                alias[node.output[0]] = step
                candidates |= {name for name in node.input if name}  # e.g. its index
                continue
            if step is not None:
                candidates.add(node.output[0])
            new_nodes.append(node)
            continue
        builder = _Builder(node.name or f"{node.op_type}_{index}", used)
        cell = _Cell.read(node, builder.prefix, constants, shapes)
        outputs = [o if o in consumed else "" for o in node.output]
        stacked = sequences.get(node.input[0])
        if stacked is not None and stacked.kind == ("tnh" if cell.layout == 0 else "nth"):
            source: str | list[str] = stacked.states  # the previous layer's states, per step
            time_axis = -1
        else:
            source, time_axis = _projection_source(node.input[0], cell.layout, producers,
                                                   consumers)
        states = _unroll(cell, builder, source, time_axis, outputs)
        if outputs[0] and len(states) == 1:
            sequences[outputs[0]] = _Seq(states[0], "y0" if cell.layout == 0 else "y1")
        graph.initializer.extend(builder.initializers)
        new_nodes.extend(builder.nodes)
        candidates |= {o for n in builder.nodes for o in n.output}
        candidates |= {name for name in node.input if name}
        notes.append(f"{node.op_type} node {builder.prefix!r} was unrolled over its {cell.steps} "
                     f"time step(s) into {len(builder.nodes)} nodes")
    available = {i.name for i in graph.initializer} | {i.name for i in graph.input}
    del graph.node[:]
    graph.node.extend(_topological(new_nodes, available))
    _drop_dead(graph, candidates)
    produced = {o for n in graph.node for o in n.output}
    kept = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    return notes


# -- reading the node --------------------------------------------------------------------------


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | str | None, ...]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    shapes: dict[str, tuple[int | str | None, ...]] = {}
    for v in list(g.input) + list(g.value_info) + list(g.output):
        if v.type.tensor_type.HasField("shape"):
            shapes[v.name] = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in v.type.tensor_type.shape.dim)
    for init in g.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type != "Constant":
            continue
        attrs = {a.name: a for a in node.attribute}
        if "value" in attrs:
            values[node.output[0]] = numpy_helper.to_array(attrs["value"].t)
        elif "value_float" in attrs or "value_floats" in attrs:
            key = "value_float" if "value_float" in attrs else "value_floats"
            values[node.output[0]] = np.asarray(helper.get_attribute_value(attrs[key]),
                                                np.float32)
    return values


@dataclass
class _Cell:
    """One GRU/LSTM/RNN node's weights and attributes, per direction."""

    op: str
    name: str
    hidden: int
    steps: int
    layout: int
    directions: list[str]
    W: np.ndarray  # (dirs, gates*H, F)
    R: np.ndarray  # (dirs, gates*H, H)
    B: np.ndarray  # (dirs, 2*gates*H)
    linear_before_reset: int
    initial: dict[str, list[np.ndarray | str | None]] = field(default_factory=dict)
    """"h"/"c" -> per direction: a constant (N0, H), a tensor name (already (N, H)) or None."""

    @staticmethod
    def read(node: onnx.NodeProto, name: str, constants: dict[str, np.ndarray],
             shapes: dict[str, tuple[int | str | None, ...]]) -> _Cell:
        op = node.op_type
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        where = f"{op} node {name!r}"

        def refuse(what: str) -> UnsupportedOpError:
            return UnsupportedOpError(f"{where}: {what} is not supported; eedge unrolls {op} "
                                      "over a fixed sequence with the default cell only")

        direction = attrs.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else str(direction)
        dirs = {"forward": ["forward"], "reverse": ["reverse"],
                "bidirectional": ["forward", "reverse"]}.get(direction)
        if dirs is None:
            raise refuse(f"direction={direction!r}")
        if "clip" in attrs:
            raise refuse(f"clip={attrs['clip']}")
        if attrs.get("input_forget", 0):
            raise refuse("input_forget=1")
        acts = attrs.get("activations")
        if acts is not None:
            acts = tuple(a.decode().lower() if isinstance(a, bytes) else str(a).lower()
                         for a in acts)
            if acts != DEFAULT_ACTIVATIONS[op] * len(dirs):
                raise refuse(f"activations={list(acts)}")
        layout = int(attrs.get("layout", 0))
        if layout not in (0, 1):
            raise refuse(f"layout={layout}")
        lbr = int(attrs.get("linear_before_reset", 0)) if op == "GRU" else 0

        def constant(i: int, what: str) -> np.ndarray | None:
            if len(node.input) <= i or not node.input[i]:
                return None
            value = constants.get(node.input[i])
            if value is None:
                raise UnsupportedOpError(f"{where}: its {what} ({node.input[i]!r}) must be a "
                                         "constant")
            return value.astype(np.float32)

        W, R = constant(1, "input weights W"), constant(2, "recurrence weights R")
        assert W is not None and R is not None  # the ONNX checker requires both
        gates = GATES[op]
        hidden = int(attrs.get("hidden_size", R.shape[-1]))
        if W.shape[:2] != (len(dirs), gates * hidden) or R.shape != (len(dirs), gates * hidden,
                                                                       hidden):
            raise ModelError(f"{where}: W {list(W.shape)} and R {list(R.shape)} do not match "
                             f"{len(dirs)} direction(s) of {gates} gates of {hidden}")
        B = constant(3, "bias B")
        B = np.zeros((len(dirs), 2 * gates * hidden), np.float32) if B is None else B
        x_shape = shapes.get(node.input[0])
        steps = x_shape[layout] if x_shape and len(x_shape) == 3 else None
        if not isinstance(steps, int) or steps < 1:
            raise UnsupportedOpError(f"{where}: its sequence length must be fixed (input "
                                     f"{node.input[0]!r} has shape {list(x_shape or [])}); "
                                     "export with a fixed number of time steps")
        if len(node.input) > 4 and node.input[4]:
            lens = constants.get(node.input[4])
            if lens is None or not np.all(lens == steps):
                raise refuse("sequence_lens (other than a constant equal to the sequence "
                             "length)")
        if op == "LSTM" and len(node.input) > 7 and node.input[7]:
            peep = constants.get(node.input[7])
            if peep is None or np.any(peep != 0):
                raise refuse("peepholes (input P)")
        cell = _Cell(op, name, hidden, steps, layout, dirs, W, R, B, lbr)
        for key, i in (("h", 5), ("c", 6)):
            if key == "c" and op != "LSTM":
                continue
            cell.initial[key] = [None] * len(dirs)
            if len(node.input) <= i or not node.input[i]:
                continue
            value = constants.get(node.input[i])
            if value is not None:
                value = value.astype(np.float32)
                per_dir = value if layout == 0 else np.swapaxes(value, 0, 1)
                cell.initial[key] = [None if not np.any(per_dir[d]) else per_dir[d]
                                     for d in range(len(dirs))]
            else:
                cell.initial[key] = [node.input[i]] * len(dirs)  # cut per direction later
        return cell


def _swaps_first_axes(node: onnx.NodeProto) -> bool:
    perm = next((list(helper.get_attribute_value(a)) for a in node.attribute
                 if a.name == "perm"), None)
    return node.op_type == "Transpose" and perm == [1, 0, 2]


def _projection_source(x: str, layout: int, producers: dict[str, onnx.NodeProto],
                       consumers: dict[str, list[onnx.NodeProto]]) -> tuple[str, int]:
    """Where the input projection reads the sequence, and its time axis.

    torch writes ``Transpose(perm=[1, 0, 2])`` in front of a ``batch_first``
    recurrent layer (the dynamo exporter), or reads a time-major sequence
    that is also transposed to batch first for something else (the legacy
    exporter, between stacked layers). Projecting the batch-first tensor
    keeps every tensor of the unrolled cell batch first, and an early exit
    between layers then cuts the graph at a batch-first tensor. An unread
    Transpose is dropped afterwards.
    """
    if layout == 1:
        return x, 1
    producer = producers.get(x)
    if producer is not None and _swaps_first_axes(producer):
        return producer.input[0], 1
    for consumer in consumers.get(x, []):
        if _swaps_first_axes(consumer) and consumer.output[0]:
            return consumer.output[0], 1
    return x, 0


def _topological(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Order ``nodes`` so each follows its producers, keeping the given order where it can.

    A projection may read a Transpose that the original graph placed after
    the recurrent node.
    """
    producer_of = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    waiting = [sum(1 for name in set(n.input) if name and name not in available and
                   name in producer_of) for n in nodes]
    readers: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        for name in set(n.input):
            if name and name not in available and name in producer_of:
                readers.setdefault(producer_of[name], []).append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order: list[onnx.NodeProto] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for j in readers.get(i, []):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(nodes):
        raise ModelError("the graph has a cycle after unrolling GRU/LSTM/RNN")
    return order


@dataclass
class _Seq:
    """A tensor known to stack one direction's per-step states along time.

    ``kind`` names its layout: ``y0`` (T, 1, N, H) and ``y1`` (N, T, 1, H) are
    ``Y`` of layout 0 and 1; ``tn1h`` (T, N, 1, H) is torch's transposed Y;
    ``tnh`` (T, N, H) and ``nth`` (N, T, H) are the squeezed sequences.
    """

    states: list[str]
    kind: str


_TIME_AXIS = {"tnh": 0, "nth": 1}
_SQUEEZES = {("y0", (1,)): "tnh", ("y1", (2,)): "nth", ("tn1h", (2,)): "tnh"}
_TRANSPOSES = {("y0", (0, 2, 1, 3)): "tn1h", ("tnh", (1, 0, 2)): "nth",
               ("nth", (1, 0, 2)): "tnh"}


def _follow(node: onnx.NodeProto, sequences: dict[str, _Seq], constants: dict[str, np.ndarray],
            shapes: dict[str, tuple[int | str | None, ...]]) -> str | _Seq | None:
    """What ``node`` makes of a stacked sequence: another layout of it, one step, or nothing.

    torch reads the last hidden state as ``Y -> Squeeze/Transpose/Reshape ->
    Gather(time, -1)``; following those layout changes lets the exit read the
    step's 2-D state itself (no 4-D Y, no Gather) and the next layer project
    each step's state directly. Only exact layout identities are followed.
    """
    seq = sequences.get(node.input[0]) if node.input else None
    if seq is None or not node.output or not node.output[0]:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    kind = None
    if node.op_type == "Squeeze" and len(node.input) > 1:
        axes = constants.get(node.input[1])
        rank = 4
        if axes is not None:
            kind = _SQUEEZES.get((seq.kind, tuple(int(a) % rank for a in axes.reshape(-1))))
    elif node.op_type == "Transpose":
        kind = _TRANSPOSES.get((seq.kind, tuple(attrs.get("perm", ()))))
    elif node.op_type == "Reshape" and seq.kind == "tn1h":
        before, after = shapes.get(node.input[0]), shapes.get(node.output[0])
        if before and after and all(isinstance(d, int) for d in before + after) and \
                after == before[:2] + before[3:]:
            kind = "tnh"
    elif node.op_type == "Gather" and seq.kind in _TIME_AXIS and \
            int(attrs.get("axis", 0)) % 3 == _TIME_AXIS[seq.kind]:
        index = constants.get(node.input[1])
        if index is not None and index.ndim == 0 and -len(seq.states) <= int(index) < \
                len(seq.states):
            return seq.states[int(index)]
    if kind is None:
        return None
    sequences[node.output[0]] = _Seq(seq.states, kind)
    return sequences[node.output[0]]


# -- building the unrolled graph ---------------------------------------------------------------


class _Builder:
    """Appends nodes and initializers named ``<node name>/<suffix>``, never reusing a name."""

    def __init__(self, prefix: str, used: set[str]) -> None:
        self.prefix = prefix
        self.used = used
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def fresh(self, suffix: str) -> str:
        base = f"{self.prefix}/{suffix}"
        name, k = base, 1
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name

    def const(self, suffix: str, value: np.ndarray) -> str:
        name = self.fresh(suffix)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], suffix: str, out: str = "",
           **attrs: object) -> str:
        return self.ops(op_type, inputs, suffix, [out], **attrs)[0]

    def ops(self, op_type: str, inputs: Sequence[str], suffix: str, outs: Sequence[str],
            **attrs: object) -> list[str]:
        """A node; ``outs`` are names to write to ("" = a fresh ``suffix`` name)."""
        names = [o or self.fresh(suffix if len(outs) == 1 else f"{suffix}{k}")
                 for k, o in enumerate(outs)]
        node_name = names[0] if names[0].startswith(self.prefix + "/") else self.fresh(suffix)
        self.used.add(node_name)
        self.nodes.append(helper.make_node(op_type, list(inputs), names, node_name, **attrs))
        return names


@dataclass
class _Steps:
    """The shared constants of one cell and the per-step ops."""

    b: _Builder
    tag: str = ""
    """The direction's name prefix ("" for one direction, "fw/" or "bw/")."""
    axes: dict[tuple[int, ...], str] = field(default_factory=dict)
    sizes: dict[tuple[int, ...], str] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)

    def weight(self, key: str, value: np.ndarray) -> str:
        """One initializer per direction for a weight every step reads."""
        name = self.tag + key
        if name not in self.weights:
            self.weights[name] = self.b.const(name, np.ascontiguousarray(value))
        return self.weights[name]

    def axes_const(self, axes: tuple[int, ...]) -> str:
        if axes not in self.axes:
            self.axes[axes] = self.b.const("axes" + "_".join(map(str, axes)),
                                           np.array(axes, np.int64))
        return self.axes[axes]

    def split(self, x: str, parts: Sequence[int], tag: str,
              names: Sequence[str]) -> list[str]:
        key = tuple(parts)
        if key not in self.sizes:
            self.sizes[key] = self.b.const("split" + "_".join(map(str, key)),
                                           np.array(key, np.int64))
        outs = self.b.ops("Split", [x, self.sizes[key]], f"{tag}/split",
                          [self.b.fresh(f"{tag}/{n}") for n in names], axis=1)
        return outs

    def add(self, x: str, value: np.ndarray | str | None, tag: str) -> str:
        """``x + value``, skipping a constant zero."""
        if value is None or (isinstance(value, np.ndarray) and not np.any(value)):
            return x
        other = value if isinstance(value, str) else self.b.const(f"{tag}_const", value)
        return self.b.op("Add", [x, other], tag)


def _unroll(cell: _Cell, b: _Builder, source: str | list[str], time_axis: int,
            outputs: Sequence[str]) -> list[list[str]]:
    """Emit the cell's steps and its used outputs; return each direction's states in time order.

    ``source``: the sequence tensor (projected at once, sliced on ``time_axis``)
    or a previous layer's 2-D states (each projected by its own Gemm: T FCs
    instead of MatMul + T Slice/Squeeze + the Unsqueeze/Concat that built it).
    """
    steps = _Steps(b)
    H, T = cell.hidden, cell.steps
    gates = GATES[cell.op]
    states: dict[str, list[list[str]]] = {"h": [], "c": []}  # per direction, per time position
    for d, direction in enumerate(cell.directions):
        tag = "" if len(cell.directions) == 1 else ("fw/" if direction == "forward" else "bw/")
        steps.tag = tag
        W, R, B = cell.W[d], cell.R[d], cell.B[d]
        wb, rb = B[:gates * H], B[gates * H:]
        in_bias = wb + rb
        rec_bias = np.zeros(gates * H, np.float32)
        if cell.op == "GRU" and cell.linear_before_reset:
            # r multiplies (h·Rhᵀ + Rbh): that bias stays inside the recurrent product
            in_bias[2 * H:] = wb[2 * H:]
            rec_bias[2 * H:] = rb[2 * H:]
        if isinstance(source, str):
            proj = b.op("MatMul", [source, b.const(f"{tag}W_t", np.ascontiguousarray(W.T))],
                        f"{tag}x_proj")
            proj = steps.add(proj, in_bias, f"{tag}x_proj_bias")
        h: np.ndarray | str | None = _initial(cell, b, steps, "h", d)
        c: np.ndarray | str | None = _initial(cell, b, steps, "c", d) if cell.op == "LSTM" \
            else None
        hs: list[str] = [""] * T
        cs: list[str] = [""] * T
        order = range(T) if direction == "forward" else range(T - 1, -1, -1)
        for t in order:
            st = f"{tag}t{t}"
            if isinstance(source, str):
                sl = b.op("Slice", [proj, b.const(f"{st}/start", np.array([t], np.int64)),
                                    b.const(f"{st}/end", np.array([t + 1], np.int64)),
                                    steps.axes_const((time_axis,))], f"{st}/x_slice")
                x_t = b.op("Squeeze", [sl, steps.axes_const((time_axis,))], f"{st}/x")
            else:
                operands = [source[t], steps.weight("W", W)]
                if np.any(in_bias):
                    operands.append(steps.weight("W_bias", in_bias))
                x_t = b.op("Gemm", operands, f"{st}/x", transB=1)
            if cell.op == "GRU":
                h = _gru_step(cell, b, steps, st, x_t, h, R, rec_bias)
            elif cell.op == "LSTM":
                h, c = _lstm_step(cell, b, steps, st, x_t, h, c, R)
            else:
                h = _rnn_step(b, steps, st, x_t, h, R)
            assert isinstance(h, str)
            hs[t] = h
            if isinstance(c, str):
                cs[t] = c
        states["h"].append(hs)
        states["c"].append(cs)
    _outputs(cell, b, steps, states, outputs)
    return states["h"]


def _initial(cell: _Cell, b: _Builder, steps: _Steps, key: str, d: int
             ) -> np.ndarray | str | None:
    """The state before the first step: a constant, None (zeros) or a 2-D tensor."""
    value = cell.initial[key][d]
    if not isinstance(value, str):
        return value
    axis = 0 if cell.layout == 0 else 1
    tag = f"{key}0" if len(cell.directions) == 1 else f"{key}0_d{d}"
    part = value
    if len(cell.directions) > 1:
        part = b.op("Slice", [value, b.const(f"{tag}/start", np.array([d], np.int64)),
                              b.const(f"{tag}/end", np.array([d + 1], np.int64)),
                              steps.axes_const((axis,))], f"{tag}/slice")
    return b.op("Squeeze", [part, steps.axes_const((axis,))], tag)


def _gru_step(cell: _Cell, b: _Builder, steps: _Steps, st: str, x_t: str,
              h: np.ndarray | str | None, R: np.ndarray, rec_bias: np.ndarray) -> str:
    """One GRU step (gates z, r, h in ONNX order); returns h_t."""
    H = cell.hidden
    lbr = cell.linear_before_reset
    x_zr, x_n = steps.split(x_t, [2 * H, H], st, ["x_zr", "x_n"])
    # rh: what r multiplies (lbr=1) -- a tensor, a constant or None (zero)
    if isinstance(h, str):
        if lbr:
            operands = [h, steps.weight("R", R)]
            if np.any(rec_bias):
                operands.append(steps.weight("R_bias", rec_bias))
            rec = b.op("Gemm", operands, f"{st}/h_proj", transB=1)
            r_zr, rh = steps.split(rec, [2 * H, H], st, ["h_zr", "h_n"])
        else:
            r_zr = b.op("Gemm", [h, steps.weight("R_zr", R[:2 * H])], f"{st}/h_zr",
                        transB=1)
            rh = None
        zr = b.op("Sigmoid", [b.op("Add", [x_zr, r_zr], f"{st}/zr_sum")], f"{st}/zr")
    else:
        # a constant state's recurrent product is a constant (lbr=0 uses only its z, r part)
        rec_c = (h @ R.T + rec_bias) if h is not None else rec_bias
        zr = b.op("Sigmoid", [steps.add(x_zr, rec_c[..., :2 * H], f"{st}/zr_sum")], f"{st}/zr")
        rh = rec_c[..., 2 * H:] if lbr else None
    z, r = steps.split(zr, [H, H], st, ["z", "r"])
    if lbr:
        if isinstance(rh, str):
            n_sum = b.op("Add", [x_n, b.op("Mul", [r, rh], f"{st}/r_hn")], f"{st}/n_sum")
        elif rh is not None and np.any(rh):
            n_sum = b.op("Add", [x_n, b.op("Mul", [r, b.const(f"{st}/hn_const", rh)],
                                           f"{st}/r_hn")], f"{st}/n_sum")
        else:
            n_sum = x_n
    elif h is not None:
        rh_in = b.op("Mul", [r, h if isinstance(h, str) else b.const(f"{st}/h_const", h)],
                     f"{st}/r_h")
        n_sum = b.op("Add", [x_n, b.op("Gemm", [rh_in, steps.weight("R_n", R[2 * H:])],
                                       f"{st}/rh_n", transB=1)], f"{st}/n_sum")
    else:
        n_sum = x_n
    n = b.op("Tanh", [n_sum], f"{st}/n")
    if h is None:  # h = n + z·(0 − n) = n − z·n
        return b.op("Sub", [n, b.op("Mul", [z, n], f"{st}/z_n")], f"{st}/h")
    prev = h if isinstance(h, str) else b.const(f"{st}/h_prev", h)
    diff = b.op("Sub", [prev, n], f"{st}/h_diff")
    return b.op("Add", [n, b.op("Mul", [z, diff], f"{st}/z_diff")], f"{st}/h")


def _rnn_step(b: _Builder, steps: _Steps, st: str, x_t: str, h: np.ndarray | str | None,
              R: np.ndarray) -> str:
    """One plain RNN step: h_t = tanh(x_t·Wᵀ + h·Rᵀ + Wb + Rb) (biases are in x_t)."""
    if isinstance(h, str):
        rec = b.op("Gemm", [h, steps.weight("R", R)], f"{st}/h_proj", transB=1)
        pre = b.op("Add", [x_t, rec], f"{st}/sum")
    else:
        pre = steps.add(x_t, None if h is None else h @ R.T, f"{st}/sum")
    return b.op("Tanh", [pre], f"{st}/h")


def _lstm_step(cell: _Cell, b: _Builder, steps: _Steps, st: str, x_t: str,
               h: np.ndarray | str | None, c: np.ndarray | str | None, R: np.ndarray
               ) -> tuple[str, str]:
    """One LSTM step (gates i, o, f, c in ONNX order); returns (h_t, c_t)."""
    H = cell.hidden
    if isinstance(h, str):
        rec = b.op("Gemm", [h, steps.weight("R", R)], f"{st}/h_proj", transB=1)
        pre = b.op("Add", [x_t, rec], f"{st}/gates")
    else:
        pre = steps.add(x_t, None if h is None else h @ R.T, f"{st}/gates")
    if c is None:  # f·0 drops out: the forget gate is not computed
        io_pre, _unused_f, g_pre = steps.split(pre, [2 * H, H, H], st, ["io_pre", "f_pre",
                                                                        "g_pre"])
        io = b.op("Sigmoid", [io_pre], f"{st}/io")
        i, o = steps.split(io, [H, H], st, ["i", "o"])
        f = None
    else:
        iof_pre, g_pre = steps.split(pre, [3 * H, H], st, ["iof_pre", "g_pre"])
        iof = b.op("Sigmoid", [iof_pre], f"{st}/iof")
        i, o, f = steps.split(iof, [H, H, H], st, ["i", "o", "f"])
    g = b.op("Tanh", [g_pre], f"{st}/g")
    ig = b.op("Mul", [i, g], f"{st}/i_g")
    if f is None:
        c_t = ig
    else:
        prev = c if isinstance(c, str) else b.const(f"{st}/c_prev", np.asarray(c))
        c_t = b.op("Add", [b.op("Mul", [f, prev], f"{st}/f_c"), ig], f"{st}/c")
    h_t = b.op("Mul", [o, b.op("Tanh", [c_t], f"{st}/c_tanh")], f"{st}/h")
    return h_t, c_t


def _outputs(cell: _Cell, b: _Builder, steps: _Steps, states: dict[str, list[list[str]]],
             outputs: Sequence[str]) -> None:
    """Y, Y_h and Y_c as ONNX defines them, for the outputs something reads."""
    T, dirs = cell.steps, len(cell.directions)
    y = outputs[0] if outputs else ""
    if y:
        # layout 0: (T, dirs, N, H); layout 1: (N, T, dirs, H)
        t_axis, d_axis = (0, 1) if cell.layout == 0 else (1, 2)
        per_t = []
        for t in range(T):
            parts = [b.op("Unsqueeze", [states["h"][d][t],
                                        steps.axes_const(tuple(sorted((t_axis, d_axis))))],
                          f"y/t{t}" + ("" if dirs == 1 else f"_d{d}"),
                          out=y if T == 1 and dirs == 1 else "")
                     for d in range(dirs)]
            if dirs > 1:
                parts = [b.op("Concat", parts, f"y/t{t}", out=y if T == 1 else "",
                              axis=d_axis)]
            per_t.append(parts[0])
        if T > 1:
            b.op("Concat", per_t, "y", out=y, axis=t_axis)
    for k, key in ((1, "h"), (2, "c")):
        name = outputs[k] if len(outputs) > k else ""
        if not name:
            continue
        axis = 0 if cell.layout == 0 else 1
        last = [states[key][d][T - 1 if cell.directions[d] == "forward" else 0]
                for d in range(dirs)]
        parts = [b.op("Unsqueeze", [s, steps.axes_const((axis,))], f"y_{key}" +
                      ("" if dirs == 1 else f"_d{d}"), out=name if dirs == 1 else "")
                 for d, s in enumerate(last)]
        if dirs > 1:
            b.op("Concat", parts, f"y_{key}", out=name, axis=axis)


def _drop_dead(graph: onnx.GraphProto, candidates: set[str]) -> None:
    """Remove what only the replaced nodes read: their weights, a torch Transpose, ...

    Iterates because dropping a Transpose can leave its own producers unread.
    """
    outputs = {o.name for o in graph.output}
    while candidates:
        read = {name for n in graph.node for name in n.input} | outputs
        dead = candidates - read
        if not dead:
            return
        next_candidates: set[str] = set()
        keep = []
        for node in graph.node:
            if node.output and all(o in dead or not o for o in node.output) and \
                    any(o in dead for o in node.output):
                next_candidates |= {i for i in node.input if i}
            else:
                keep.append(node)
        del graph.node[:]
        graph.node.extend(keep)
        dead_inits = {i.name for i in graph.initializer if i.name in dead}
        inits = [i for i in graph.initializer if i.name not in dead_inits]
        del graph.initializer[:]
        graph.initializer.extend(inits)
        inputs = [i for i in graph.input if i.name not in dead_inits]  # real inputs stay
        del graph.input[:]
        graph.input.extend(inputs)
        candidates = next_candidates
