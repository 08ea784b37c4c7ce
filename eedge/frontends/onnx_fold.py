"""Fold the shape arithmetic exporters write into constants.

Torch's TorchScript exporter (and, in places, the dynamo one) computes
reshape targets, expand shapes and attention scales at run time:
``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``, ``ConstantOfShape ->
Equal -> Where -> Expand``, ``Shape -> Cast -> Sqrt -> Div``. Once the input
shape is static every one of those values is known, and none of those
operators has a lowering: they must become initializers before anything
else looks at the graph.

A node is folded when all its inputs are constants, or when it is ``Shape``
/ ``Size`` of a tensor whose shape ONNX shape inference knows statically.
Nothing is folded *through* an activation: a node with any non-constant
input (other than those two) stays, so folding never bakes one input's
values into the model. Values come from :class:`onnx.reference.ReferenceEvaluator`
(ONNX's own reference semantics, not hand-written copies), and a node whose
result would exceed :data:`MAX_FOLDED_ELEMENTS` is left alone, so a
``ConstantOfShape`` of a huge shape cannot blow up the model or the memory.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

MAX_FOLDED_ELEMENTS = 1 << 20
"""Largest constant folding may create (elements); bigger results stay as nodes."""

NEVER_FOLD = frozenset({
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
    "Bernoulli", "If", "Loop", "Scan", "SequenceConstruct", "SequenceEmpty",
    "SplitToSequence", "Optional", "QuantizeLinear", "DequantizeLinear",
    "DynamicQuantizeLinear"})
"""Random (a fresh value each run), control-flow and quantization nodes are never folded."""

SHAPE_OPS = frozenset({"Shape", "Size"})


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Fully static shapes shape inference finds (symbolic or unknown dims are left out)."""
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # an invalid model is reported later by the checker, in one line
        inferred = model
    graph = inferred.graph
    shapes: dict[str, tuple[int, ...]] = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        ttype = value.type.tensor_type
        if not ttype.HasField("shape"):
            continue
        dims = ttype.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}


def _shape_value(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    """Shape (with opset-15 start/end) or Size of a tensor of static ``shape``."""
    if node.op_type == "Size":
        return np.array(int(np.prod(shape, dtype=np.int64)), np.int64)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", None)
    return np.array(shape[slice(start, end)], np.int64)  # ONNX clamps like Python slices


def _predicted_elements(node: onnx.NodeProto, values: list[np.ndarray | None],
                        shapes: dict[str, tuple[int, ...]]) -> int | None:
    """Elements the node would produce, when knowable before running it."""
    known = [shapes.get(out) for out in node.output if out]
    if known and all(s is not None for s in known):
        return max(int(np.prod(s, dtype=np.int64)) for s in known)  # type: ignore[arg-type]
    try:
        if node.op_type == "ConstantOfShape" and values and values[0] is not None:
            return int(np.prod(values[0].astype(np.int64), dtype=np.int64))
        if node.op_type == "Expand" and len(values) == 2 and all(v is not None for v in values):
            shape = np.broadcast_shapes(values[0].shape,  # type: ignore[union-attr]
                                        tuple(int(d) for d in values[1]))  # type: ignore[union-attr]
            return int(np.prod(shape, dtype=np.int64))
        if node.op_type == "Tile" and len(values) == 2 and all(v is not None for v in values):
            return int(values[0].size * np.prod(values[1], dtype=np.int64))  # type: ignore[union-attr]
        if node.op_type == "Range" and all(v is not None for v in values):
            start, limit, delta = (float(v) for v in values)  # type: ignore[arg-type]
            return int(max(np.ceil((limit - start) / delta), 0)) if delta else None
    except (ValueError, OverflowError, TypeError):
        return None
    return None


def _evaluate(node: onnx.NodeProto, values: list[np.ndarray | None],
              opsets: dict[str, int]) -> list[np.ndarray] | None:
    feeds = {name: value for name, value in zip(node.input, values) if name}
    try:
        results = ReferenceEvaluator(node, opsets=opsets).run(None, feeds)
    except Exception:  # an op the reference does not implement, or bad inputs: leave it
        return None
    return [np.asarray(r) for r in results]


def fold_constants(model: onnx.ModelProto,
                   max_elements: int = MAX_FOLDED_ELEMENTS) -> list[tuple[str, str]]:
    """Replace every foldable node of ``model`` by initializers, in place, until none is left.

    Returns the folded nodes' names and operators. Initializers nothing reads any more
    (the shape constants the folded chains consumed) are dropped.
    """
    graph = model.graph
    opsets = {o.domain or "": o.version for o in model.opset_import}
    outputs = {o.name for o in graph.output}
    folded: list[tuple[str, str]] = []
    for _round in range(len(graph.node) + 1):
        shapes = _static_shapes(model)
        constants = _constants(graph)
        keep: list[onnx.NodeProto] = []
        new_inits: list[onnx.TensorProto] = []
        for node in graph.node:
            results = _fold_one(node, constants, shapes, opsets, outputs, max_elements)
            if results is None:
                keep.append(node)
                continue
            for name, value in zip(node.output, results):
                if name:
                    constants[name] = value
                    new_inits.append(numpy_helper.from_array(value, name))
            folded.append((node.name, node.op_type))
        if not new_inits:
            break
        del graph.node[:]
        graph.node.extend(keep)
        graph.initializer.extend(new_inits)
        del graph.value_info[:]  # shapes downstream of folded targets are inferred afresh
    drop_unused_initializers(model)
    return folded


def _fold_one(node: onnx.NodeProto, constants: dict[str, np.ndarray],
              shapes: dict[str, tuple[int, ...]], opsets: dict[str, int],
              outputs: set[str], max_elements: int) -> list[np.ndarray] | None:
    """The node's output values if it folds, else None."""
    if (node.op_type in NEVER_FOLD or node.domain not in ("", "ai.onnx")
            or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                   for a in node.attribute)
            or any(out in outputs for out in node.output)):
        return None
    if node.op_type in SHAPE_OPS:
        shape = shapes.get(node.input[0]) if node.input else None
        if node.input[0] in constants:
            shape = constants[node.input[0]].shape
        return None if shape is None else [_shape_value(node, shape)]
    values = [constants.get(name) if name else None for name in node.input]
    if any(name and value is None for name, value in zip(node.input, values)):
        return None  # reads an activation: never folded through
    predicted = _predicted_elements(node, values, shapes)
    if predicted is not None and predicted > max_elements:
        return None
    results = _evaluate(node, values, opsets)
    if results is None or any(r.size > max_elements for r in results):
        return None
    if len([o for o in node.output if o]) > len(results):
        return None
    return results


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    """Remove initializers no node and no graph output reads (graph inputs stay)."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    used |= {o.name for o in graph.output} | {i.name for i in graph.input}
    for node in graph.node:  # names read inside subgraphs count as used
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                used |= {name for n in sub.node for name in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)
