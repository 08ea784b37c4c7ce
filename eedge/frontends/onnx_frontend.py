"""Read an ONNX model whose outputs are the exits into eedge's graph IR.

Any multi-output ONNX model qualifies: its graph outputs, in order, are the
exits (earliest first). Shapes must be static except the batch dimension;
``input_shapes`` fixes symbolic dimensions the way a user would on the
command line (``--input-shape 1,3,32,32``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from eedge.errors import ModelError, UnsupportedOpError
from eedge.frontends.ops import SUPPORTED_OPS
from eedge.ir.graph import Dim, Graph, Node, TensorInfo

DEFAULT_DOMAINS = ("", "ai.onnx")


def read_onnx_file(path: Path) -> onnx.ModelProto:
    """Parse an ONNX file with a clear error instead of a protobuf traceback."""
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; check the path")
    try:
        return onnx.load_model_from_string(path.read_bytes())
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise ModelError(f"{path} is not a valid ONNX file ({type(exc).__name__}); "
                         "export the model again or pass the right file") from exc


def parse_input_shape(text: str) -> tuple[str | None, tuple[Dim, ...]]:
    """Parse ``[NAME:]D0,D1,...``; a non-numeric dim is a symbol (batch only)."""
    name, _, dims_text = text.rpartition(":")
    dims: list[Dim] = []
    for part in dims_text.split(","):
        part = part.strip()
        if not part:
            raise ModelError(f"bad --input-shape {text!r}: empty dimension; "
                             "write it like 1,1,8,8 or input:N,3,32,32")
        if part.lstrip("-").isdigit():
            value = int(part)
            if value <= 0:
                raise ModelError(f"bad --input-shape {text!r}: dimensions must be positive")
            dims.append(value)
        else:
            dims.append(part)
    if any(isinstance(d, str) for d in dims[1:]):
        raise ModelError(f"bad --input-shape {text!r}: only the first (batch) dimension "
                         "may be symbolic")
    return (name or None), tuple(dims)


def _attribute_values(node: onnx.NodeProto) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for attr in node.attribute:
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode("utf-8") for v in value]
        attrs[attr.name] = value
    return attrs


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    attrs = {a.name: a for a in node.attribute}
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"].t)
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return np.asarray(helper.get_attribute_value(attrs[key]), dtype=dtype)
    raise UnsupportedOpError(f"Constant node {node.name!r} uses an unsupported value "
                             f"kind ({', '.join(attrs)}); use a tensor initializer instead")


def _apply_input_shapes(model: onnx.ModelProto,
                        shapes: Mapping[str | None, tuple[Dim, ...]]) -> None:
    initializers = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in initializers]
    for key, dims in shapes.items():
        if key is None:
            if len(graph_inputs) != 1:
                names = ", ".join(i.name for i in graph_inputs)
                raise ModelError(f"the model has {len(graph_inputs)} inputs ({names}); "
                                 "name the one you mean: --input-shape NAME:D0,D1,...")
            target = graph_inputs[0]
        else:
            matches = [i for i in graph_inputs if i.name == key]
            if not matches:
                names = ", ".join(i.name for i in graph_inputs)
                raise ModelError(f"--input-shape names input {key!r}, but the model's "
                                 f"inputs are: {names}")
            target = matches[0]
        existing = target.type.tensor_type.shape.dim
        if len(existing) and len(existing) != len(dims):
            raise ModelError(f"--input-shape gives {len(dims)} dimensions for input "
                             f"{target.name!r}, which has rank {len(existing)}")
        for i, (old, new) in enumerate(zip(existing, dims)):
            if old.HasField("dim_value") and isinstance(new, int) and old.dim_value != new \
                    and i > 0:
                raise ModelError(f"--input-shape sets dimension {i} of input "
                                 f"{target.name!r} to {new}, but the model fixes it to "
                                 f"{old.dim_value}")
        new_shape = [d if isinstance(d, int) else str(d) for d in dims]
        target.type.CopyFrom(helper.make_tensor_type_proto(
            target.type.tensor_type.elem_type, new_shape))


def _tensor_info(value: onnx.ValueInfoProto) -> TensorInfo | None:
    ttype = value.type.tensor_type
    if not ttype.HasField("shape") or not ttype.elem_type:
        return None
    dims: list[Dim] = []
    for d in ttype.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append("?")
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(ttype.elem_type)).name
    return TensorInfo(value.name, tuple(dims), dtype)


def _check_supported(nodes: Sequence[onnx.NodeProto]) -> None:
    bad = [n for n in nodes if n.op_type not in SUPPORTED_OPS and n.op_type != "Constant"]
    if bad:
        first = bad[0]
        more = f" (and {len(bad) - 1} more: " + ", ".join(
            sorted({n.op_type for n in bad[1:]})) + ")" if len(bad) > 1 else ""
        raise UnsupportedOpError(
            f"unsupported operator {first.op_type} in node {first.name!r}{more}; eedge "
            f"supports {', '.join(sorted(SUPPORTED_OPS))}: rewrite that part of the model "
            "with these")
    for n in nodes:
        if n.domain not in DEFAULT_DOMAINS:
            raise UnsupportedOpError(f"node {n.name!r} uses operator domain {n.domain!r}; "
                                     "only standard ONNX operators are supported")


def onnx_to_graph(model: onnx.ModelProto,
                  input_shapes: Mapping[str | None, tuple[Dim, ...]] | None = None,
                  name: str = "model") -> Graph:
    """Convert an ONNX model (outputs = exits) into a validated :class:`Graph`."""
    model = onnx.ModelProto.FromString(model.SerializeToString())  # never mutate the caller's
    opsets = {o.domain: o.version for o in model.opset_import}
    opset = next((opsets[d] for d in DEFAULT_DOMAINS if d in opsets), None)
    if opset is None:
        raise ModelError("the ONNX model imports no standard operator set; it cannot be read")
    if opset < 13:
        raise ModelError(f"the ONNX model uses opset {opset}; eedge needs opset 13 or newer "
                         "(re-export it, or convert with onnx.version_converter)")
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    _check_supported(model.graph.node)
    if input_shapes:
        _apply_input_shapes(model, input_shapes)
        del model.graph.value_info[:]  # stale shapes would contradict the new input shape
    try:
        onnx.checker.check_model(model)
        model = shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                             data_prop=True)
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"the ONNX model is invalid: {first_line}") from exc

    graph = model.graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes: list[Node] = []
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = _constant_value(node)
            continue
        nodes.append(Node(node.name, node.op_type, list(node.input), list(node.output),
                          _attribute_values(node)))

    tensors: dict[str, TensorInfo] = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        info = _tensor_info(value)
        if info is not None and value.name not in constants:
            tensors[value.name] = info
    inputs = [tensors[i.name] for i in graph.input if i.name not in constants]
    if not inputs:
        raise ModelError("the ONNX model has no inputs")
    exits = [o.name for o in graph.output]
    if not exits:
        raise ModelError("the ONNX model has no outputs; its outputs must be the exits")

    _check_shapes(nodes, tensors, constants)
    for exit_name in exits:
        info = tensors[exit_name]
        if len(info.shape) != 2:
            raise ModelError(f"exit {exit_name!r} has shape {list(info.shape)}; every output "
                             "must be (batch, classes) logits, one per exit")
    return Graph(name=name, inputs=inputs, exits=exits, nodes=nodes, constants=constants,
                 tensors=tensors, opset=opset, ir_version=model.ir_version)


def _check_shapes(nodes: Sequence[Node], tensors: Mapping[str, TensorInfo],
                  constants: Mapping[str, np.ndarray]) -> None:
    """Every activation needs a static shape (batch aside) for costs and planning."""
    for node in nodes:
        for out in node.outputs:
            if not out:
                continue
            info = tensors.get(out)
            if info is None or any(isinstance(d, str) for d in info.shape[1:]):
                shape = "unknown" if info is None else list(info.shape)
                raise ModelError(f"cannot infer a static shape for tensor {out!r} (node "
                                 f"{node.name!r}, {node.op_type}): got {shape}; pass "
                                 "--input-shape with fixed dimensions")


def load_onnx(path: Path, input_shapes: Mapping[str | None, tuple[Dim, ...]] | None = None
              ) -> tuple[Graph, onnx.ModelProto]:
    """Read an ONNX file; returns the graph and the (unmodified) source model."""
    model = read_onnx_file(path)
    return onnx_to_graph(model, input_shapes, name=path.stem), model
