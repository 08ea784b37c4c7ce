"""Read an ONNX model whose outputs are the exits into eedge's graph IR.

Any single-input, multi-output ONNX model qualifies: its graph outputs, in
order, are the exits (earliest first). Shapes must be static except the
batch dimension; ``input_shapes`` fixes symbolic dimensions the way a user
would on the command line (``--input-shape 1,3,32,32``).

Models come in as users export them, so the import first normalizes them
(:func:`import_onnx`): external weights are embedded, opsets older than 13
are converted, trailing Softmax/LogSoftmax on exits is removed (the
policies softmax the logits themselves) and a fixed batch is made symbolic
where that is provably safe. The normalized model is what the bundle keeps
as its whole-model reference; ``notes`` tell the user what changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper, version_converter

from eedge.errors import ModelError, UnsupportedOpError
from eedge.frontends.onnx_batch import (BATCH_SYMBOL, check_batch_axis, infer_shapes,
                                        infer_with_batch, make_batch_symbolic,
                                        pad_constant_concats)
from eedge.frontends.onnx_exit_softmax import StrippedExit, strip_exit_softmax
from eedge.frontends.onnx_external_data import embed_external_data
from eedge.frontends.onnx_fold import fold_constants
from eedge.frontends.onnx_patterns import drop_zero_initial_states, fuse_patterns
from eedge.frontends.onnx_recurrent import unroll_recurrent
from eedge.frontends.onnx_tensors import check_tensor_data, check_text_fields
from eedge.frontends.ops import (ONNX_ALTERNATIVES, nearest_alternative,
                                 supported_onnx_ops)
from eedge.ir.graph import Dim, Graph, Node, TensorInfo

DEFAULT_DOMAINS = ("", "ai.onnx")
MIN_OPSET = 13
MAX_INPUT_DIM = 1 << 24  # the bundle manifest's bound on a dimension
MAX_NAME = 1024          # the bundle manifest's bound on a tensor name


@dataclass
class OnnxImport:
    """The IR graph, the normalized ONNX model it came from, and what was changed."""

    graph: Graph
    model: onnx.ModelProto
    notes: list[str] = field(default_factory=list)
    stripped_exits: list[StrippedExit] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.notes)

    @cached_property
    def lowering_graph(self) -> Graph | None:
        """For a model kept at a fixed batch of 1: the same graph with the batch followed
        through every node, which the TFLite lowering reads so that each tensor stores its
        batch first even where torch moved it (attention's (T, N, D) tensors); None when
        the batch is symbolic anyway or cannot be followed. Made on first use: only
        exports that lower pay for it."""
        return _batch_followed(self.model, self.graph.opset, self.graph.name)


def read_onnx_file(path: Path) -> onnx.ModelProto:
    """Parse an ONNX file, weights included, with a clear error instead of a traceback.

    External data (``m.onnx.data``) is read relative to the model's folder
    and embedded, so the result is self-contained.
    """
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; check the path")
    try:
        model = onnx.load_model_from_string(path.read_bytes())
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise ModelError(f"{path} is not a valid ONNX file ({type(exc).__name__}); "
                         "export the model again or pass the right file") from exc
    check_text_fields(model)
    embed_external_data(model, path.parent)
    return model


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
            value = int(part) if len(part) <= 12 else 1 << 40  # no 5,000-digit int parsing
            if value <= 0 or value >= 1 << 31:
                raise ModelError(f"bad --input-shape {text[:60]!r}: dimensions must be "
                                 f"positive and below 2**31")
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
        new_shape: list[int | str | None] = [d if isinstance(d, int) else str(d) for d in dims]
        if len(existing):  # the batch is settled by _settle_batch, from the model's own
            first = existing[0]
            new_shape[0] = first.dim_value if first.HasField("dim_value") else (
                first.dim_param if first.HasField("dim_param") else None)
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
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(ttype.elem_type)).name
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"tensor {value.name[:80]!r} has element type {ttype.elem_type}, "
                         "which ONNX does not define; the model file is corrupted") from None
    return TensorInfo(value.name, tuple(dims), dtype)


_AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


def _check_auto_pad(node: onnx.NodeProto, attrs: Mapping[str, Any]) -> None:
    """ONNX Runtime refuses these at load; refuse them at the door, as a model error."""
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad not in _AUTO_PADS:
        raise ModelError(f"node {node.name[:80]!r} ({node.op_type}) has auto_pad "
                         f"{str(auto_pad)[:40]!r}; ONNX allows {', '.join(_AUTO_PADS)}")
    if auto_pad != "NOTSET" and "pads" in attrs:
        raise ModelError(f"node {node.name[:80]!r} ({node.op_type}) has both auto_pad "
                         f"{auto_pad} and pads; ONNX allows one of them")


def _check_supported(nodes: Sequence[onnx.NodeProto]) -> None:
    supported = supported_onnx_ops()
    bad = [n for n in nodes if n.op_type not in supported and n.op_type != "Constant"]
    if bad:
        first = bad[0]
        more = f" (and {len(bad) - 1} more: " + ", ".join(
            sorted({n.op_type for n in bad[1:]})) + ")" if len(bad) > 1 else ""
        advice = nearest_alternative(first.op_type, supported, ONNX_ALTERNATIVES)
        raise UnsupportedOpError(
            f"unsupported operator {first.op_type} in node {first.name!r}{more}; {advice}")
    for n in nodes:
        if n.domain not in DEFAULT_DOMAINS:
            raise UnsupportedOpError(f"node {n.name!r} uses operator domain {n.domain!r}; "
                                     "only standard ONNX operators are supported")


def _convert_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """Bring an old-opset model to opset 13 with onnx's converter, or say why not."""
    try:
        converted = version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        reason = reason.rpartition(" failed: ")[2]  # drop the C++ source location
        raise ModelError(f"the ONNX model uses opset {opset} and onnx.version_converter "
                         f"cannot convert it to opset {MIN_OPSET} ({reason}); re-export it "
                         f"with opset_version={MIN_OPSET} or newer") from exc
    converted.ir_version = max(converted.ir_version, 7)  # opset 13 needs IR version 7
    return converted


def _settle_batch(model: onnx.ModelProto, user_batch: Dim | None,
                  folded_at_1: bool = False) -> list[str]:
    """Make the batch symbolic unless the model is fixed to batch 1 and nobody asks.

    A fixed batch above 1 cannot run a cascade (later stages see fewer
    rows), so it is always made symbolic or refused. The user's batch in
    ``--input-shape`` only asks for a symbolic batch: the rewrite uses the
    batch the model was exported with, which is what its Reshapes contain.
    """
    target = _graph_inputs(model)[0]
    dims = target.type.tensor_type.shape.dim
    if not len(dims):
        return []
    first = dims[0]
    if not first.HasField("dim_value"):
        symbol = user_batch if isinstance(user_batch, str) else (
            first.dim_param or BATCH_SYMBOL)
        make_batch_symbolic(model, target.name, 1, symbol)  # follows the batch, any axis
        return []
    batch = int(first.dim_value)
    if batch == 1 and (user_batch is None or user_batch == 1):
        # kept: the runtime feeds fixed-batch-1 models row by row; the class token's
        # Concat takes the form the symbolic path gives it, so lowering meets one form
        padded = pad_constant_concats(model, target.name)
        return [f"eedge rewrote Concat node(s) {', '.join(padded)} of constants and "
                "activations as Pad + Add"] if padded else []
    symbol = user_batch if isinstance(user_batch, str) else BATCH_SYMBOL
    if folded_at_1:  # the user's dynamic batch, fixed to 1 for folding (already noted)
        make_batch_symbolic(model, target.name, batch, symbol, advice=(
            "export the model with a fixed batch (eedge makes the batch symbolic itself)"))
        return []
    rewritten = make_batch_symbolic(model, target.name, batch, symbol)
    shown = ", ".join(rewritten[:6]) + (f" and {len(rewritten) - 6} more"
                                        if len(rewritten) > 6 else "")
    where = f" (rewrote node(s) {shown})" if rewritten else ""
    return [f"the model was exported with a fixed batch of {batch}; eedge made the batch "
            f"dimension symbolic{where}"]


def _fix_batch_for_folding(model: onnx.ModelProto, user_batch: Dim | None
                           ) -> tuple[Dim | None, list[str]]:
    """Give a symbolic batch the value 1 when the model computes shapes from it.

    ``Shape`` of a tensor whose batch is symbolic cannot fold. eedge does
    not need the user's dynamic-batch shape arithmetic: it folds at batch 1
    and makes the batch symbolic itself (:func:`_settle_batch`), proving each
    Reshape it rewrites, or refusing with the node named.
    """
    target = _graph_inputs(model)[0]
    dims = target.type.tensor_type.shape.dim
    if not len(dims) or dims[0].HasField("dim_value") or \
            not any(n.op_type in ("Shape", "Size") for n in model.graph.node):
        return user_batch, []
    symbol = user_batch if isinstance(user_batch, str) else (dims[0].dim_param or BATCH_SYMBOL)
    dims[0].Clear()
    dims[0].dim_value = 1
    return symbol, [f"the model computes shapes from its batch ({symbol}); eedge folded them at "
                    "batch 1 and made the batch symbolic itself"]


def _normalize_graph(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """Fold shape arithmetic, fuse GELU/LayerNorm formulas, drop zero recurrent states."""
    notes: list[str] = []
    folded = [name for name, op in fold_constants(model) if op != "Constant"]
    if folded:
        notes.append(f"eedge folded {len(folded)} node(s) computing constants (shape "
                     "arithmetic) into initializers")
    model, fused = fuse_patterns(model)
    notes += fused
    if fused:
        fold_constants(model)  # the opset converter may add Constant nodes
    dropped = drop_zero_initial_states(model)
    if dropped:
        notes.append(f"eedge dropped the all-zero initial states of {', '.join(dropped)} "
                     "(zero is ONNX's default)")
    return model, notes


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _user_batch(shapes: Mapping[str | None, tuple[Dim, ...]] | None) -> Dim | None:
    if not shapes:
        return None
    dims = next(iter(shapes.values()))
    return dims[0] if dims else None


def import_onnx(model: onnx.ModelProto,
                input_shapes: Mapping[str | None, tuple[Dim, ...]] | None = None,
                name: str = "model") -> OnnxImport:
    """Normalize an ONNX model (outputs = exits) and convert it into a :class:`Graph`."""
    model = onnx.ModelProto.FromString(model.SerializeToString())  # never mutate the caller's
    check_tensor_data(model)
    notes: list[str] = []
    opsets = {o.domain: o.version for o in model.opset_import}
    opset = next((opsets[d] for d in DEFAULT_DOMAINS if d in opsets), None)
    if opset is None:
        raise ModelError("the ONNX model imports no standard operator set; it cannot be read")
    if opset > onnx.defs.onnx_opset_version():
        raise ModelError(f"the model imports operator set {opset}; this onnx knows up to "
                         f"{onnx.defs.onnx_opset_version()}: export it with an older opset")
    if opset < MIN_OPSET:
        model = _convert_opset(model, opset)
        notes.append(f"the model uses opset {opset}; eedge converted it to opset {MIN_OPSET} "
                     "with onnx.version_converter")
        opset = MIN_OPSET
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    graph_inputs = _graph_inputs(model)
    if len(graph_inputs) > 1:
        names = ", ".join(i.name for i in graph_inputs)
        raise ModelError(f"the model has {len(graph_inputs)} inputs ({names}); eedge supports "
                         "single-input models: merge the inputs into one tensor and re-export")
    stripped = strip_exit_softmax(model)
    notes += [s.note() for s in stripped]
    if input_shapes:
        _apply_input_shapes(model, input_shapes)
        del model.graph.value_info[:]  # stale shapes would contradict the new input shape
    user_batch = _user_batch(input_shapes)
    folded_notes: list[str] = []
    if graph_inputs:
        user_batch, folded_notes = _fix_batch_for_folding(model, user_batch)
        notes += folded_notes
    model, pattern_notes = _normalize_graph(model)
    notes += pattern_notes
    opset = next(o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS)
    notes += unroll_recurrent(model)
    _check_supported(model.graph.node)
    _check_names(model.graph)
    if graph_inputs:
        notes += _settle_batch(model, user_batch, folded_at_1=bool(folded_notes))
    normalized = onnx.ModelProto.FromString(model.SerializeToString())
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"the ONNX model is invalid: {first_line}") from exc
    symbol = _batch_symbol(model)
    model = infer_with_batch(model, symbol) if symbol else infer_shapes(model)
    if symbol:
        check_batch_axis(model, symbol)
    graph = _model_to_graph(model, opset, name)
    return OnnxImport(graph, normalized, notes, stripped)


def _batch_followed(model: onnx.ModelProto, opset: int, name: str) -> Graph | None:
    """A fixed-batch-1 model's graph with the batch axis of every tensor known (see
    :attr:`OnnxImport.lowering_graph`), or None when eedge cannot follow it."""
    inputs = _graph_inputs(model)
    dims = inputs[0].type.tensor_type.shape.dim if inputs else []
    if not len(dims) or not dims[0].HasField("dim_value") or dims[0].dim_value != 1:
        return None
    target = inputs[0]
    twin = onnx.ModelProto.FromString(model.SerializeToString())
    try:
        make_batch_symbolic(twin, target.name, 1, BATCH_SYMBOL)
        twin = infer_with_batch(twin, BATCH_SYMBOL)
        check_batch_axis(twin, BATCH_SYMBOL)
        graph = _model_to_graph(twin, opset, name)
    except ModelError:
        return None
    return graph


def _batch_symbol(model: onnx.ModelProto) -> str | None:
    inputs = _graph_inputs(model)
    dims = inputs[0].type.tensor_type.shape.dim if inputs else []
    return dims[0].dim_param if len(dims) and dims[0].HasField("dim_param") else None


def onnx_to_graph(model: onnx.ModelProto,
                  input_shapes: Mapping[str | None, tuple[Dim, ...]] | None = None,
                  name: str = "model") -> Graph:
    """Convert an ONNX model (outputs = exits) into a validated :class:`Graph`."""
    return import_onnx(model, input_shapes, name).graph


def _model_to_graph(model: onnx.ModelProto, opset: int, name: str) -> Graph:
    graph = model.graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes: list[Node] = []
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = _constant_value(node)
            continue
        attrs = _attribute_values(node)
        _check_auto_pad(node, attrs)
        nodes.append(Node(node.name, node.op_type, list(node.input), list(node.output), attrs))

    tensors: dict[str, TensorInfo] = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        info = _tensor_info(value)
        if info is not None and value.name not in constants:
            tensors[value.name] = info
    inputs = [tensors[i.name] for i in graph.input if i.name not in constants]
    if not inputs:
        raise ModelError("the ONNX model has no inputs")
    for info in inputs:
        if any(isinstance(d, int) and d < 1 for d in info.shape):
            raise ModelError(f"input {info.name[:80]!r} has shape {list(info.shape)[:8]}; "
                             "dimensions must be positive (or a symbolic batch)")
        if any(isinstance(d, int) and d > MAX_INPUT_DIM for d in info.shape):
            raise ModelError(f"input {info.name[:80]!r} has shape {list(info.shape)[:8]}; "
                             f"dimensions above {MAX_INPUT_DIM} are not supported")
        if any(not isinstance(d, int) for d in info.shape[1:]):
            raise ModelError(f"input {info.name[:80]!r} has shape {list(info.shape)[:8]}; only "
                             "the batch (first) dimension may be symbolic: pass --input-shape")
    _check_conv_groups(nodes, tensors, constants)
    exits = [o.name for o in graph.output]
    if not exits:
        raise ModelError("the ONNX model has no outputs; its outputs must be the exits")

    _check_shapes(nodes, tensors, constants, inputs[0].shape[0] if inputs[0].shape else None)
    for exit_name in exits:
        info = tensors[exit_name]
        if len(info.shape) != 2:
            raise ModelError(f"exit {exit_name!r} has shape {list(info.shape)}; every output "
                             "must be (batch, classes) logits, one per exit")
    return Graph(name=name, inputs=inputs, exits=exits, nodes=nodes, constants=constants,
                 tensors=tensors, opset=opset, ir_version=model.ir_version)


def _check_names(graph: onnx.GraphProto) -> None:
    """Tensor names go into the manifest and generated C: bounded, no control characters."""
    names = [v.name for v in list(graph.input) + list(graph.output)]
    names += [name for node in graph.node for name in node.output]
    for name in names:
        if len(name) > MAX_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise ModelError(f"tensor name {name[:40]!r}... has control characters or is over "
                             f"{MAX_NAME} characters; rename it in the model")


def _check_conv_groups(nodes: Sequence[Node], tensors: Mapping[str, TensorInfo],
                       constants: Mapping[str, np.ndarray]) -> None:
    """ONNX shape inference does not check `group`; ONNX Runtime fails at run time."""
    for node in nodes:
        if node.op_type != "Conv" or len(node.inputs) < 2 or node.inputs[1] not in constants:
            continue
        weight = constants[node.inputs[1]]
        x = tensors.get(node.inputs[0])
        group = node.attrs.get("group", 1)
        if x is None or weight.ndim < 3 or len(x.shape) < 2 or not isinstance(x.shape[1], int):
            continue
        if not isinstance(group, int) or group < 1 or weight.shape[0] % group or \
                x.shape[1] != weight.shape[1] * group:
            raise ModelError(f"Conv {node.name[:80]!r}: group {str(group)[:24]} does not fit "
                             f"{x.shape[1]} input channels and weights {list(weight.shape)}")


def _check_shapes(nodes: Sequence[Node], tensors: Mapping[str, TensorInfo],
                  constants: Mapping[str, np.ndarray], batch: Dim | None = None) -> None:
    """Every activation needs a static shape (batch aside) for costs and planning.

    The batch symbol may sit at any one axis (attention and recurrent layers
    move it; :func:`check_batch_axis` proved each tensor holds it once).
    """
    for node in nodes:
        for out in node.outputs:
            if not out:
                continue
            info = tensors.get(out)
            if info is None or any(isinstance(d, str) and d != batch
                                   for d in info.shape[1:]):
                shape = "unknown" if info is None else list(info.shape)
                raise ModelError(f"cannot infer a static shape for tensor {out!r} (node "
                                 f"{node.name!r}, {node.op_type}): got {shape}; pass "
                                 "--input-shape with fixed dimensions")
            if any(isinstance(d, int) and d < 1 for d in info.shape):
                raise ModelError(f"tensor {out[:80]!r} (node {node.name[:80]!r}, "
                                 f"{node.op_type}) has shape {list(info.shape)[:8]}: an empty "
                                 "dimension; check the kernel, stride, dilation and pads")


def load_onnx(path: Path, input_shapes: Mapping[str | None, tuple[Dim, ...]] | None = None
              ) -> tuple[Graph, onnx.ModelProto]:
    """Read an ONNX file; returns the graph and the (unmodified) source model."""
    model = read_onnx_file(path)
    return onnx_to_graph(model, input_shapes, name=path.stem), model
