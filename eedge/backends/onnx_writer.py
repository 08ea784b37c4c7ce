"""Write graph pieces (a stage, or the whole model) as standalone ONNX files.

Each stage file takes its hand-offs as inputs and produces its exit logits
plus the hand-offs later stages read, so ONNX Runtime can run the stages
one by one. Output is deterministic and path-free: same model, same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from eedge import __version__
from eedge.errors import ModelError
from eedge.ir.graph import Graph, TensorInfo


def _value_info(info: TensorInfo) -> onnx.ValueInfoProto:
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(info.dtype))
    return helper.make_tensor_value_info(info.name, elem, list(info.shape))


def subgraph_to_onnx(graph: Graph, node_indices: Sequence[int], inputs: Sequence[str],
                     outputs: Sequence[str], name: str) -> onnx.ModelProto:
    """Build a checked ONNX model from a subset of ``graph``'s nodes."""
    order = sorted(node_indices)
    nodes = []
    for i in order:
        node = graph.nodes[i]
        nodes.append(helper.make_node(node.op_type, node.inputs, node.outputs, name=node.name,
                                      **node.attrs))
    io_names = set(inputs) | set(outputs)
    intermediates = [graph.tensors[out] for i in order for out in graph.nodes[i].outputs
                     if out and out not in io_names and out in graph.tensors]
    initializers = [numpy_helper.from_array(graph.constants[c], c)
                    for c in graph.constants_of(order)]
    onnx_graph = helper.make_graph(
        nodes, name, [_value_info(graph.tensors[t]) for t in inputs],
        [_value_info(graph.tensors[t]) for t in outputs], initializer=initializers,
        value_info=[_value_info(t) for t in intermediates])
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", graph.opset)],
                              producer_name="eedge", producer_version=__version__)
    model.ir_version = graph.ir_version
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ModelError(f"the ONNX file for {name} failed onnx.checker: "
                         f"{str(exc).splitlines()[0]}") from exc
    return model


def serialize(model: onnx.ModelProto) -> bytes:
    """Deterministic bytes of a self-contained model.

    Bundle files must load on their own: a tensor that still points at an
    external data file would make the bundle depend on files it does not
    hold (and on the directory it is run from).
    """
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node
                                                for a in n.attribute if a.HasField("t")]
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in tensors):
        raise ModelError(f"model {model.graph.name!r} still refers to external data; eedge "
                         "bundles embed every weight (read the model with read_onnx_file)")
    return model.SerializeToString(deterministic=True)
