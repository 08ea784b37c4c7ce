"""Turn a model exported at a fixed batch size into one with a symbolic batch.

Early exits route samples: after each exit only the rows that did not exit
go on, so every stage must accept any batch. A model exported with a
data-loader batch (say 4) has that 4 in its input, its outputs and, through
``view(4, -1)``-style code, in the constant shapes of its Reshape nodes.
Everything else (convolutions, pools, Gemm) is batch-agnostic.

The batch is followed from the input through every node
(:class:`_BatchTracker`): each activation must hold it exactly once, at any
axis (transformers permute it into the middle of their attention tensors,
recurrent layers are time-major), and every operator that would mix samples
(reductions, normalizations, contractions, concatenations, slices or gathers
over the batch axis, reshapes that blend it into another axis) is refused
with the node named. A Reshape's constant ``4`` becomes ``-1`` only where it
provably is the batch: the same number of elements precede it in the input
and the output, so the new target gives the same result at batch 4 and the
right one at any other batch. Exits, and the tensors stages hand over, stay
batch first. After the rewrite, shape inference must carry the batch symbol
once in every tensor (:func:`check_batch_axis`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from eedge.errors import ModelError

BATCH_SYMBOL = "batch"


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            attr = next((a for a in node.attribute if a.name == "value"), None)
            if attr is not None:
                values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def value_shapes(model: onnx.ModelProto) -> dict[str, list[int | str | None]]:
    """Shape of every tensor shape inference knows: int, symbol, or None (unknown)."""
    shapes: dict[str, list[int | str | None]] = {}
    graph = model.graph
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        ttype = value.type.tensor_type
        if not ttype.HasField("shape"):
            continue
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else
                              (d.dim_param if d.HasField("dim_param") else None)
                              for d in ttype.shape.dim]
    return shapes


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                            data_prop=True)
    except Exception as exc:
        text = str(exc).strip()
        raise ModelError("the ONNX model is invalid: " + (text.splitlines()[0] if text else
                                                          type(exc).__name__)) from exc


def _set_first_dim(value: onnx.ValueInfoProto, symbol: str) -> None:
    dims = value.type.tensor_type.shape.dim
    if len(dims):
        dims[0].Clear()
        dims[0].dim_param = symbol


INT64_MAX = np.iinfo(np.int64).max

ELEMENTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Mod", "PRelu",
    "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor", "Where",
    "BitShift", "Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid",
    "HardSwish", "Tanh", "Gelu", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs",
    "Sign", "Floor", "Ceil", "Round", "Clip", "Identity", "Dropout", "Cast", "CastLike",
    "Softplus", "Softsign", "Mish", "Sin", "Cos", "Not", "IsNaN", "IsInf", "ThresholdedRelu",
    "Shrink", "Swish"})
"""Operators that work element by element (with ONNX broadcasting): the batch stays put."""

AXIS_OPS = frozenset({"Softmax", "LogSoftmax", "Hardmax", "ArgMax", "ArgMin", "CumSum"})
REDUCE_OPS = frozenset({"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
                        "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                        "ReduceSumSquare"})
RECURRENT = frozenset({"GRU", "LSTM", "RNN"})


@dataclass
class _Act:
    """Where the batch sits in one activation of the rewritten model.

    ``shape`` is the rewritten tensor's static shape at the export batch and
    ``axis`` the batch's position in it. ``groups`` is set for a tensor in
    which the exported model had merged the batch with another axis (torch's
    attention folds ``batch * heads`` into one dimension): eedge keeps the
    batch as an axis of its own there, so original axis ``j`` of the tensor
    became the rewritten axes ``groups[j]`` (one of which is the batch).
    """

    shape: list[int]
    axis: int
    groups: list[list[int]] | None = None
    merged_by: str = ""

    @property
    def rank(self) -> int:
        return len(self.shape)


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _refuse(node: onnx.NodeProto, why: str) -> ModelError:
    return ModelError(f"node {node.name!r} ({node.op_type}) {why}; early exits route samples "
                      "one by one, so no operator may mix them")


class _BatchTracker:
    """Follow the batch through a model fixed to ``batch``, rewriting what pins it.

    Every activation must carry the batch exactly once, at any axis; each
    operator's rule says where its output carries it, and refuses what mixes
    samples (normalizing, reducing, contracting, concatenating, slicing or
    gathering over the batch axis, or reshaping it into another axis in a
    way that cannot be kept apart). Rewrites: Reshape targets get ``-1`` at
    the batch; a Reshape that merges the batch into a neighbouring axis
    keeps it as an axis of its own instead (followed through Transpose,
    MatMul/Gemm with constant weights and elementwise ops until a Reshape
    splits it again); Concat with constants (the class token) becomes Pad +
    Add; a Slice that takes the whole batch reads to the end.
    """

    def __init__(self, model: onnx.ModelProto, input_name: str, batch: int,
                 choices: dict[str, int] | None = None, advice: str | None = None) -> None:
        self.model, self.batch = model, batch
        self.advice = advice or ("re-export the model with a dynamic batch (torch: "
                                 "dynamic_shapes={'x': {0: Dim('batch')}}) or with batch 1")
        self.choices = choices or {}
        self.options: dict[str, int] = {}  # ambiguous Reshape -> number of readings
        self.parents: dict[str, str] = {}  # ambiguous Reshape -> the merge it read from
        fixed = onnx.ModelProto()
        fixed.CopyFrom(model)
        for value in fixed.graph.input:
            if value.name == input_name:
                dims = value.type.tensor_type.shape.dim
                dims[0].Clear()
                dims[0].dim_value = batch
        del fixed.graph.value_info[:]
        self.shapes = value_shapes(infer_shapes(fixed))
        self.constants = _constants(model)
        self.acts: dict[str, _Act] = {}
        shape = self.shapes.get(input_name)
        if shape is not None:
            self.acts[input_name] = _Act([int(d) for d in shape], 0)  # type: ignore[arg-type]
        self.names = {i.name for i in model.graph.initializer} | {
            o for n in model.graph.node for o in n.output}
        self.rewritten: list[str] = []
        self.pins: dict[str, _Act] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.new_inits: list[onnx.TensorProto] = []

    # ---- helpers -------------------------------------------------------------
    def fresh(self, base: str) -> str:
        name = base
        while name in self.names:
            name += "_"
        self.names.add(name)
        return name

    def const(self, base: str, value: np.ndarray) -> str:
        name = self.fresh(base)
        self.new_inits.append(numpy_helper.from_array(value, name))
        self.constants[name] = value
        return name

    def static(self, node: onnx.NodeProto, name: str) -> list[int]:
        if name in self.constants:
            return list(self.constants[name].shape)
        shape = self.shapes.get(name)
        if shape is None or not all(isinstance(d, int) for d in shape):
            raise ModelError(f"cannot infer a static shape for tensor {name!r} (node "
                             f"{node.name!r}, {node.op_type}); pass --input-shape with fixed "
                             "dimensions")
        return [int(d) for d in shape]  # type: ignore[arg-type]

    def plain(self, node: onnx.NodeProto, act: _Act, tensor: str) -> _Act:
        if act.groups is not None:
            raise _refuse(node, f"reads {tensor!r}, in which Reshape {act.merged_by!r} merged "
                          "the batch with another axis, in a way eedge cannot follow")
        return act

    def set(self, name: str, act: _Act) -> None:
        if name:
            self.acts[name] = act

    # ---- the walk ------------------------------------------------------------
    def run(self) -> None:
        for node in list(self.model.graph.node):
            acts = {i: self.acts[name] for i, name in enumerate(node.input)
                    if name and name in self.acts}
            if not acts:
                self.nodes.append(node)  # constants only: nothing to follow
                continue
            handler = getattr(self, f"_op_{node.op_type}", None)
            if handler is None:
                handler = self._elementwise if node.op_type in ELEMENTWISE else (
                    self._reduce if node.op_type in REDUCE_OPS else (
                        self._axis_op if node.op_type in AXIS_OPS else (
                            self._recurrent if node.op_type in RECURRENT else
                            self._batch_first)))
            try:
                replaced = handler(node, acts)
            except ModelError as exc:
                merged = next((a.merged_by for a in acts.values() if a.merged_by), "")
                exc.merged_by = merged  # type: ignore[attr-defined]
                raise
            self.nodes.extend(replaced if replaced is not None else [node])
        for out in self.model.graph.output:
            act = self.acts.get(out.name)
            if act is not None and (act.axis != 0 or act.groups is not None):
                node = next(n for n in self.nodes if out.name in n.output)
                raise ModelError(f"exit {out.name!r} (node {node.name!r}) has the batch at axis "
                                 f"{act.axis}; every exit must be (batch, classes) logits, "
                                 "batch first")

    def _batch_first(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> None:
        """Operators without a rule of their own: batch first in, batch first out."""
        for i, act in acts.items():
            if act.axis != 0 or act.groups is not None:
                raise _refuse(node, f"reads {node.input[i]!r} with the batch at axis "
                              f"{act.axis}; eedge only follows the batch through this "
                              "operator when it is the first axis")
        for out in node.output:
            if out:
                self.set(out, _Act(self.static(node, out), 0))

    def _elementwise(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> None:
        out_rank = max(len(self.static(node, n)) if n not in self.acts else self.acts[n].rank
                       for n in node.input if n)
        expanded = [a for a in acts.values() if a.groups is not None]
        if expanded:
            return self._elementwise_expanded(node, acts, expanded[0])
        axes = {a.axis + out_rank - a.rank for a in acts.values()}
        if len(axes) != 1:
            raise _refuse(node, "combines tensors whose batch sits at different axes")
        axis = axes.pop()
        for i, name in enumerate(node.input):
            if name and name not in self.acts:
                shape = self.static(node, name)
                k = axis - (out_rank - len(shape))
                if 0 <= k < len(shape) and shape[k] != 1:
                    node.input[i] = self._one_sample(node, name, k)
        for out in node.output:
            if out:
                self.set(out, _Act(self.static(node, out), axis))
        return None

    def _one_sample(self, node: onnx.NodeProto, name: str, axis: int) -> str:
        """A constant expanded to the export batch (``bias.expand(4, ...)``), cut to one row.

        Broadcasting the single row gives the same values at the export
        batch and the right ones at any other; a constant whose rows differ
        is per-sample data and is refused.
        """
        value = self.constants.get(name)
        if value is None or value.shape[axis] != self.batch or not np.array_equal(
                value, np.broadcast_to(np.take(value, [0], axis=axis), value.shape)):
            raise _refuse(node, f"combines the batch axis with constant {name!r} of shape "
                          f"{list(self.static(node, name))}, which differs from sample to sample")
        self.rewritten.append(node.name)
        return self.const(f"{name}__one_sample", np.take(value, [0], axis=axis))

    def _elementwise_expanded(self, node: onnx.NodeProto, acts: dict[int, _Act],
                              first: _Act) -> None:
        groups = first.groups or []
        trailing = len(groups) - 1 - next(j for j, g in enumerate(groups) if first.axis in g)
        for i, name in enumerate(node.input):
            if not name:
                continue
            act = acts.get(i)
            if act is not None and (act.shape != first.shape or act.groups != first.groups):
                raise _refuse(node, f"combines {name!r} with a tensor whose batch was split "
                              "out of a merged axis; eedge cannot align them")
            if act is None and len(self.static(node, name)) > trailing:
                raise _refuse(node, f"broadcasts constant {name!r} over the axis in which "
                              f"Reshape {first.merged_by!r} merged the batch")
        for out in node.output:
            if out:
                self.set(out, _Act(list(first.shape), first.axis, groups, first.merged_by))
        return None

    def _op_Transpose(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> list | None:
        act = acts[0]
        perm = _attr(node, "perm") or list(reversed(range(len(act.groups or act.shape))))
        perm = [int(p) for p in perm]  # type: ignore[union-attr]
        if act.groups is None:
            self.set(node.output[0], _Act([act.shape[p] for p in perm], perm.index(act.axis)))
            return None
        new_perm = [a for p in perm for a in act.groups[p]]
        groups, start = [], 0
        for p in perm:
            groups.append(list(range(start, start + len(act.groups[p]))))
            start += len(act.groups[p])
        self._replace_attr(node, "perm", new_perm)
        self.set(node.output[0], _Act([act.shape[a] for a in new_perm],
                                      new_perm.index(act.axis), groups, act.merged_by))
        return None

    def _replace_attr(self, node: onnx.NodeProto, name: str, value: object) -> None:
        for a in list(node.attribute):
            if a.name == name:
                node.attribute.remove(a)
        node.attribute.append(helper.make_attribute(name, value))
        self.rewritten.append(node.name)

    def _op_Reshape(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> list | None:
        if 1 in acts:
            raise _refuse(node, "takes its target shape from an activation")
        act = acts[0]
        target = self.constants.get(node.input[1])
        if target is None:
            raise ModelError(f"Reshape node {node.name!r} computes its target shape at run "
                             "time; eedge needs it constant (export with fixed input sizes)")
        resolved = _resolve_target(act.shape, target, bool(_attr(node, "allowzero", 0)))
        candidates = [] if resolved is None else _reshape_batch(act.shape, act.axis,
                                                                self.batch, resolved)
        self.options[node.name] = len(candidates)
        self.parents[node.name] = act.merged_by
        found = candidates[min(self.choices.get(node.name, 0), len(candidates) - 1)] \
            if candidates else None
        if found is None:
            raise ModelError(
                f"the model is fixed to batch {self.batch} and Reshape node {node.name!r} bakes "
                f"it in (shape {target.tolist()} from input {act.shape}) in a way eedge "
                f"cannot prove to be the batch; {self.advice}")
        new_target, out = found
        out = _Act(list(out.shape), out.axis, out.groups,
                   node.name if out.groups is not None else "")
        if new_target != [int(v) for v in target.tolist()]:
            node.input[1] = self.const(f"{node.name}__batch_shape",
                                       np.array(new_target, np.int64))
            if _attr(node, "allowzero", 0):
                self._replace_attr(node, "allowzero", 0)
            self.rewritten.append(node.name)
        self.set(node.output[0], out)
        self.pins[node.output[0]] = out
        return None

    def _op_Flatten(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> None:
        act = self.plain(node, acts[0], node.input[0])
        axis = int(_attr(node, "axis", 1))  # type: ignore[call-overload]
        axis += act.rank if axis < 0 else 0  # ONNX allows axis == rank (a trailing unit axis)
        side = act.shape[:axis] if act.axis < axis else act.shape[axis:]
        if int(np.prod(side, dtype=np.int64)) != self.batch:
            raise _refuse(node, f"(axis {axis}) merges the batch (axis {act.axis}) with other "
                          "axes")
        self.set(node.output[0], _Act(self.static(node, node.output[0]),
                                      0 if act.axis < axis else 1))

    def _op_Squeeze(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> None:
        act = self.plain(node, acts[0], node.input[0])
        axes = self._axes(node, act.rank)
        if axes is None:  # squeeze every 1: the batch is 1 at export, so name the others
            axes = [i for i, d in enumerate(act.shape) if d == 1 and i != act.axis]
            self._set_axes(node, axes)
        if act.axis in axes:
            raise _refuse(node, f"removes the batch axis {act.axis}")
        self.set(node.output[0], _Act(self.static(node, node.output[0]),
                                      act.axis - sum(a < act.axis for a in axes)))

    def _op_Unsqueeze(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> None:
        act = self.plain(node, acts[0], node.input[0])
        out_shape = self.static(node, node.output[0])
        axes = self._axes(node, len(out_shape)) or []
        kept = [i for i in range(len(out_shape)) if i not in axes]
        self.set(node.output[0], _Act(out_shape, kept[act.axis]))

    def _axes(self, node: onnx.NodeProto, rank: int) -> list[int] | None:
        axes = _attr(node, "axes")
        if len(node.input) > 1 and node.input[1]:
            if node.input[1] in self.acts or node.input[1] not in self.constants:
                raise _refuse(node, "takes its axes from an activation")
            axes = self.constants[node.input[1]].reshape(-1).tolist()
        return None if axes is None else [int(a) % rank for a in axes]  # type: ignore[union-attr]

    def _set_axes(self, node: onnx.NodeProto, axes: list[int]) -> None:
        opset = next(o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx"))
        if opset >= 13:
            while len(node.input) < 2:
                node.input.append("")
            node.input[1] = self.const(f"{node.name}__axes", np.array(axes, np.int64))
            self.rewritten.append(node.name)
        else:
            self._replace_attr(node, "axes", axes)

    def _reduce(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> None:
        act = self.plain(node, acts[0], node.input[0])
        axes = self._axes(node, act.rank)
        if axes is None and not _attr(node, "noop_with_empty_axes", 0):
            axes = list(range(act.rank))
        if act.axis in (axes or []):
            raise _refuse(node, f"reduces over the batch axis {act.axis}")
        keep = bool(_attr(node, "keepdims", 1))
        axis = act.axis if keep else act.axis - sum(a < act.axis for a in axes or [])
        self.set(node.output[0], _Act(self.static(node, node.output[0]), axis))

    def _axis_op(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> list | None:
        act = acts[0]
        rank = len(act.groups) if act.groups is not None else act.rank
        opset = next(o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx"))
        default = -1 if node.op_type in ("Softmax", "LogSoftmax", "Hardmax") and opset >= 13 \
            else (1 if node.op_type in ("Softmax", "LogSoftmax", "Hardmax") else 0)
        if node.op_type == "CumSum":
            value = self.constants.get(node.input[1])
            if value is None:
                raise _refuse(node, "takes its axis from an activation")
            axis = int(value.reshape(())) % rank
        else:
            axis = int(_attr(node, "axis", default)) % rank  # type: ignore[call-overload]
        coerced = node.op_type in ("Softmax", "LogSoftmax", "Hardmax") and opset < 13
        if act.groups is not None:
            merged = next(j for j, g in enumerate(act.groups) if act.axis in g)
            if axis <= merged or node.op_type in ("ArgMax", "ArgMin", "CumSum"):
                raise _refuse(node, f"works over the axis in which Reshape {act.merged_by!r} "
                              "merged the batch")
            self._replace_attr(node, "axis", axis - rank)
            self.set(node.output[0], _Act(list(act.shape), act.axis, act.groups,
                                          act.merged_by))
            return None
        if axis == act.axis or (coerced and act.axis > axis):
            raise _refuse(node, f"works over the batch axis {act.axis}")
        out_axis = act.axis
        if node.op_type in ("ArgMax", "ArgMin") and not _attr(node, "keepdims", 1) and \
                axis < act.axis:
            out_axis -= 1
        self.set(node.output[0], _Act(self.static(node, node.output[0]), out_axis))
        return None

    def _op_LayerNormalization(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> None:
        if any(i > 0 for i in acts):
            raise _refuse(node, "takes its scale or bias from an activation")
        act = acts[0]
        rank = len(act.groups) if act.groups is not None else act.rank
        axis = int(_attr(node, "axis", -1)) % rank  # type: ignore[call-overload]
        where = act.axis if act.groups is None else next(
            j for j, g in enumerate(act.groups) if act.axis in g)
        if where >= axis:
            raise _refuse(node, f"normalizes over axes {axis}.. which include the batch")
        if act.groups is not None:
            self._replace_attr(node, "axis", axis - rank)
        for out in node.output:
            if out:
                self.set(out, _Act(list(act.shape), act.axis, act.groups, act.merged_by)
                         if out == node.output[0] else _Act(self.static(node, out), act.axis))

    def _op_Concat(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> list | None:
        first = self.plain(node, next(iter(acts.values())), node.input[0])
        axis = int(_attr(node, "axis", 0)) % first.rank  # type: ignore[call-overload]
        for i, act in acts.items():
            self.plain(node, act, node.input[i])
            if act.axis != first.axis:
                raise _refuse(node, "concatenates tensors whose batch sits at different axes")
        if axis == first.axis:
            raise _refuse(node, f"concatenates along the batch axis {axis}")
        out = _Act(self.static(node, node.output[0]), first.axis)
        self.set(node.output[0], out)
        if len(acts) == len([n for n in node.input if n]):
            return None
        return self._concat_constants(node, axis, out)

    def _concat_constants(self, node: onnx.NodeProto, axis: int, out: _Act,
                          fixed: bool = False) -> list:
        """Concat(constant, activation) -> Pad(activation) + constant: valid at any batch.

        The class token is ``cat([cls.expand(B, -1, -1), x], 1)``: folded at the
        export's batch, the constant has that batch baked in, so the ONNX
        Concat is invalid at any other batch. Padding the activation with
        zeros where the constants go, then adding a constant that holds them
        there (and zeros elsewhere) gives the same values (x + 0 and 0 + c
        are exact) with the batch free to broadcast.
        """
        b = out.axis  # with ``fixed`` (the batch stays fixed) the constants are kept whole
        pieces: list[tuple[str, int, np.ndarray | None]] = []
        offset = 0
        for name in node.input:
            if not name:
                continue
            size = (self.acts[name].shape if name in self.acts else
                    list(self.constants[name].shape))[axis]
            value = None if name in self.acts else self.constants.get(name)
            if name not in self.acts and value is None:
                raise _refuse(node, f"concatenates {name!r}, which is neither a constant nor "
                              "a tensor eedge can follow")
            if value is not None and not fixed:
                if value.ndim != out.rank or not np.array_equal(
                        value, np.broadcast_to(np.take(value, [0], axis=b), value.shape)):
                    raise _refuse(node, f"concatenates constant {name!r}, which differs from "
                                  "sample to sample")
                value = np.take(value, [0], axis=b)
            pieces.append((name, offset, value))
            offset += size
        dtype = next(v.dtype for _, _, v in pieces if v is not None)
        added_shape = list(out.shape)
        if not fixed:
            added_shape[b] = 1
        added = np.zeros(added_shape, dtype)
        replaced: list[onnx.NodeProto] = []
        padded: list[str] = []
        for name, start, value in pieces:
            index = [slice(None)] * out.rank
            if value is not None:
                index[axis] = slice(start, start + value.shape[axis])
                added[tuple(index)] = value
                continue
            size = self.acts[name].shape[axis]
            pads = [0] * (2 * out.rank)
            pads[axis], pads[out.rank + axis] = start, out.shape[axis] - start - size
            pads_name = self.const(f"{node.name}__pads", np.array(pads, np.int64))
            padded_name = self.fresh(f"{node.name}__padded")
            replaced.append(helper.make_node("Pad", [name, pads_name], [padded_name],
                                             name=self.fresh(f"{node.name}__pad"),
                                             mode="constant"))
            self.set(padded_name, _Act(list(out.shape), b))
            padded.append(padded_name)
        total = padded[0]
        for k, other in enumerate(padded[1:]):
            summed = self.fresh(f"{node.name}__sum{k}")
            replaced.append(helper.make_node("Add", [total, other], [summed],
                                             name=self.fresh(f"{node.name}__add{k}")))
            self.set(summed, _Act(list(out.shape), b))
            total = summed
        constant = self.const(f"{node.name}__constants", added)
        replaced.append(helper.make_node("Add", [total, constant], [node.output[0]],
                                         name=node.name))
        self.rewritten.append(node.name)
        return replaced

    def _op_Split(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> None:
        act = self.plain(node, acts[0], node.input[0])
        axis = int(_attr(node, "axis", 0)) % act.rank  # type: ignore[call-overload]
        if axis == act.axis:
            raise _refuse(node, f"splits along the batch axis {axis}")
        for out in node.output:
            self.set(out, _Act(self.static(node, out), act.axis))

    def _op_Slice(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> None:
        if any(i > 0 for i in acts):
            raise _refuse(node, "takes its bounds from an activation")
        act = self.plain(node, acts[0], node.input[0])
        values = [self.constants.get(n) if n else None for n in node.input[1:]]
        if len(node.input) < 3 or values[0] is None or values[1] is None:
            raise _refuse(node, "has no constant bounds")
        starts, ends = values[0].reshape(-1), values[1].reshape(-1).copy()
        axes = values[2].reshape(-1) if len(values) > 2 and values[2] is not None else \
            np.arange(len(starts))
        steps = values[3].reshape(-1) if len(values) > 3 and values[3] is not None else \
            np.ones(len(starts), np.int64)
        for k, a in enumerate(axes):
            if int(a) % act.rank != act.axis:
                continue
            start = int(starts[k]) + (self.batch if starts[k] < 0 else 0)
            if int(steps[k]) != 1 or start > 0 or int(ends[k]) < self.batch:
                raise _refuse(node, f"slices the batch axis {act.axis}")
            if ends[k] != INT64_MAX:
                ends[k] = INT64_MAX
                node.input[2] = self.const(f"{node.name}__ends", ends.astype(np.int64))
                self.rewritten.append(node.name)
        self.set(node.output[0], _Act(self.static(node, node.output[0]), act.axis))

    def _op_Gather(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> None:
        if 1 in acts:
            raise _refuse(node, "takes its indices from an activation")
        act = self.plain(node, acts[0], node.input[0])
        axis = int(_attr(node, "axis", 0)) % act.rank  # type: ignore[call-overload]
        if axis == act.axis:
            raise _refuse(node, f"gathers along the batch axis {axis}")
        indices = self.constants[node.input[1]]
        out_axis = act.axis if act.axis < axis else act.axis + indices.ndim - 1
        self.set(node.output[0], _Act(self.static(node, node.output[0]), out_axis))

    def _op_Pad(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> None:
        if any(i > 0 for i in acts):
            raise _refuse(node, "takes its pads from an activation")
        act = self.plain(node, acts[0], node.input[0])
        pads = _attr(node, "pads")
        if len(node.input) > 1 and node.input[1]:
            pads = self.constants[node.input[1]].reshape(-1).tolist()
        pads = list(pads or [])  # type: ignore[call-overload]
        axes = list(range(act.rank))
        if len(node.input) > 3 and node.input[3]:
            axes = [int(a) % act.rank for a in self.constants[node.input[3]].reshape(-1)]
        half = len(pads) // 2
        for k, a in enumerate(axes[:half]):
            if a == act.axis and (pads[k] or pads[half + k]):
                raise _refuse(node, f"pads the batch axis {a}")
        self.set(node.output[0], _Act(self.static(node, node.output[0]), act.axis))

    def _op_Expand(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> None:
        if 1 in acts:
            raise _refuse(node, "takes its shape from an activation")
        act = self.plain(node, acts[0], node.input[0])
        out_shape = self.static(node, node.output[0])
        axis = act.axis + len(out_shape) - act.rank
        target = self.constants[node.input[1]].reshape(-1).tolist()
        k = axis - (len(out_shape) - len(target))
        if 0 <= k < len(target) and int(target[k]) not in (1, self.batch):
            raise _refuse(node, f"expands the batch axis to {target[k]}")
        self.set(node.output[0], _Act(out_shape, axis))

    def _op_Tile(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> None:
        act = self.plain(node, acts[0], node.input[0])
        repeats = self.constants.get(node.input[1])
        if repeats is None or int(repeats.reshape(-1)[act.axis]) != 1:
            raise _refuse(node, f"repeats the batch axis {act.axis}")
        self.set(node.output[0], _Act(self.static(node, node.output[0]), act.axis))

    def _op_MatMul(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> None:
        a_act, b_act = acts.get(0), acts.get(1)
        ranks = [a_act.rank if a_act else len(self.static(node, node.input[0])),
                 b_act.rank if b_act else len(self.static(node, node.input[1]))]
        if min(ranks) < 2:
            return self._batch_first(node, acts)
        if a_act is not None and a_act.groups is not None:
            merged = next(j for j, g in enumerate(a_act.groups) if a_act.axis in g)
            if b_act is not None or merged == len(a_act.groups) - 1:
                raise _refuse(node, f"contracts the axis in which Reshape {a_act.merged_by!r} "
                              "merged the batch")
            if ranks[1] != 2:
                raise _refuse(node, "broadcasts its weights over the merged batch axis")
            n = self.static(node, node.input[1])[-1]
            self.set(node.output[0], _Act(a_act.shape[:-1] + [n], a_act.axis, a_act.groups,
                                          a_act.merged_by))
            return None
        out_shape = self.static(node, node.output[0])
        rank = len(out_shape)
        axes = set()
        for act, r, contracted, kept in ((a_act, ranks[0], ranks[0] - 1, ranks[0] - 2),
                                         (b_act, ranks[1], ranks[1] - 2, ranks[1] - 1)):
            if act is None:
                continue
            self.plain(node, act, node.input[0 if act is a_act else 1])
            if act.axis == contracted:
                raise _refuse(node, f"contracts over the batch axis {act.axis}")
            if act.axis == kept:
                axes.add(rank - 2 if act is a_act else rank - 1)
            else:
                axes.add(act.axis + rank - r)
        if len(axes) != 1 or (a_act is not None and b_act is not None and
                              a_act.axis >= ranks[0] - 2):
            raise _refuse(node, "multiplies tensors whose batch axes do not line up")
        self.set(node.output[0], _Act(out_shape, axes.pop()))
        return None

    def _op_Gemm(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> list | None:
        if set(acts) != {0}:
            raise _refuse(node, "multiplies two activations (use MatMul)")
        act = acts[0]
        trans_a = int(_attr(node, "transA", 0))  # type: ignore[call-overload]
        if act.groups is None:
            if act.axis != trans_a:
                raise _refuse(node, f"contracts over the batch axis {act.axis}")
            self.set(node.output[0], _Act(self.static(node, node.output[0]), 0))
            return None
        merged = next(j for j, g in enumerate(act.groups) if act.axis in g)
        if trans_a or merged != 0:
            raise _refuse(node, f"contracts the axis in which Reshape {act.merged_by!r} merged "
                          "the batch")
        return self._gemm_as_matmul(node, act)

    def _gemm_as_matmul(self, node: onnx.NodeProto, act: _Act) -> list:
        """Gemm reading rows whose batch is an axis of its own: MatMul (+ Add), same values."""
        weight = self.constants.get(node.input[1])
        if weight is None:
            raise _refuse(node, "has weights that are not constant")
        alpha = float(_attr(node, "alpha", 1.0))  # type: ignore[arg-type]
        beta = float(_attr(node, "beta", 1.0))  # type: ignore[arg-type]
        weight = weight.T if _attr(node, "transB", 0) else weight
        if alpha != 1.0:
            weight = (weight * alpha).astype(weight.dtype)
        out = node.output[0]
        has_bias = len(node.input) > 2 and node.input[2] != ""
        product = self.fresh(f"{node.name}__matmul_out") if has_bias else out
        nodes = [helper.make_node("MatMul", [node.input[0], self.const(
            f"{node.name}__weight", np.ascontiguousarray(weight))], [product],
            name=self.fresh(f"{node.name}__matmul"))]
        shape = act.shape[:-1] + [int(weight.shape[1])]
        if has_bias:
            bias = self.constants.get(node.input[2])
            if bias is None:
                raise _refuse(node, "has a bias that is not constant")
            bias = bias * beta if beta != 1.0 else bias
            if bias.ndim == 2 and bias.shape[0] != 1:
                raise _refuse(node, "adds a bias that differs from row to row")
            bias = bias.reshape(-1).astype(weight.dtype)
            nodes.append(helper.make_node("Add", [product, self.const(f"{node.name}__bias",
                                                                      bias)],
                                          [out], name=node.name))
            self.set(product, _Act(shape, act.axis, act.groups, act.merged_by))
        self.set(out, _Act(shape, act.axis, act.groups, act.merged_by))
        self.rewritten.append(node.name)
        return nodes

    def _recurrent(self, node: onnx.NodeProto, acts: dict[int, _Act]) -> None:
        layout = int(_attr(node, "layout", 0))  # type: ignore[call-overload]
        want = 0 if layout else 1
        for i, act in acts.items():
            self.plain(node, act, node.input[i])
            expected = want if i == 0 else (0 if layout else 1)
            if act.axis != expected:
                raise _refuse(node, f"reads {node.input[i]!r} with the batch at axis "
                              f"{act.axis}; its layout puts the batch at axis {expected}")
        for k, out in enumerate(node.output):
            if out:
                axis = (0 if layout else (2 if k == 0 else 1))
                self.set(out, _Act(self.static(node, out), axis))


def _resolve_target(in_shape: list[int], target: np.ndarray, allowzero: bool
                    ) -> list[int] | None:
    """Reshape's target with 0 (copy) and -1 (infer) replaced by their values."""
    values = [int(v) for v in target.reshape(-1).tolist()]
    if not allowzero:
        values = [in_shape[i] if v == 0 and i < len(in_shape) else v
                  for i, v in enumerate(values)]
    total = int(np.prod(in_shape, dtype=np.int64))
    if values.count(-1) > 1:
        return None
    if -1 in values:
        known = int(np.prod([v for v in values if v != -1], dtype=np.int64))
        if known <= 0 or total % known:
            return None
        values[values.index(-1)] = total // known
    return values if int(np.prod(values, dtype=np.int64)) == total else None


def _reshape_batch(in_shape: list[int], axis: int, batch: int, target: list[int]
                   ) -> list[tuple[list[int], _Act]]:
    """Where Reshape(x, target) can put the batch of ``x`` (at ``axis``): candidates.

    Row-major memory reads ``x`` as (before, batch, after) with ``before`` the
    product of the dimensions ahead of the batch. The target keeps the batch
    apart when one of its dimensions is the batch with exactly ``before``
    elements ahead of it: then ``-1`` there gives the same result at the
    export batch and the right one at any other. Torch's attention instead
    folds the batch into a neighbour (``view(tgt_len, bsz * heads, d)``):
    one target dimension is ``a * batch * b`` with ``a`` from ``before`` and
    ``b`` from ``after``; eedge then writes ``a, -1, b`` (the same memory
    order), keeping the batch an axis of its own, and records the grouping.
    At batch 1 the batch may fold into the dimension before it or the one
    after it; both are candidates (the caller keeps the one the following
    nodes accept). No candidate: the Reshape mixes samples.
    """
    before = int(np.prod(in_shape[:axis], dtype=np.int64))
    after = int(np.prod(in_shape[axis + 1:], dtype=np.int64))
    prefix = [int(np.prod(target[:q], dtype=np.int64)) for q in range(len(target) + 1)]
    plain = [q for q in range(len(target)) if target[q] == batch and prefix[q] == before
             and prefix[-1] // max(prefix[q + 1], 1) == after]
    if plain:
        q = axis if axis in plain else plain[0]
        new = list(target)
        new[q] = -1
        return [(new, _Act(list(target), q))]
    found: list[tuple[list[int], _Act]] = []
    for q in range(len(target)):
        if prefix[q] == 0 or before % prefix[q] or prefix[q + 1] < before * batch:
            continue
        a = before // prefix[q]
        rest = int(np.prod(target[q + 1:], dtype=np.int64))
        if rest == 0 or after % rest:
            continue
        b = after // rest
        if target[q] != a * batch * b:
            continue
        inner = ([a] if a > 1 else []) + [-1] + ([b] if b > 1 else [])
        new = list(target[:q]) + inner + list(target[q + 1:])
        shape = [batch if v == -1 else v for v in new]
        width = len(inner)
        groups = [[j] for j in range(q)] + [list(range(q, q + width))] + [
            [j + width - 1] for j in range(q + 1, len(target))]
        found.append((new, _Act(shape, q + (1 if a > 1 else 0), groups)))
    return found


def pad_constant_concats(model: onnx.ModelProto, input_name: str) -> list[str]:
    """Concat of constants and activations -> Pad + Add in a fixed-batch model, in place.

    The same rewrite :func:`make_batch_symbolic` makes for the class token,
    so the lowering meets one form whatever the batch: no Concat reads a
    constant after the import. Returns the rewritten Concat nodes.
    """
    tracker = _BatchTracker(model, input_name, _fixed_batch(model, input_name))
    constants = {i.name for i in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        names = [n for n in node.input if n]
        mixed = node.op_type == "Concat" and any(n in constants for n in names) and \
            any(n not in constants for n in names)
        if not mixed:
            nodes.append(node)
            continue
        shape = tracker.static(node, node.output[0])
        for name in names:
            if name not in constants:
                tracker.acts[name] = _Act(tracker.static(node, name), 0)
        axis = int(_attr(node, "axis", 0)) % len(shape)  # type: ignore[call-overload]
        nodes.extend(tracker._concat_constants(node, axis, _Act(shape, 0), fixed=True))
    if tracker.rewritten:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        model.graph.initializer.extend(tracker.new_inits)
        del model.graph.value_info[:]
    return tracker.rewritten


def _fixed_batch(model: onnx.ModelProto, input_name: str) -> int:
    value = next(v for v in model.graph.input if v.name == input_name)
    first = value.type.tensor_type.shape.dim[0]
    return int(first.dim_value) if first.HasField("dim_value") else 1


def make_batch_symbolic(model: onnx.ModelProto, input_name: str, batch: int,
                        symbol: str = BATCH_SYMBOL, advice: str | None = None) -> list[str]:
    """Rewrite ``model`` (fixed to ``batch``) in place; returns the rewritten nodes.

    Follows the batch from the input through every node (:class:`_BatchTracker`),
    then marks the input and the exits symbolic and pins each Reshape's
    output shape (ONNX's inference names a ``-1`` dimension anew) in
    ``value_info`` so shape inference carries the symbol on.
    """
    graph_input = next(v for v in model.graph.input if v.name == input_name)
    if not all(d.HasField("dim_value") for d in graph_input.type.tensor_type.shape.dim[1:]):
        _set_first_dim(graph_input, symbol)  # the import refuses it next, naming the dims
        return []
    choices: dict[str, int] = {}
    for _attempt in range(4 * len(model.graph.node) + 1):
        work = onnx.ModelProto()
        work.CopyFrom(model)
        tracker = _BatchTracker(work, input_name, batch, choices, advice)
        try:
            tracker.run()
            break
        except ModelError as exc:
            culprit = getattr(exc, "merged_by", "")
            while culprit and choices.get(culprit, 0) + 1 >= tracker.options.get(culprit, 1):
                culprit = tracker.parents.get(culprit, "")
            if not culprit:
                raise
            choices[culprit] = choices.get(culprit, 0) + 1
    model.graph.CopyFrom(work.graph)
    graph = model.graph
    del graph.node[:]
    graph.node.extend(tracker.nodes)
    graph.initializer.extend(tracker.new_inits)
    for value in graph.input:
        if value.name == input_name:
            _set_first_dim(value, symbol)
    for value in graph.output:
        if value.name in tracker.acts:
            _set_first_dim(value, symbol)
    del graph.value_info[:]
    elem = {v.name: v.type.tensor_type.elem_type
            for v in infer_shapes(model).graph.value_info}
    for name, act in tracker.pins.items():
        if name in elem:
            dims: list[int | str] = list(act.shape)
            dims[act.axis] = symbol
            graph.value_info.append(helper.make_tensor_value_info(name, elem[name], dims))
    from eedge.frontends.onnx_fold import drop_unused_initializers
    drop_unused_initializers(model)
    return list(dict.fromkeys(tracker.rewritten))


def check_batch_axis(model: onnx.ModelProto, symbol: str) -> None:
    """Every activation of a shape-inferred model must carry the batch exactly once.

    The batch may sit at any axis (attention moves it, recurrent layers are
    time-major) as long as each tensor holds it once: :func:`make_batch_symbolic`
    refuses the operators that mix samples, and this check catches anything
    shape inference sees differently. Exits must be batch first.
    """
    shapes = value_shapes(model)
    initializers = {i.name for i in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        for out in node.output:
            if not out or out in initializers:
                continue
            shape = shapes.get(out)
            if shape is None or not len(shape):
                continue
            count = sum(d == symbol for d in shape)
            if count != 1 or (out in outputs and shape[0] != symbol):
                where = "first dimension is not" if out in outputs or count == 0 else \
                    "dimensions hold more than once"
                raise ModelError(
                    f"node {node.name!r} ({node.op_type}) gives {out!r} shape {shape}, whose "
                    f"{where} the batch ({symbol}); early exits route samples one by one: "
                    "every tensor must hold the batch exactly once, and exits first")
        if node.op_type == "Softmax":
            in_shape = shapes.get(node.input[0]) or []
            axis = next((helper.get_attribute_value(a) for a in node.attribute
                         if a.name == "axis"), -1)
            if in_shape and in_shape[axis % len(in_shape)] == symbol:
                raise ModelError(f"Softmax node {node.name!r} normalizes across the batch "
                                 f"(axis {axis % len(in_shape)}); use the class axis")


def _batch_first_target(target: np.ndarray, in_shape: list) -> list[int] | None:
    """Per-sample dims of Reshape(x, target) when it provably keeps the batch first.

    ``in_shape`` is ``[symbol, d1, ...]`` with static d1...; the target must
    start with -1 or 0 (copy) and move exactly one sample's elements.
    """
    values = [int(v) for v in target.tolist()]
    if not values or values[0] not in (-1, 0) or not all(isinstance(d, int) for d in in_shape[1:]):
        return None
    per_sample = int(np.prod(in_shape[1:], dtype=np.int64))
    rest: list[int] = []
    for i, v in enumerate(values[1:], start=1):
        if v == 0:
            if i >= len(in_shape):
                return None
            v = int(in_shape[i])
        rest.append(v)
    if values[0] == -1 and -1 in rest:
        return None
    if rest.count(-1) > 1:
        return None
    known = int(np.prod([v for v in rest if v != -1], dtype=np.int64))
    if -1 in rest:
        if known <= 0 or per_sample % known:
            return None
        rest[rest.index(-1)] = per_sample // known
    return rest if int(np.prod(rest, dtype=np.int64)) == per_sample else None


def infer_with_batch(model: onnx.ModelProto, symbol: str) -> onnx.ModelProto:
    """Shape inference that keeps the batch symbol through ``Reshape(x, [-1, ...])``.

    ONNX's inference names the first dimension of such a Reshape anew
    (``unk__0``) even when it is the batch; where the Reshape provably keeps
    the batch first, its output is pinned to ``[symbol, ...]`` and inference
    runs again so the symbol flows on.
    """
    pinned: dict[str, onnx.ValueInfoProto] = {}
    constants = _constants(model)
    for _ in range(len(model.graph.node) + 1):
        work = onnx.ModelProto()
        work.CopyFrom(model)
        keep = [v for v in work.graph.value_info if v.name not in pinned]
        del work.graph.value_info[:]
        work.graph.value_info.extend(keep + list(pinned.values()))
        inferred = infer_shapes(work)
        shapes = value_shapes(inferred)
        elem = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
        new = {}
        for node in inferred.graph.node:
            if node.op_type != "Reshape" or len(node.input) < 2:
                continue
            out, in_shape = node.output[0], shapes.get(node.input[0])
            out_shape, target = shapes.get(out), constants.get(node.input[1])
            if (out in pinned or not out_shape or out_shape[0] == symbol or not in_shape
                    or in_shape[0] != symbol or target is None or out not in elem):
                continue
            allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
            rest = None if allowzero and 0 in target else _batch_first_target(target, in_shape)
            if rest is not None:
                new[out] = helper.make_tensor_value_info(out, elem[out], [symbol] + rest)
        if not new:
            return inferred
        pinned.update(new)
    return inferred
