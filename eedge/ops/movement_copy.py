"""The one C kernel of the movement family: a strided copy, simplified at generation time.

A transpose, a (strided) slice, one output of a split, one input of a pack:
each copies ``prod(dims)`` bytes where element ``(i0..ik)`` moves from
``sum(i * in_stride)`` to ``sum(i * out_stride)``. The C kernel
(``eedge_strided_copy_s8``) runs a 5-D loop nest with an inner loop that is a
``memcpy`` when both inner strides are 1 and a pointer-stepping byte loop
otherwise. What makes it fast is done here, once, in Python: drop unit
dimensions, merge dimensions that are contiguous in both tensors (a channel
split of NHWC becomes rows of C/2 bytes; an identity transpose becomes one
memcpy), and iterate in the order (the output's or the input's) whose inner
run is longer. ShuffleNet's channel shuffle (H, W, g, C/g) -> (H, W, C/g, g)
runs in the input's order: inner runs of C/g reads with stride 1 and writes
with stride g, instead of g-long runs the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eedge.codegen.emit import EmitContext, Emitted, struct
from eedge.errors import UnsupportedOpError
from eedge.ir.graph import Node

RANK = 5
"""Dimensions of the C kernel's loop nest (TFLM's TRANSPOSE and SLICE go to 5-D)."""


@dataclass(frozen=True)
class Copy:
    """One strided copy: C pointer expressions and per-dimension extent and strides."""

    src: str
    dst: str
    dims: Sequence[int]
    in_strides: Sequence[int]
    out_strides: Sequence[int]


def contiguous_strides(dims: Sequence[int]) -> list[int]:
    """Row-major strides (in elements) of a tensor of ``dims``."""
    strides, step = [], 1
    for d in reversed(list(dims)):
        strides.append(step)
        step *= int(d)
    return strides[::-1]


def _merge(axes: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Drop unit dimensions and merge neighbours contiguous in both tensors."""
    merged: list[tuple[int, int, int]] = []
    for d, si, so in axes:
        if d == 1:
            continue
        if merged:
            pd, psi, pso = merged[-1]
            if psi == si * d and pso == so * d:
                merged[-1] = (pd * d, si, so)
                continue
        merged.append((d, si, so))
    return merged or [(1, 1, 1)]


def _orders(dims: Sequence[int], in_strides: Sequence[int], out_strides: Sequence[int]
            ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    axes = [(int(d), int(a), int(b)) for d, a, b in zip(dims, in_strides, out_strides)]
    return (_merge(sorted(axes, key=lambda t: -abs(t[2]))),
            _merge(sorted(axes, key=lambda t: -abs(t[1]))))


def _padded(loops: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    if len(loops) > RANK:
        raise UnsupportedOpError(f"a copy over {len(loops)} non-mergeable dimensions; the C "
                                 f"runtime moves at most {RANK}-D tensors")
    return [(1, 0, 0)] * (RANK - len(loops)) + loops


def simplify(dims: Sequence[int], in_strides: Sequence[int], out_strides: Sequence[int]
             ) -> list[tuple[int, int, int]]:
    """(extent, in stride, out stride) per loop, outermost first, at most :data:`RANK`."""
    by_output, by_input = _orders(dims, in_strides, out_strides)
    return _padded(by_input if by_input[-1][0] > by_output[-1][0] else by_output)


def interleave2(dims: Sequence[int], in_strides: Sequence[int], out_strides: Sequence[int]
                ) -> list[tuple[int, int, int]] | None:
    """Loops of a copy that interleaves pairs of rows (a0 b0 a1 b1 ...), or None.

    That is ShuffleNet's two-group channel shuffle, (.., 2, n) -> (.., n, 2):
    in output order the last two loops are n elements (in 1, out 2) and 2 rows
    (in gap, out 1). The C kernel ``eedge_interleave2_s8`` moves it four bytes of
    each row at a time; the returned loops hold n in dims[3] and gap in in_strides[4].
    """
    by_output, _ = _orders(dims, in_strides, out_strides)
    if len(by_output) < 2 or len(by_output) > RANK:
        return None
    (n, in_n, out_n), (two, gap, out_two) = by_output[-2], by_output[-1]
    if (in_n, out_n, two, out_two) != (1, 2, 2, 1) or gap <= 0:
        return None
    outer = by_output[:-2]
    return [(1, 0, 0)] * (RANK - 2 - len(outer)) + outer + [(n, 1, 2), (2, gap, 1)]


def emit_copies(ctx: EmitContext, node: Node, copies: Sequence[Copy]) -> Emitted:
    """One kernel call (and parameter struct) per copy: interleave or strided copy."""
    declarations, calls = [], []
    for k, c in enumerate(copies):
        pairs = interleave2(c.dims, c.in_strides, c.out_strides)
        loops = pairs if pairs is not None else simplify(c.dims, c.in_strides, c.out_strides)
        kernel = "eedge_interleave2_s8" if pairs is not None else "eedge_strided_copy_s8"
        name = f"{ctx.ident}_copy{k}"
        fields = {"dims": "{" + ", ".join(str(d) for d, _, _ in loops) + "}",
                  "in_strides": "{" + ", ".join(str(s) for _, s, _ in loops) + "}",
                  "out_strides": "{" + ", ".join(str(s) for _, _, s in loops) + "}"}
        declarations.append(struct("eedge_strided_copy_params", name, fields))
        calls.append(f"{kernel}(&{name}, {c.src}, {c.dst})")
    del node
    return Emitted(declarations, "; ".join(calls))
