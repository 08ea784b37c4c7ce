"""Cut a multi-exit graph into stages, and optionally into a head and a tail.

Stages come from the graph itself, never from hand-written lists: stage k
holds the nodes exit k needs that no earlier exit needed. Tensors produced
in one stage and read in a later one are *hand-offs*; with skip connections
a hand-off may jump over stages, so the runtime keeps it resident until its
last reader. A head/tail split is the same operation with one more cut: the
head is everything a chosen tensor needs (plus the exits that hang off that
part of the backbone), the tail is the rest, and the cut tensors are
whatever crosses, which may be more than the named tensor when a residual
connection spans the cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eedge.errors import ModelError
from eedge.ir.graph import Graph
from eedge.passes.cost import total_macs


@dataclass
class Stage:
    """A contiguous piece of the model that runs as one unit."""

    index: int
    nodes: list[int]
    inputs: list[str]
    outputs: list[str]
    exit_index: int | None
    side: str | None = None  # "head" / "tail" when the model is split

    @property
    def name(self) -> str:
        return f"stage{self.index}"


@dataclass
class Split:
    """Where a model is cut between a device (head) and a server (tail)."""

    requested: str
    head_stages: list[int]
    tail_stages: list[int]
    cut_tensors: list[str]


@dataclass
class Partition:
    stages: list[Stage]
    split: Split | None = None
    dropped_nodes: list[str] = field(default_factory=list)

    def exit_stage(self, exit_index: int) -> int:
        for stage in self.stages:
            if stage.exit_index == exit_index:
                return stage.index
        raise KeyError(exit_index)


def _exit_node_sets(graph: Graph) -> list[set[int]]:
    ancestry = [graph.ancestors([name]) for name in graph.exits]
    if len(set(graph.exits)) != len(graph.exits):
        raise ModelError("the same tensor is listed as two exits; each exit must be its "
                         "own output")
    covered: set[int] = set()
    stages: list[set[int]] = []
    for k, needed in enumerate(ancestry):
        own = needed - covered
        if not own:
            raise ModelError(
                f"exit {k} ({graph.exits[k]!r}) needs no computation beyond earlier exits; "
                "list the exits earliest first (outputs in depth order)")
        stages.append(own)
        covered |= needed
    _keep_boundary_transposes(graph, stages)
    final_cost = total_macs(graph, ancestry[-1])
    for k, needed in enumerate(ancestry[:-1]):
        cost = total_macs(graph, needed)
        if cost > final_cost:
            raise ModelError(
                f"exit {k} ({graph.exits[k]!r}) needs more computation ({cost} MACs) than the "
                f"final exit ({final_cost} MACs); list the exits in depth order, earliest "
                "first and the final classifier last")
    return stages


def _keep_boundary_transposes(graph: Graph, stages: list[set[int]]) -> None:
    """A Transpose that makes a hand-off batch first (eedge.passes.batch_first_handoffs)
    runs in the stage of its input's producer, not in the stage that reads its output."""
    from eedge.passes.batch_first_handoffs import BATCH_FIRST_SUFFIX

    stage_of = {n: k for k, nodes in enumerate(stages) for n in nodes}
    for i, node in enumerate(graph.nodes):
        if node.op_type != "Transpose" or not node.name.endswith(BATCH_FIRST_SUFFIX):
            continue
        producer = graph.producer_index(node.inputs[0])
        if producer in stage_of and i in stage_of and stage_of[producer] < stage_of[i]:
            stages[stage_of[i]].discard(i)
            stages[stage_of[producer]].add(i)
            stage_of[i] = stage_of[producer]


def stage_sets(graph: Graph) -> list[set[int]]:
    """The node indices of each exit's stage (before any head/tail split)."""
    return _exit_node_sets(graph)


def _head_nodes(graph: Graph, cut: str) -> set[int]:
    if cut in graph.constants:
        raise ModelError(f"cannot split at {cut!r}: it is a constant, not an activation")
    if graph.producer_index(cut) is None:
        if cut in {t.name for t in graph.inputs}:
            raise ModelError(f"cannot split at the model input {cut!r}: the head would be "
                             "empty; pick a tensor inside the model")
        raise ModelError(f"cannot split at {cut!r}: no such tensor in the model; "
                         "`eedge inspect` lists the stage hand-off tensors")
    head = graph.ancestors([cut])
    backbone = graph.ancestors([graph.exits[-1]])
    for k, name in enumerate(graph.exits):
        needed = graph.ancestors([name])
        if needed & backbone <= head:
            head |= needed
    if backbone <= head:
        raise ModelError(f"splitting at {cut!r} leaves nothing for the tail: the final "
                         "exit is already computed on the head")
    return head


def _stage_io(graph: Graph, stages: list[Stage]) -> None:
    """Fill each stage's inputs (read from elsewhere) and outputs (exit + hand-offs)."""
    stage_of = {node: s.index for s in stages for node in s.nodes}
    readers: dict[str, set[int]] = {}
    for tensor, node_ids in graph.consumers().items():
        readers[tensor] = {stage_of[n] for n in node_ids if n in stage_of}
    for stage in stages:
        produced = {out for n in stage.nodes for out in graph.nodes[n].outputs if out}
        inputs: dict[str, None] = {}
        for n in stage.nodes:
            for t in graph.activation_inputs(graph.nodes[n]):
                if t not in produced:
                    inputs.setdefault(t, None)
        outputs: dict[str, None] = {}
        if stage.exit_index is not None:
            outputs[graph.exits[stage.exit_index]] = None
        for n in stage.nodes:
            for out in graph.nodes[n].outputs:
                if out and any(r > stage.index for r in readers.get(out, ())):
                    outputs.setdefault(out, None)
        stage.inputs = list(inputs)
        stage.outputs = list(outputs)
        _check_batch_first(graph, stage)


def _check_batch_first(graph: Graph, stage: Stage) -> None:
    """Stages hand on only the rows that did not exit: hand-offs must lead with the batch.

    Inside a stage the batch may sit on any axis (attention permutes it,
    recurrent layers are time-major); the runtime selects rows of a hand-off
    along its first axis.
    """
    batch = graph.inputs[0].shape[0] if graph.inputs and graph.inputs[0].shape else None
    if not isinstance(batch, str):
        return
    for name in stage.outputs:
        shape = list(graph.tensors[name].shape) if name in graph.tensors else []
        if shape and shape[0] != batch and batch in shape:
            raise ModelError(
                f"stage {stage.index} hands tensor {name!r} (shape {shape}) to a later stage "
                f"with the batch at axis {shape.index(batch)}; the cascade passes on the rows "
                "that did not exit, so hand-offs must be batch first: build the layers with "
                "batch_first=True (torch's transformer and recurrent layers default to "
                "time-major) or transpose back to (batch, ...) before each exit's block ends")


def partition(graph: Graph, split_after: str | int | None = None) -> Partition:
    """Compute stages (one per exit) and, if asked, a head/tail split.

    ``split_after`` is a tensor name or a stage index (the head then holds
    stages 0..index).
    """
    exit_sets = _exit_node_sets(graph)
    used = set().union(*exit_sets)
    dropped = [graph.nodes[i].name for i in range(len(graph.nodes)) if i not in used]
    pieces: list[tuple[set[int], int | None, str | None]] = [
        (nodes, k, None) for k, nodes in enumerate(exit_sets)]

    split: Split | None = None
    if split_after is not None:
        if isinstance(split_after, int) or str(split_after).isdigit():
            index = int(split_after)
            if not 0 <= index < len(exit_sets) - 1:
                raise ModelError(f"cannot split after stage {index}: the model has "
                                 f"{len(exit_sets)} stages, so pick 0..{len(exit_sets) - 2} "
                                 "(the tail must keep at least one stage)")
            head = set().union(*exit_sets[: index + 1])
        else:
            head = _head_nodes(graph, str(split_after))
        head_pieces, tail_pieces = [], []
        for nodes, k, _ in pieces:
            on_head, on_tail = nodes & head, nodes - head
            if on_head:
                head_pieces.append((on_head, k if not on_tail else None, "head"))
            if on_tail:
                tail_pieces.append((on_tail, k, "tail"))
        pieces = head_pieces + tail_pieces

    stages = [Stage(index=i, nodes=sorted(nodes), inputs=[], outputs=[], exit_index=k,
                    side=side) for i, (nodes, k, side) in enumerate(pieces)]
    _stage_io(graph, stages)
    if split_after is not None:
        head_ids = [s.index for s in stages if s.side == "head"]
        tail_ids = [s.index for s in stages if s.side == "tail"]
        tail_made = {out for s in stages if s.side == "tail" for n in s.nodes
                     for out in graph.nodes[n].outputs}
        cut: dict[str, None] = {}
        for s in stages:
            if s.side == "tail":
                for t in s.inputs:
                    if t not in tail_made:
                        cut.setdefault(t, None)
        split = Split(str(split_after), head_ids, tail_ids, list(cut))
    return Partition(stages=stages, split=split, dropped_nodes=dropped)
