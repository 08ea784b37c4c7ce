"""Turn a model exported at a fixed batch size into one with a symbolic batch.

Early exits route samples: after each exit only the rows that did not exit
go on, so every stage must accept any batch. A model exported with a
data-loader batch (say 4) has that 4 in its input, its outputs and, through
``view(4, -1)``-style code, in the constant shapes of its Reshape nodes.
Everything else (convolutions, pools, Gemm) is batch-agnostic.

A Reshape's constant ``4`` is rewritten to ``-1`` only when it is provably
the batch: the Reshape reads a tensor whose first dimension is the batch
and writes one whose first dimension is the batch, with the same number of
elements per sample; so the new shape ``[-1, d1, ...]`` gives the same
result at batch 4 and the right one at any other batch. Anything else is
refused with the node named. After the rewrite, shape inference must carry
the batch symbol as the first dimension of every tensor
(:func:`check_batch_axis`), which also catches operators that mix samples.
"""

from __future__ import annotations

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


def _is_batch_reshape(in_shape: list | None, out_shape: list | None, batch: int) -> bool:
    if not in_shape or not out_shape or not all(isinstance(d, int) for d in in_shape + out_shape):
        return False
    return (in_shape[0] == batch and out_shape[0] == batch and
            int(np.prod(in_shape[1:], dtype=np.int64)) ==
            int(np.prod(out_shape[1:], dtype=np.int64)))


def _set_first_dim(value: onnx.ValueInfoProto, symbol: str) -> None:
    dims = value.type.tensor_type.shape.dim
    if len(dims):
        dims[0].Clear()
        dims[0].dim_param = symbol


def make_batch_symbolic(model: onnx.ModelProto, input_name: str, batch: int,
                        symbol: str = BATCH_SYMBOL) -> list[str]:
    """Rewrite ``model`` (fixed to ``batch``) in place; returns the rewritten Reshapes."""
    shapes = value_shapes(infer_shapes(model))
    constants = _constants(model)
    existing = {i.name for i in model.graph.initializer}
    rewritten: list[str] = []
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        target = constants.get(node.input[1])
        if target is None or target.ndim != 1 or not len(target) or int(target[0]) != batch:
            continue
        in_shape, out_shape = shapes.get(node.input[0]), shapes.get(node.output[0])
        if not _is_batch_reshape(in_shape, out_shape, batch):
            raise ModelError(
                f"the model is fixed to batch {batch} and Reshape node {node.name!r} bakes it "
                f"in (shape {target.tolist()} from input {in_shape}) in a way eedge cannot "
                "prove to be the batch; re-export the model with a dynamic batch "
                "(torch: dynamic_shapes={'x': {0: Dim('batch')}}) or with batch 1")
        name = f"{node.name}__batch_shape"
        while name in existing:
            name += "_"
        existing.add(name)
        per_sample = [int(d) for d in out_shape[1:]]  # type: ignore[index]
        model.graph.initializer.append(numpy_helper.from_array(
            np.array([-1] + per_sample, np.int64), name))
        node.input[1] = name
        rewritten.append(node.name)
    for value in model.graph.input:
        if value.name == input_name:
            _set_first_dim(value, symbol)
    for value in model.graph.output:
        dims = value.type.tensor_type.shape.dim
        if len(dims) and dims[0].HasField("dim_value") and dims[0].dim_value == batch:
            _set_first_dim(value, symbol)
    del model.graph.value_info[:]
    return rewritten


def check_batch_axis(model: onnx.ModelProto, symbol: str) -> None:
    """Every activation of a shape-inferred model must keep the batch first.

    Per-sample routing splits tensors along axis 0; a node that moves the
    batch elsewhere, or normalizes across it, would mix samples.
    """
    shapes = value_shapes(model)
    initializers = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        for out in node.output:
            if not out or out in initializers:
                continue
            shape = shapes.get(out)
            if shape is not None and len(shape) and shape[0] != symbol:
                raise ModelError(
                    f"node {node.name!r} ({node.op_type}) gives {out!r} shape {shape}, whose "
                    f"first dimension is not the batch ({symbol}); early exits route samples "
                    "along the first dimension: keep the batch first in every tensor")
        if node.op_type == "Softmax":
            rank = len(shapes.get(node.input[0]) or [])
            axis = next((helper.get_attribute_value(a) for a in node.attribute
                         if a.name == "axis"), -1)
            if rank and axis % rank == 0:
                raise ModelError(f"Softmax node {node.name!r} normalizes across the batch "
                                 "(axis 0); use the class axis")


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
