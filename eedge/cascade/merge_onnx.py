"""Merge ONNX members into one multi-output model with one shared input.

Every name of member k (nodes, tensors, initializers) gets the prefix
``m{k}_`` so members never share a tensor by accident, and each member's
input becomes the shared input ``input``. The outputs are the members'
logits in cascade order: to the rest of eedge this is a multi-exit model
whose exits happen to share nothing but the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx
from onnx import helper, version_converter

from eedge.errors import ModelError

SHARED_INPUT = "input"


def member_prefix(k: int) -> str:
    return f"m{k}_"


def merge_onnx(models: Sequence[onnx.ModelProto], names: Sequence[str],
               graph_name: str = "cascade") -> onnx.ModelProto:
    """One model whose output k is member k's only output, all reading ``input``."""
    opset = max(_default_opset(m, n) for m, n in zip(models, names))
    models = [_at_opset(m, opset, n) for m, n in zip(models, names)]
    inputs = [_only_input(m, n) for m, n in zip(models, names)]
    shared = _shared_input(inputs, names)
    # value_info is left out: the import infers shapes again, and a member's recorded shapes
    # may hold a batch the shared input no longer has
    nodes, initializers, outputs = [], [], []
    imports: dict[str, int] = {"": opset}
    functions: dict[tuple[str, str], onnx.FunctionProto] = {}
    for k, (model, name) in enumerate(zip(models, names)):
        graph = model.graph
        if len(graph.output) != 1:
            raise ModelError(f"cascade member {name} has {len(graph.output)} outputs; a "
                             "member returns one logits tensor (export it with one output)")
        rename = _renamer(member_prefix(k), inputs[k].name)
        for node in graph.node:
            _check_no_subgraphs(node, name)
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = member_prefix(k) + (node.name or f"{node.op_type}_{len(nodes)}")
            copy.input[:] = [rename(t) for t in node.input]
            copy.output[:] = [rename(t) for t in node.output]
            nodes.append(copy)
        for init in graph.initializer:
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = rename(init.name)
            initializers.append(copy)
        out = onnx.ValueInfoProto()
        out.CopyFrom(graph.output[0])
        out.name = rename(out.name)
        outputs.append(out)
        for imp in model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                continue
            if imports.setdefault(imp.domain, imp.version) != imp.version:
                raise ModelError(f"cascade member {name} imports {imp.domain} version "
                                 f"{imp.version}, another member version {imports[imp.domain]}; "
                                 "export the members with the same exporter version")
        for fn in model.functions:
            key = (fn.domain, fn.name)
            if key in functions and functions[key].SerializeToString() != fn.SerializeToString():
                raise ModelError(f"cascade members define the ONNX function {fn.domain}."
                                 f"{fn.name} differently; export them with the same exporter")
            functions[key] = fn
    graph = helper.make_graph(nodes, graph_name, [shared], outputs, initializers)
    merged = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v)
                                                     for d, v in imports.items()],
                               functions=list(functions.values()),
                               producer_name="eedge cascade")
    merged.ir_version = max(m.ir_version for m in models)
    return merged


def _renamer(prefix: str, member_input: str):  # type: ignore[no-untyped-def]
    def rename(tensor: str) -> str:
        if not tensor:
            return tensor  # an omitted optional input stays omitted
        return SHARED_INPUT if tensor == member_input else prefix + tensor
    return rename


def _default_opset(model: onnx.ModelProto, name: str) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ModelError(f"cascade member {name} imports no standard ONNX operator set")


def _at_opset(model: onnx.ModelProto, opset: int, name: str) -> onnx.ModelProto:
    """Members exported with different opsets are converted up to the newest one."""
    if _default_opset(model, name) == opset:
        return model
    try:
        return version_converter.convert_version(model, opset)
    except Exception as exc:
        raise ModelError(f"cascade member {name} uses an older ONNX opset that onnx cannot "
                         f"convert to {opset} ({type(exc).__name__}); export every member "
                         "with the same opset") from exc


def _only_input(model: onnx.ModelProto, name: str) -> onnx.ValueInfoProto:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(f"cascade member {name} has {len(inputs)} inputs; members take one "
                         "input, the same for all")
    return inputs[0]


def _dims(info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in info.type.tensor_type.shape.dim]


def _shared_input(inputs: Sequence[onnx.ValueInfoProto], names: Sequence[str]
                  ) -> onnx.ValueInfoProto:
    """The input every member reads: same element type and per-sample shape for all.

    The batch may be symbolic in some members and 1 in others (torch.onnx.export
    without dynamic shapes fixes it to the example's batch): the shared input is
    then fixed to 1, which every member accepts.
    """
    first = inputs[0]
    dtype, dims = first.type.tensor_type.elem_type, _dims(first)
    for info, name in zip(inputs[1:], names[1:]):
        other = _dims(info)
        if info.type.tensor_type.elem_type != dtype:
            raise ModelError(f"cascade member {name} takes {_type_name(info)} input, member "
                             f"{names[0]} {_type_name(first)}; all members read the same input")
        if len(other) != len(dims) or other[1:] != dims[1:]:
            raise ModelError(f"cascade member {name} takes input shape {other}, member "
                             f"{names[0]} {dims}; all members read the same input (put a "
                             "resize in front of a member that needs another resolution)")
    batches = {d[0] if d else None for d in (_dims(i) for i in inputs)}
    fixed = {b for b in batches if isinstance(b, int)}
    if len(fixed) > 1 or (fixed and fixed != {1} and len(batches) > 1):
        raise ModelError(f"cascade members have different batch sizes {sorted(map(str, batches))}; "
                         "export them with the same batch (or a dynamic one)")
    shared = onnx.ValueInfoProto()
    shared.CopyFrom(first)
    shared.name = SHARED_INPUT
    del shared.metadata_props[:]
    if fixed and dims:
        dim = shared.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = next(iter(fixed))
    return shared


def _type_name(info: onnx.ValueInfoProto) -> str:
    return onnx.TensorProto.DataType.Name(info.type.tensor_type.elem_type).lower()


def _check_no_subgraphs(node: onnx.NodeProto, name: str) -> None:
    for attr in node.attribute:
        if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise ModelError(f"cascade member {name} uses control flow ({node.op_type}); "
                             "eedge supports feed-forward members only")
