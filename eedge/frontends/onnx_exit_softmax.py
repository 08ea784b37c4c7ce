"""Make exits that end in Softmax or LogSoftmax yield logits again.

eedge's exit policies apply softmax to every exit. An exit that already
outputs probabilities would be softmaxed twice: the scores flatten towards
1/C and calibrated thresholds come out meaningless without any error. The
fix is exact: the softmax of the Softmax's (or LogSoftmax's) input is the
model's probabilities, so the trailing node is removed and the exit keeps
its name. The caller reports what was removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import helper

from eedge.errors import ModelError

NORMALIZERS = ("Softmax", "LogSoftmax")


@dataclass(frozen=True)
class StrippedExit:
    """One exit whose trailing normalizer was removed."""

    exit: str
    op_type: str
    node: str

    def note(self) -> str:
        return (f"exit {self.exit!r} ended in {self.op_type} (node {self.node!r}); eedge "
                f"removed it so the exit yields logits (their softmax is the model's "
                f"probabilities)")


def _over_last_axis(node: onnx.NodeProto) -> bool:
    axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), -1)
    return axis in (-1, 1)  # exits are (batch, classes)


def _rename(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        node.input[:] = [new if t == old else t for t in node.input]
        node.output[:] = [new if t == old else t for t in node.output]


def strip_exit_softmax(model: onnx.ModelProto) -> list[StrippedExit]:
    """Remove a Softmax/LogSoftmax that produces a graph output, in place."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    inputs = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    stripped: list[StrippedExit] = []
    for out in [o.name for o in graph.output]:
        node = next((n for n in graph.node if out in n.output), None)
        if node is None or node.op_type not in NORMALIZERS or not _over_last_axis(node):
            continue
        logits = node.input[0]
        if logits in outputs or logits in inputs:
            raise ModelError(f"exit {out!r} is the {node.op_type} of {logits!r}, which is "
                             "itself a model input or output; make each output one exit's "
                             "logits")
        found = StrippedExit(out, node.op_type, node.name)
        readers = [n for n in graph.node if n is not node and out in n.input]
        if readers:  # others still need the probabilities: keep the node under a new name
            _rename(model, out, f"{out}__probabilities")
        else:
            graph.node.remove(node)
        _rename(model, logits, out)
        stripped.append(found)
    if stripped:
        del graph.value_info[:]  # names moved; shape inference rebuilds them
    return stripped
