"""Build a cascade bundle from independent member models.

The members are merged into one multi-output graph with a shared input and
exported by the ordinary pipeline (:func:`eedge.export.export_graph`): the
partition gives one stage per member (member k's nodes feed only exit k),
int8 quantization covers the whole cascade at once, and the export's own
checks (staged == whole on every format, int8 reference == TFLite Micro)
run as for any model. Before that, the merged model is checked against every
member run by the user's own runtime, so the bundle provably computes the
members the user gave.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eedge.backends.onnx_writer import serialize
from eedge.backends.tflite_writer import graph_to_tflite
from eedge.cascade.lowering import lower_member
from eedge.cascade.members import Member, read_members, run_onnx, run_tflite
from eedge.cascade.merge_graph import merge_graphs
from eedge.cascade.merge_onnx import SHARED_INPUT, merge_onnx
from eedge.errors import ModelError, VerificationError
from eedge.export import (ExportResult, _apply_stripped, _batch_first_handoffs, check_normalized,
                          export_graph)
from eedge.frontends.onnx_frontend import import_onnx
from eedge.ir.graph import Graph
from eedge.passes.cost import total_macs
from eedge.passes.partition import stage_sets
from eedge.verify.equivalence import TOLERANCE

Progress = Callable[[str], None]
CHECK_SAMPLES = 16


def build_cascade(members: Sequence[Any], out: Path | str, *, name: str = "cascade",
                  names: Sequence[str] | None = None, example: np.ndarray | None = None,
                  progress: Progress | None = None, **export_options: Any) -> ExportResult:
    """Write a bundle whose stage k is member k (cheapest first, the last is the fallback).

    ``members`` are paths to ``.onnx`` files (external ``.onnx.data`` is read
    beside them) or ``.tflite`` files, or torch modules (then ``example``, one
    input batch, is needed to export them). ``export_options`` are those of
    :class:`eedge.export.ExportOptions` (``formats``, ``int8``, ``calibration``,
    ``split_after``, ``force``...).
    """
    say = progress or (lambda _msg: None)
    say(f"reading {len(members)} cascade members")
    read = read_members(members, example, names)
    kinds = {"tflite" if m.format == "tflite" else "onnx" for m in read}
    if kinds == {"onnx"}:
        return _build_onnx(read, Path(out), name, say, export_options)
    if kinds == {"tflite"}:
        return _build_tflite(read, Path(out), name, say, export_options)
    say("lowering the ONNX members to TFLite operators (NHWC) to merge them with the .tflite "
        "ones")
    lowered = [m if m.format == "tflite" else lower_member(m) for m in read]
    return _build_tflite(lowered, Path(out), name, say, export_options)


def _build_onnx(members: list[Member], out: Path, name: str, say: Progress,
                options: dict[str, Any]) -> ExportResult:
    say("merging the members into one model with a shared input")
    names = [m.name for m in members]
    merged = merge_onnx([m.onnx_model for m in members], names, name)  # type: ignore[misc]
    merged_bytes = serialize(merged)
    check = _check_members(members, lambda x: run_onnx(merged_bytes, x),
                           _float_inputs(merged_bytes))
    imported = import_onnx(merged, name=name)
    if imported.changed:
        check_normalized(merged_bytes, imported)
    section = _section(members, imported.graph, check)
    graph, twin = _batch_first_handoffs(imported)
    options.setdefault("lowering_graph", twin)
    formats = "torch" if all(m.format == "torch" for m in members) else "onnx"
    return export_graph(graph, serialize(imported.model), formats, _source_sha256(members),
                        out, progress=say, notes=imported.notes,
                        sections={"cascade": section}, **options)


def _build_tflite(members: list[Member], out: Path, name: str, say: Progress,
                  options: dict[str, Any]) -> ExportResult:
    say("merging the .tflite members into one graph with a shared input")
    graph = merge_graphs([m.graph for m in members], [m.name for m in members],  # type: ignore
                         name)
    whole = graph_to_tflite(graph, range(len(graph.nodes)), [SHARED_INPUT], graph.exits,
                            f"eedge cascade {name}")
    info = graph.inputs[0]
    shape = [CHECK_SAMPLES] + [int(d) for d in info.shape[1:]]
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=shape, dtype=np.int8) if info.dtype == "int8" \
        else rng.standard_normal(shape).astype(np.float32)
    check = _check_members(members, lambda v: run_tflite(whole, v, len(members)), x)
    section = _section(members, graph, check)
    options.setdefault("formats", ("tflite",))
    return export_graph(graph, whole, "tflite", _source_sha256(members), out, progress=say,
                        sections={"cascade": section}, **options)


def _float_inputs(model: bytes) -> np.ndarray:
    import onnx

    info = onnx.load_model_from_string(model).graph.input[0]
    dims = [d.dim_value for d in info.type.tensor_type.shape.dim][1:]
    return np.random.default_rng(0).standard_normal([CHECK_SAMPLES] + dims).astype(np.float32)


def _check_members(members: Sequence[Member], merged: Callable[[np.ndarray], list[np.ndarray]],
                   x: np.ndarray) -> dict[str, Any]:
    """Exit k of the merged model must be member k's output by the user's runtime.

    Float members agree within the export's tolerance; int8 members exactly
    (both sides run TFLite Micro on the same bytes).
    """
    got = merged(x)
    worst = 0.0
    for k, member in enumerate(members):
        want = np.asarray(member.reference(x))
        have = np.asarray(got[k])
        if member.stripped is not None:  # the member ends in a Softmax eedge removed
            have = _apply_stripped(member.stripped, have)
        if want.shape != have.shape:
            raise VerificationError(f"the merged cascade's exit {k} has shape {list(have.shape)}"
                                    f", member {member.name} {list(want.shape)}; this is an "
                                    "eedge bug: please report it")
        diff = float(np.max(np.abs(want.astype(np.float64) - have))) if want.size else 0.0
        limit = 0.0 if want.dtype == np.int8 else TOLERANCE
        if not diff <= limit:
            raise VerificationError(f"the merged cascade's exit {k} differs from member "
                                    f"{member.name} by {diff:.3g} (> {limit:g}); this is an "
                                    "eedge bug: please report it")
        worst = max(worst, diff)
    return {"samples": int(len(x)), "max_abs_diff": worst,
            "tolerance": 0.0 if x.dtype == np.int8 else TOLERANCE}


def _section(members: Sequence[Member], graph: Graph, check: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``cascade`` section; checks the members' order and classes too."""
    classes = [int(graph.tensors[e].shape[-1]) for e in graph.exits]
    if len(set(classes)) > 1:
        listed = ", ".join(f"{m.name} {c}" for m, c in zip(members, classes))
        raise ModelError(f"cascade members predict different numbers of classes ({listed}); "
                         "every member must classify into the same classes")
    macs = [total_macs(graph, graph.ancestors([e])) for e in graph.exits]
    for k, cost in enumerate(macs[:-1]):
        if cost > macs[-1]:
            raise ModelError(f"cascade member {members[k].name} ({cost:,} MACs) costs more than "
                             f"the last member {members[-1].name} ({macs[-1]:,} MACs); order the "
                             "members cheapest first, the largest last (it decides what no "
                             "earlier member takes)")
    stage_sets(graph)  # one stage per member: fails here, with the member named, if not
    return {"members": [{"name": m.name, "file": Path(m.source).name, "format": m.format,
                         "sha256": m.sha256, "macs": c, "exit": k}
                        for k, (m, c) in enumerate(zip(members, macs))],
            "input": SHARED_INPUT, "merge_check": check}


def _source_sha256(members: Sequence[Member]) -> str:
    """The bundle's source checksum: sha256 of the members' checksums, in order."""
    return hashlib.sha256("\n".join(m.sha256 for m in members).encode()).hexdigest()
