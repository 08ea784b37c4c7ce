"""Banded residual joins: a CONV_2D whose only reader is an ADD runs a band of rows at a time.

Why: in a residual block the block input x must stay alive for the skip ADD while
the block's two convolutions run, so with whole tensors the arena holds x, the first
conv's output and the second conv's output at once (ResNet-8's first block: 3 x 16 KiB,
its whole peak). Here the second conv computes a band of output rows into a small
buffer and the ADD combines that band with the same rows of x, writing the sum in
place into x's buffer; the conv's full output never exists, so the peak is x + the
first conv's output + one band.

Why it is exact: a convolution over output rows [r0, r1) is the same convolution with
out_h = r1 - r0 over the input rows its window covers: the input pointer advanced to
the first of those rows (``start``), the top padding reduced to what is left of it
above row 0 (``pad_top'``), and in_h cut to the rows from ``start`` on that the band
reads (rows past the real input stay padding). Only those three fields of the
kernel's params struct (and the two pointers) change, so no kernel knows about bands:
the conv emitter's own struct is copied with them rewritten. The ADD is elementwise on
same-shape operands: rows [r0, r1) of its output depend only on rows [r0, r1) of its
inputs, and it reads element i before writing element i, so it may write over the
skip tensor's band it just read. The skip tensor must not be the conv's input (later
bands still read rows above theirs) and nothing may read it after the ADD.

Which joins are banded: :func:`choose_fusions` starts with every candidate banded
and un-bands each one whose band does not lower the arena (each band costs a conv
call and an ADD call, whose lookup tables are rebuilt per call: eedge_binary_s8 of
512 elements or more tabulates both operands' 256 scaled values first), trying
either conv of a join fed by two.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from eedge.codegen.model_source import CodegenModel
from eedge.ir.graph import Graph, Node

BANDING = True
"""Off: no join is banded (measurements compare the two plans)."""
BAND_ALL = False
"""On: every join that can be banded is, whether or not that lowers the arena (tests of
the band arithmetic on shapes whose peak is elsewhere)."""
BAND_BYTES = 2048
"""Bytes of one band (rounded up to whole rows). Resnet-8's first block: 4 rows of
32 x 16 bytes, 8 bands; measured on qemu-cortex-m4 (DSP), the 7 extra conv and ADD calls
cost 43k instructions (0.2% of the model; most of it the ADD's tables, rebuilt per call)."""
MAX_BANDS = 8
"""At most this many bands (larger bands on tall tensors): the per-call cost stays a
small fixed share of the join while the band stays a fraction of the tensor."""

_IN, _OUT = "EEDGE_BAND_IN", "EEDGE_BAND_OUT"
_GEOMETRY = ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "stride_h", "dil_h",
             "pad_top")


@dataclass(frozen=True)
class Fusion:
    """CONV_2D node ``conv`` run in bands of ``rows`` output rows, each followed by its
    rows of ADD node ``add``, whose output takes over the buffer of ``skip``."""

    conv: int
    add: int
    skip: str
    rows: int
    band: str   # name of the band buffer in the memory plan

    def band_rows(self, out_h: int) -> list[tuple[int, int]]:
        return [(r, min(r + self.rows, out_h)) for r in range(0, out_h, self.rows)]


def _shape(g: Graph, t: str) -> tuple[int, ...] | None:
    info = g.tensors.get(t)
    if info is None or t in g.constants or not all(isinstance(d, int) for d in info.shape):
        return None
    return tuple(int(d) for d in info.shape)


def candidates(model: CodegenModel) -> dict[int, list[Fusion]]:
    """Per ADD node, the fusions its inputs allow (possibly none)."""
    if not BANDING:
        return {}
    g = model.graph
    stage_of = {i: s.index for s in model.stages for i in s.nodes}
    readers = g.consumers()
    pinned = {t for s in model.stages for t in s.outputs} | set(g.exits) | {model.input}
    found: dict[int, list[Fusion]] = {}
    for a, add in enumerate(g.nodes):
        if add.op_type != "ADD" or a not in stage_of or len(add.inputs) != 2:
            continue
        shape = _shape(g, add.outputs[0])
        if (shape is None or len(shape) != 4 or shape[0] != 1
                or any(_shape(g, t) != shape for t in add.inputs)
                or add.inputs[0] == add.inputs[1]):
            continue
        for k, t in enumerate(add.inputs):
            c = g.producer_index(t)
            skip = add.inputs[1 - k]
            if c is None or stage_of.get(c) != stage_of[a] or t in pinned:
                continue
            conv = g.nodes[c]
            if (conv.op_type != "CONV_2D" or readers.get(t) != [a]
                    or skip in g.activation_inputs(conv) or _shape(g, conv.inputs[0]) is None):
                continue
            row_bytes = shape[2] * shape[3]
            rows = max(1, -(-BAND_BYTES // row_bytes), -(-shape[1] // MAX_BANDS))
            if rows >= shape[1]:
                continue
            fusion = Fusion(c, a, skip, rows, f"{t}#band")
            if _conv_template(g, conv, fusion) is not None:
                found.setdefault(a, []).append(fusion)
    return found


def schedule(model: CodegenModel, fusions: Sequence[Fusion]) -> list[list[int | Fusion]]:
    """Per stage, the steps in order: node indices, and each fusion at its ADD's place
    (its conv no longer runs at its own place, so its inputs live until the ADD)."""
    by_add = {f.add: f for f in fusions}
    fused_convs = {f.conv for f in fusions}
    return [[by_add.get(i, i) for i in s.nodes if i not in fused_convs] for s in model.stages]


def step_tensors(g: Graph, item: int | Fusion) -> tuple[list[str], list[str]]:
    """(activations read, tensors written) of one step, as the memory planner sees it."""
    if isinstance(item, Fusion):
        conv, add = g.nodes[item.conv], g.nodes[item.add]
        return g.activation_inputs(conv) + [item.skip], [item.band, add.outputs[0]]
    node = g.nodes[item]
    return g.activation_inputs(node), list(node.outputs)


def band_bytes(g: Graph, fusion: Fusion) -> int:
    _, _, w, c = _shape(g, g.nodes[fusion.add].outputs[0]) or (1, 1, 1, 1)
    return fusion.rows * w * c


def choose_fusions(model: CodegenModel, plan: Callable[[Sequence[Fusion]], Any]) -> Any:
    """The plan of the set of fusions with the smallest arena, and among those the fewest
    bands: every join banded, then each one's options (none, either conv) tried in turn.

    ``plan(fusions)`` returns a MemoryPlan whose ``fusions`` are those it could apply.
    """
    options = candidates(model)
    if not options:
        return plan([])
    chosen: dict[int, Fusion | None] = {a: fs[0] for a, fs in options.items()}
    if BAND_ALL:
        return plan(list(chosen.values()))

    def key(p: Any) -> tuple[int, int]:
        g = model.graph
        calls = sum(len(f.band_rows(int(g.tensors[g.nodes[f.add].outputs[0]].shape[1])))
                    for f in p.fusions)
        return p.arena_bytes, calls

    def evaluate() -> Any:
        return plan([f for f in chosen.values() if f is not None])

    best = evaluate()
    for _ in range(2):
        changed = False
        for a, fs in options.items():
            for option in [None, *fs]:
                if option == chosen[a]:
                    continue
                previous, chosen[a] = chosen[a], option
                trial = evaluate()
                if key(trial) < key(best):
                    best, changed = trial, True
                else:
                    chosen[a] = previous
        if not changed:
            break
    return best


# -- C ------------------------------------------------------------------------------------
@dataclass
class _ConvTemplate:
    declarations: list[str]    # the conv emitter's, the geometry struct excluded
    struct: str                # its params struct declaration (the one with the geometry)
    name: str                  # the struct's identifier
    statement: str             # the call, with _IN and _OUT for the two pointers
    scratch_words: int
    geometry: dict[str, int]


def _conv_template(g: Graph, conv: Node, fusion: Fusion,
                   constant_ref: Callable[[str], str] | None = None) -> _ConvTemplate | None:
    """The conv emitter's output with placeholder pointers, or None when it has not the
    form banding rewrites (one params struct holding the geometry, one call)."""
    from eedge.codegen.emit import EmitContext, emit_node
    from eedge.errors import EedgeError

    def tensor_ref(name: str) -> str:
        if name == conv.inputs[0]:
            return _IN
        if name == conv.outputs[0]:
            return _OUT
        return "EEDGE_BAND_OTHER"

    try:
        emitted = emit_node(EmitContext(g, tensor_ref, constant_ref or (lambda n: n),
                                        f"n{fusion.conv}"), conv)
    except EedgeError:
        return None
    structs = [d for d in emitted.declarations
               if all(re.search(rf"\.{f} = -?\d+\b", d) for f in _GEOMETRY)]
    text = "\n".join(emitted.declarations)
    if (len(structs) != 1 or emitted.statement.count(_IN) != 1
            or emitted.statement.count(_OUT) != 1 or "EEDGE_BAND" in text
            or "EEDGE_BAND_OTHER" in emitted.statement):
        return None
    struct = structs[0]
    m = re.match(r"static const \w+ (\w+) = \{", struct)
    if m is None or len(re.findall(rf"&{m.group(1)}\b", emitted.statement)) != 1:
        return None
    geometry = {f: int(re.search(rf"\.{f} = (-?\d+)\b", struct).group(1))  # type: ignore[union-attr]
                for f in _GEOMETRY}
    out_shape = _shape(g, conv.outputs[0])
    in_shape = _shape(g, conv.inputs[0])
    if (out_shape is None or in_shape is None
            or (geometry["out_h"], geometry["out_w"], geometry["out_c"]) != out_shape[1:]
            or (geometry["in_h"], geometry["in_w"], geometry["in_c"]) != in_shape[1:]):
        return None
    template = _ConvTemplate([d for d in emitted.declarations if d is not struct], struct,
                             m.group(1), emitted.statement, emitted.scratch_words, geometry)
    if any(b[4] < 1 for b in _bands(template.geometry, fusion)):
        return None
    return template


def _bands(geo: dict[str, int], fusion: Fusion) -> list[tuple[int, int, int, int, int]]:
    """Per band: (first output row, rows, first input row, pad_top', in_h')."""
    out = []
    reach = (geo["k_h"] - 1) * geo["dil_h"]
    for r0, r1 in fusion.band_rows(geo["out_h"]):
        first = r0 * geo["stride_h"] - geo["pad_top"]
        last = (r1 - 1) * geo["stride_h"] - geo["pad_top"] + reach
        start = max(first, 0)
        out.append((r0, r1 - r0, start, start - first, min(last + 1, geo["in_h"]) - start))
    return out


def _offset(ref: str, delta: int) -> str:
    return ref if delta == 0 else f"{ref} + {delta}"


def emit_fused(g: Graph, fusion: Fusion, tensor_ref: Callable[[str], str],
               constant_ref: Callable[[str], str],
               timed: Callable[[str, int], str] = lambda call, k: call,
               counted: Callable[[int], str] = lambda k: "",
               labels: tuple[int, int] = (0, 1)) -> Any:
    """The fused conv + ADD as one C block: per band, the conv into the band buffer, then
    the ADD of the band and the skip's rows into the output's rows.

    ``timed(call, k)`` wraps a call for the per-op profile (counter ``labels[0]`` for the
    conv's calls, ``labels[1]`` for the ADD's) and ``counted(k)`` counts one run of each
    after the last band, so their figures stay per inference.
    """
    from eedge.codegen.emit import SCRATCH, Emitted, struct
    from eedge.ops.binary import LUT_MIN_ELEMENTS, OP_CODES, _int_list, _quant_fields

    conv, add = g.nodes[fusion.conv], g.nodes[fusion.add]
    template = _conv_template(g, conv, fusion, constant_ref)
    if template is None:
        raise AssertionError(f"CONV_2D {conv.name!r} cannot be banded")  # candidates() checked
    geo = template.geometry
    in_row = geo["in_w"] * geo["in_c"]
    out_row = geo["out_w"] * geo["out_c"]
    declarations = list(template.declarations)
    conv_structs: dict[tuple[int, int, int], str] = {}
    add_structs: dict[int, str] = {}
    fields = dict(op=OP_CODES["ADD"], **_quant_fields(add, g))
    band = tensor_ref(fusion.band)
    src, out = tensor_ref(conv.inputs[0]), tensor_ref(add.outputs[0])
    skip = tensor_ref(fusion.skip)
    scratch = template.scratch_words
    body = []
    for r0, rows, start, pad, in_h in _bands(geo, fusion):
        shape = (rows, pad, in_h)
        if shape not in conv_structs:
            name = f"{template.name}_b{len(conv_structs)}"
            text = re.sub(rf"\b{template.name}\b", name, template.struct, count=1)
            for f, v in (("out_h", rows), ("pad_top", pad), ("in_h", in_h)):
                text = re.sub(rf"\.{f} = -?\d+\b", f".{f} = {v}", text, count=1)
            declarations.append(text)
            conv_structs[shape] = name
        n = rows * out_row
        if n not in add_structs:
            name = f"n{fusion.add}_params_n{n}"
            lut = n >= LUT_MIN_ELEMENTS
            add_fields = dict(fields, rank=1, dims=_int_list([n, 1, 1, 1, 1, 1]),
                              a_step=_int_list([1, 0, 0, 0, 0, 0]),
                              b_step=_int_list([1, 0, 0, 0, 0, 0]),
                              lut=SCRATCH if lut else "0")
            declarations.append(struct("eedge_binary_bcast_params", name, add_fields))
            add_structs[n] = name
            scratch = max(scratch, 512 if lut else 0)
        call = re.sub(rf"&{template.name}\b", f"&{conv_structs[shape]}", template.statement)
        call = call.replace(_IN, _offset(src, start * in_row)).replace(_OUT, band)
        rows_at = r0 * out_row
        operands = [band if t == conv.outputs[0] else _offset(skip, rows_at) for t in add.inputs]
        adds = (f"eedge_binary_s8(&{add_structs[n]}, {operands[0]}, {operands[1]}, "
                f"{_offset(out, rows_at)})")
        body.append(f"{timed(call, labels[0])}; {timed(adds, labels[1])};")
    tail = " ".join(c for c in (counted(labels[0]), counted(labels[1])) if c)
    statement = "{\n        " + "\n        ".join(body + ([tail] if tail else [])) + "\n    }"
    return Emitted(declarations, statement, scratch)


def describe(g: Graph, fusion: Fusion) -> str:
    out_h = int(g.tensors[g.nodes[fusion.add].outputs[0]].shape[1])
    return (f"in {len(fusion.band_rows(out_h))} bands of {fusion.rows} rows "
            f"({band_bytes(g, fusion)} bytes)")
