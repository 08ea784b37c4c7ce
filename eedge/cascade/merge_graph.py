"""Merge ``.tflite`` members at the IR level into one multi-exit graph.

TFLite members are read into eedge's IR (tflite dialect) and merged there (ONNX and
torch members of the same cascade are lowered to that dialect first,
:mod:`eedge.cascade.lowering`):
every tensor, constant and node of member k is prefixed ``m{k}_`` and each
member's input becomes the shared input. The semantics of int8 members:

- every member float32 (.tflite or lowered ONNX), or every member an int8 .tflite —
  a mix is refused, because
  an int8 bundle reads one int8 input and a float member has no int8 form
  without quantizing it (export it as float and quantize the whole cascade
  with ``--int8 --calib``);
- int8 members must quantize the input identically (same scale and zero
  point): the shared input is one array of bytes, and the members'
  arithmetic is kept bit for bit, so the cascade's int8 outputs are the
  members' own TFLite Micro outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from eedge.cascade.merge_onnx import SHARED_INPUT, member_prefix
from eedge.errors import ModelError
from eedge.ir.graph import Graph, Node, TensorInfo


def merge_graphs(graphs: Sequence[Graph], names: Sequence[str], name: str = "cascade") -> Graph:
    """One tflite-dialect graph: exit k is member k's output, all read ``input``."""
    first = graphs[0].inputs[0]
    int8 = first.dtype == "int8"
    for graph, member in zip(graphs, names):
        if len(graph.inputs) != 1:
            raise ModelError(f"cascade member {member} has {len(graph.inputs)} inputs; members "
                             "take one input, the same for all")
        info = graph.inputs[0]
        if (info.dtype == "int8") != int8:
            raise ModelError("cascade members mix float and int8 models (an int8 .tflite with "
                             "float .tflite or ONNX members); use all float (and --int8 --calib "
                             "to quantize the cascade) or all int8 .tflite files")
        if info.dtype != first.dtype or tuple(info.shape[1:]) != tuple(first.shape[1:]):
            raise ModelError(f"cascade member {member} takes {info.dtype} input of shape "
                             f"{list(info.shape)}, member {names[0]} {first.dtype} "
                             f"{list(first.shape)}; all members read the same input")
        if int8 and info.quant != first.quant:
            raise ModelError(f"cascade member {member} quantizes its int8 input with "
                             f"{_quant_text(info)}, member {names[0]} with {_quant_text(first)}; "
                             "int8 members must share the input's scale and zero point")
    shared = replace(first, name=SHARED_INPUT)
    nodes: list[Node] = []
    constants, tensors, const_quant = {}, {SHARED_INPUT: shared}, {}
    exits = []
    for k, graph in enumerate(graphs):
        prefix, source = member_prefix(k), graph.inputs[0].name

        def rename(t: str, prefix: str = prefix, source: str = source) -> str:
            return t if not t else (SHARED_INPUT if t == source else prefix + t)

        nodes += [replace(n, name=prefix + n.name, inputs=[rename(t) for t in n.inputs],
                          outputs=[rename(t) for t in n.outputs], attrs=dict(n.attrs))
                  for n in graph.nodes]
        constants.update({rename(t): v for t, v in graph.constants.items()})
        const_quant.update({rename(t): q for t, q in graph.const_quant.items()})
        tensors.update({rename(t): replace(info, name=rename(t))
                        for t, info in graph.tensors.items() if t != source})
        exits.append(rename(graph.exits[0]))
    return Graph(name=name, inputs=[shared], exits=exits, nodes=nodes, constants=constants,
                 tensors=tensors, opset=0, ir_version=0, dialect="tflite",
                 const_quant=const_quant)


def _quant_text(info: TensorInfo) -> str:
    q = info.quant
    return "no quantization" if q is None else f"scale {q.scale[0]:.6g}, zero point " \
                                               f"{q.zero_point[0]}"
