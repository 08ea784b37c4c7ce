"""Where TFLite Micro is *not* the int8 reference, and how such stages are checked.

TFLite Micro's interpreter is eedge's primary bit-exact oracle, with two
exceptions. A standalone RELU6 whose output quantization differs from its
input's must be requantized into the output's scale and then clamped, as
LiteRT's reference kernels do; TFLM clamps in the input's scale and copies
the bytes (a known TFLM bug, DESIGN.md). eedge computes the correct result,
so comparing it with TFLM would report a false "eedge bug" for valid
TensorFlow-made models. And TFLM has no RELU_N1_TO_1 kernel at all (it
cannot even load such a file), while eedge's own lowering emits a
standalone one for a Clip(-1, 1) with nothing to fuse into. Nor has it a GELU
kernel (transformers' activation): eedge follows LiteRT's, whose reference and
default kernels fill the same float32 table.

LiteRT's reference kernels (``OpResolverType.BUILTIN_REF``) are not a
drop-in replacement for a whole stage either: their FULLY_CONNECTED
requantizes in double precision (±1 on about 0.1% of outputs). So a stage
with such a RELU6 is checked in parts, each part against the interpreter
that is right for it, and every part is fed eedge's own values for its
inputs: those nodes alone against LiteRT BUILTIN_REF, every run of
other nodes between them against TFLM. Every tensor the stage computes is
compared, so the chain of parts covers the stage end to end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from eedge.backends.tflite_writer import graph_to_tflite
from eedge.errors import VerificationError
from eedge.ir.graph import Graph
from eedge.reference.executor import execute
from eedge.reference.int8_kernels import quant_of, scale_of, zero_point_of
from eedge.runtime.interpreters import LiteRTModel, TFLMModel

TFLM = "TFLite Micro interpreter"
LITERT_REF = "LiteRT BUILTIN_REF (reference kernels)"
RELU6_REASON = ("TFLite Micro clamps a standalone RELU6 in its input's scale instead of "
                "requantizing into its output's (a known TFLM bug); eedge and LiteRT's "
                "reference kernels requantize, then clamp")
RELU_N1_TO_1_REASON = ("TFLite Micro has no RELU_N1_TO_1 kernel; eedge follows LiteRT's "
                       "reference kernels (requantize with the float32 scale ratio, then clamp)")
GELU_REASON = ("TFLite Micro has no GELU kernel; eedge follows LiteRT's (a 256-entry table "
               "filled in float32 from GeluTransform)")
NO_TFLM_KERNEL = {"RELU_N1_TO_1": RELU_N1_TO_1_REASON, "GELU": GELU_REASON}
"""int8 builtins TFLite Micro cannot run at all, and why eedge's bytes are still checked."""


def tflm_relu6_bug_nodes(graph: Graph) -> list[int]:
    """Indices of int8 standalone RELU6 nodes whose output quantization differs from the input's."""
    found = []
    for i, node in enumerate(graph.nodes):
        out = graph.tensors.get(node.outputs[0])
        if node.op_type != "RELU6" or out is None or out.dtype != "int8":
            continue
        in_q, out_q = quant_of(graph, node.inputs[0]), quant_of(graph, node.outputs[0])
        if (np.float32(scale_of(in_q)) != np.float32(scale_of(out_q))
                or zero_point_of(in_q) != zero_point_of(out_q)):
            found.append(i)
    return found


def tflm_exception_nodes(graph: Graph) -> list[int]:
    """Indices of the int8 nodes TFLM cannot check: the RELU6 bug's and every node TFLM has no
    kernel for (:data:`NO_TFLM_KERNEL`)."""
    missing = [i for i, node in enumerate(graph.nodes) if node.op_type in NO_TFLM_KERNEL
               and getattr(graph.tensors.get(node.outputs[0]), "dtype", None) == "int8"]
    return sorted(set(tflm_relu6_bug_nodes(graph)) | set(missing))


def exception_reason(graph: Graph, nodes: Sequence[int]) -> str:
    """Why the given exception nodes follow LiteRT BUILTIN_REF, for the verification report."""
    kinds = {graph.nodes[i].op_type for i in nodes}
    return "; ".join(reason for op, reason in (("RELU6", RELU6_REASON), *NO_TFLM_KERNEL.items())
                     if op in kinds)


@dataclass(frozen=True)
class Part:
    """Consecutive nodes of a stage checked against one interpreter."""

    nodes: list[int]
    inputs: list[str]
    outputs: list[str]
    reference: str


def split_at(graph: Graph, exceptions: Sequence[int]) -> list[Part]:
    """Cut the node list (topologically ordered) around each exception node.

    A part's outputs are all the tensors it computes, so intermediate
    tensors are compared too, not only what leaves the part.
    """
    special = set(exceptions)
    groups: list[list[int]] = []
    for i in range(len(graph.nodes)):
        if i in special or not groups or groups[-1][-1] in special:
            groups.append([i])
        else:
            groups[-1].append(i)
    parts = []
    for group in groups:
        produced = [t for i in group for t in graph.nodes[i].outputs]
        inputs: list[str] = []
        for i in group:
            for t in graph.nodes[i].inputs:
                if t and t not in graph.constants and t not in produced and t not in inputs:
                    inputs.append(t)
        parts.append(Part(group, inputs, produced,
                          LITERT_REF if group[0] in special else TFLM))
    return parts


def check_stage_in_parts(graph: Graph, stage_name: str, feeds: Mapping[str, np.ndarray],
                         exceptions: Sequence[int]) -> tuple[dict[str, np.ndarray], int]:
    """Compare eedge's reference with the right interpreter part by part.

    Returns eedge's value of every tensor of the stage and how many
    (tensor, sample) pairs were compared; raises on the first difference.
    """
    env = execute(graph, feeds)
    compared = 0
    for part in split_at(graph, exceptions):
        if not part.inputs:
            continue
        data = graph_to_tflite(graph, part.nodes, part.inputs, part.outputs,
                               f"eedge verification: {stage_name} part")
        arrays = [env[t] for t in part.inputs]
        if part.reference == LITERT_REF:
            theirs = LiteRTModel(data, reference=True).run(arrays)
        else:
            theirs = TFLMModel(data, len(part.outputs)).run(arrays)
        for name, b in zip(part.outputs, theirs):
            a = env[name]
            if not np.array_equal(a, b.reshape(a.shape)):
                node = graph.nodes[graph.producer_index(name)]
                raise VerificationError(
                    f"{stage_name}: eedge's int8 reference and the {part.reference} disagree "
                    f"on {name!r} ({node.op_type} node {node.name!r}); this is an eedge bug: "
                    "please report it")
            compared += a.shape[0]
    return env, compared
