"""Which 3-D and 4-D activations the lowering stores channels-last, and which in ONNX order.

A convolutional net's 4-D tensors are NCHW images and its 3-D ones NCL
sequences: TFLite stores them NHWC and (N, 1, L, C), so convolutions, pools
and per-channel ops find their channels last. A transformer's tensors are
token sequences (N, T, D) and attention heads (N, h, T, d): its operators
(MatMul over the last axis, LayerNormalization, Softmax over the last axis)
want them exactly in ONNX order, which is also what TFLite's converter
writes for them. Storing them channels-last would put a TRANSPOSE in front
of every Linear layer.

So every 3-D/4-D activation gets a *layout class*:

- ``spatial`` (channels last): read or written by a convolution, pooling,
  batch norm, resize or any operator this pass does not know;
- ``plain`` (ONNX order; a 3-D tensor is stored (N, 1, T, D)): read or
  written by MatMul, LayerNormalization or a last-axis Softmax.

Elementwise operators (activations, Add/Mul/..., Pad, Concat, kept-dims
reductions) give all their same-rank operands one class, so a residual Add
or a GELU never needs a transpose. Data-movement operators (Reshape,
Transpose, Slice, Split, Gather...) are boundaries: the lowering finds, for
each, the cheapest way between the layouts on its two sides (often none).
Where both kinds of operator meet one class, ``spatial`` wins and the
sequence operators convert their operands themselves. 4-D graph inputs
are images (``spatial``); a 3-D input takes its readers' class, and the
manifest records it as NCL (spatial) or NLC (plain, tokens).
"""

from __future__ import annotations

from collections.abc import Sequence

from eedge.ir.graph import Dim, Graph

SPATIAL, PLAIN, FREE = "spatial", "plain", "free"

SEQUENCE_OPS = frozenset({"MatMul", "LayerNormalization", "Softmax", "LogSoftmax"})
"""Operators whose 3-D/4-D operands want ONNX order (their axis is the last one)."""

ELEMENTWISE_OPS = frozenset({
    "Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Relu", "Clip", "Sigmoid", "Tanh", "Gelu",
    "Erf", "HardSwish", "HardSigmoid", "LeakyRelu", "Elu", "Exp", "Sqrt", "Neg", "Abs",
    "Identity", "Dropout", "Swish", "Pad", "Concat", "Reciprocal", "Cast"})
"""Operators that treat every element alike: their same-rank operands share one class."""

REDUCTIONS = frozenset({"ReduceMean", "ReduceSum", "ReduceMax"})

MOVEMENT_OPS = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice",
                          "Split", "Gather", "Expand"})
"""Boundaries: the lowering converts between whatever layouts their sides have (so do
reductions that drop axes: they map their axes through any layout)."""


class _Classes:
    """Union-find over tensor names with a 'spatial' / 'plain' vote per set."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.votes: dict[str, set[str]] = {}

    def find(self, t: str) -> str:
        self.parent.setdefault(t, t)
        root = t
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[t] != root:
            self.parent[t], t = root, self.parent[t]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.votes.setdefault(ra, set()).update(self.votes.pop(rb, set()))

    def vote(self, t: str, kind: str) -> None:
        self.votes.setdefault(self.find(t), set()).add(kind)

    def kind(self, t: str) -> str:
        votes = self.votes.get(self.find(t), set())
        return PLAIN if votes == {PLAIN} else SPATIAL


def _is_sequence_use(graph: Graph, op: str, tensors: list[str]) -> bool:
    if op in ("Softmax", "LogSoftmax"):
        return True  # any axis: the lowering converts when it is not the last one
    return op != "MatMul" or any(len(graph.tensors[t].shape) >= 3 for t in tensors)


PLAIN_LAYOUTS = {3: (0, 2, 1, 3), 4: (0, 1, 2, 3)}
"""Layouts (see eedge.ops.movement_lowering) of plain tensors with the batch first: ONNX
order; a 3-D (N, T, D) tensor is stored (N, 1, T, D), its view (N, T, 1, D) with the unit
axis moved forward."""


def default_layout(rank: int) -> tuple[int, ...]:
    """The layout of a tensor that is not plain: NHWC for 3-D (as (N, C, 1, L)) and 4-D,
    ONNX order otherwise."""
    return (0, 2, 3, 1) if rank in (3, 4) else tuple(range(rank))


def _view_dims(shape: Sequence[Dim]) -> list[Dim]:
    return [shape[0], shape[1], 1, shape[2]] if len(shape) == 3 else list(shape)


def leading_axis(shape: Sequence[Dim]) -> int:
    """The view axis a lowered tensor must store first: its batch.

    Lowered graphs keep the batch as axis 0 (the reference executor runs
    calibration batches through them, and every byte-moving builtin leaves
    axis 0 alone). Transformers move the batch (torch's attention works on
    (T, N, D) and (3, N, h, T, d) tensors), so the batch is the symbolic
    axis wherever it sits; a fixed-shape tensor (batch 1) leads with a unit
    axis: its ONNX axis 0 when that is 1, else its first unit axis.
    """
    view = _view_dims(shape)
    symbolic = [i for i, d in enumerate(view) if isinstance(d, str)]
    if symbolic:
        return symbolic[0]
    if view[0] == 1:
        return 0
    return next((i for i, d in enumerate(view) if d == 1), 0)


def plain_layout(shape: Sequence[Dim]) -> tuple[int, ...]:
    """ONNX order with the batch (see :func:`leading_axis`) first, then a 3-D view's unit axis."""
    rank = len(shape)
    first = leading_axis(shape)
    order = [first] + ([2] if rank == 3 and first != 2 else [])
    return tuple(order + [a for a in range(len(_view_dims(shape))) if a not in order])


def layout_classes(graph: Graph) -> dict[str, str]:
    """Each 3-D/4-D activation of an ONNX-dialect graph -> ``spatial``, ``plain`` or ``free``.

    ``free`` tensors are touched only by data-movement operators (and are in
    no class with others): the lowering picks their layout to make those free.
    """
    classes = _Classes()

    def spatial_rank(t: str) -> bool:
        return bool(t) and t in graph.tensors and t not in graph.constants and \
            len(graph.tensors[t].shape) in (3, 4)

    for info in graph.inputs:  # images stay NCHW -> NHWC; 3-D inputs follow their readers
        if spatial_rank(info.name) and len(info.shape) == 4:
            classes.vote(info.name, SPATIAL)
    for node in graph.nodes:
        tensors = [t for t in list(node.inputs) + list(node.outputs) if spatial_rank(t)]
        if not tensors:
            continue
        for t in tensors:  # channels-last assumes the batch first; (T, N, D) cannot be NHWC
            if any(isinstance(d, str) for d in graph.tensors[t].shape[1:]):
                classes.vote(t, PLAIN)
        op = node.op_type
        if op in MOVEMENT_OPS or op in REDUCTIONS and not node.attrs.get("keepdims", 1):
            for t in tensors:
                classes.find(t)
            continue
        if op in SEQUENCE_OPS and _is_sequence_use(graph, op, tensors):
            for t in tensors:
                classes.vote(t, PLAIN)
            continue
        if op in ELEMENTWISE_OPS or (op in REDUCTIONS and node.attrs.get("keepdims", 1)):
            by_rank: dict[int, str] = {}
            for t in tensors:
                rank = len(graph.tensors[t].shape)
                if rank in by_rank:
                    classes.union(by_rank[rank], t)
                else:
                    by_rank[rank] = t
                    classes.find(t)
            continue
        for t in tensors:  # convolutions, pools, norms, resize, anything unknown
            classes.vote(t, SPATIAL)
    sizes: dict[str, int] = {}
    for t in classes.parent:
        root = classes.find(t)
        sizes[root] = sizes.get(root, 0) + 1
    result = {}
    for t in classes.parent:
        root = classes.find(t)
        free = not classes.votes.get(root) and sizes[root] == 1
        result[t] = FREE if free else classes.kind(t)
    readers = graph.consumers()
    for info in graph.inputs:  # a sequence only data movement reads (a GRU's time-major
        ops = {graph.nodes[i].op_type for i in readers.get(info.name, [])}  # transpose)
        if result.get(info.name) == FREE and ops and ops <= MOVEMENT_OPS:
            result[info.name] = PLAIN  # is kept in the user's (N, T, D) order
    return result
