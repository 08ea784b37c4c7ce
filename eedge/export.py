"""``eedge export``: model in, verified bundle out.

Frontend -> partition -> per-stage files (ONNX; TFLite float32 and int8)
-> manifest -> independent checks, all inside a staging directory that
only becomes the bundle when every step succeeded.

TFLite files come from the graph lowered to the TFLite dialect, quantized
*as a whole* before it is cut, and partitioned by the same rule as the
ONNX graph; the two partitions must agree stage by stage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from eedge import __version__
from eedge.backends.onnx_writer import serialize, subgraph_to_onnx
from eedge.backends.tflite_writer import graph_to_tflite
from eedge.errors import InputDataError, ModelError, VerificationError
from eedge.frontends.onnx_exit_softmax import StrippedExit
from eedge.frontends.onnx_frontend import OnnxImport, import_onnx, read_onnx_file
from eedge.frontends.tflite_frontend import load_tflite
from eedge.frontends.torch_frontend import torch_outputs, torch_to_onnx
from eedge.ir.bundle import (MANIFEST_NAME, Bundle, check_replaceable, file_entries,
                             load_bundle, sha256_bytes, staging_directory, write_manifest)
from eedge.ir.graph import Dim, Graph, TensorInfo
from eedge.ir.layout import input_layout, to_channels_last
from eedge.passes.cost import parameter_bytes, total_macs
from eedge.passes.batch_first_handoffs import batch_first_handoffs
from eedge.passes.layout_classes import PLAIN, layout_classes
from eedge.passes.lower_tflite import lower_to_tflite
from eedge.passes.partition import Partition, partition
from eedge.passes.quantize import TensorRange, observe_ranges, quantize_graph
from eedge.verify.equivalence import (TOLERANCE, check_staged_equals_whole, random_inputs,
                                      require_finite)
from eedge.verify.tflite_checks import (check_float_tflite, check_int8_reference_vs_tflm,
                                        check_int8_staged_vs_monolithic)

if TYPE_CHECKING:
    import torch

Progress = Callable[[str], None]
FORMATS = ("onnx", "tflite")
FILE_SUFFIX = {"onnx": ".onnx", "tflite": ".f32.tflite", "tflite_int8": ".int8.tflite"}
VERIFY_SAMPLES = 16


@dataclass
class ExportOptions:
    """What to produce. ``calibration`` holds float inputs in the model's layout."""

    formats: Sequence[str] = ("onnx",)
    int8: bool = False
    calibration: np.ndarray | None = None
    observer: str = "minmax"
    split_after: str | int | None = None
    check_inputs: Sequence[np.ndarray] = ()
    force: bool = False
    ensemble: Sequence[int] | None = None   # exits averaged into the final prediction
    # exits whose last logit is a learned gate (eedge.train.gates); None: the exits whose
    # output name ends in "gated" (e.g. torch.onnx.export(..., output_names=["exit0_gated"]));
    # "all": every exit
    gates: Sequence[int] | str | None = None
    lowering_graph: Graph | None = None     # the graph the TFLite lowering reads, if not it
    sections: dict[str, Any] = field(default_factory=dict)  # more manifest sections (cascade)


@dataclass
class ExportResult:
    bundle: Bundle
    dropped_nodes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how eedge normalized the model


@dataclass
class _Variant:
    """One artifact family (onnx / tflite / tflite_int8): its graph and partition."""

    fmt: str
    graph: Graph
    part: Partition


def _tensor_json(graph: Graph, name: str, layout: bool = False) -> dict[str, Any]:
    entry = graph.tensors[name].to_json()
    tokens = graph.dialect == "onnx" and layout and layout_classes(graph).get(name) == PLAIN
    named = input_layout(len(graph.tensors[name].shape), graph.dialect, tokens) if layout \
        else None
    if named is not None:
        entry["layout"] = named
    return entry


def _check_same_partition(primary: Partition, other: _Variant) -> None:
    a = [(s.exit_index, s.side) for s in primary.stages]
    b = [(s.exit_index, s.side) for s in other.part.stages]
    if a != b:
        raise VerificationError(f"the {other.fmt} graph partitions into {b}, the model into "
                                f"{a}; this is an eedge bug: please report it")


def gated_exits(graph: Graph, gates: Sequence[int] | str | None) -> set[int]:
    """Which exits carry a gate: ``gates`` ("all" or indices) if given, else those named
    ``*gated``. A gated exit's tensor is (batch, C + 1): C class logits, then the gate logit.
    """
    if gates is None:
        return {k for k, name in enumerate(graph.exits) if name.lower().endswith("gated")}
    chosen = set(range(len(graph.exits))) if gates == "all" else set(gates)
    bad = sorted(k for k in chosen if not 0 <= k < len(graph.exits))
    if bad:
        raise InputDataError(f"--gates names exit {bad[0]}, but the model has "
                             f"{len(graph.exits)} exits (0..{len(graph.exits) - 1})")
    for k in sorted(chosen):
        shape = graph.tensors[graph.exits[k]].shape
        if len(shape) != 2 or not isinstance(shape[-1], int) or shape[-1] < 2:
            raise ModelError(f"exit {k} ({graph.exits[k]!r}) has shape {list(shape)}; a gated "
                             "exit outputs (batch, classes + 1): the class logits, then the "
                             "gate logit")
    return chosen


def _gate_entry(variants: Sequence[_Variant], stage_index: int, columns: int
                ) -> dict[str, Any]:
    """The manifest's gate: its column, and the int8 exit tensor's quantization if any."""
    entry: dict[str, Any] = {"column": columns - 1}
    for v in variants:
        if v.fmt == "tflite_int8":
            quant = v.graph.tensors[v.part.stages[stage_index].outputs[0]].quant
            if quant is not None:
                entry["quant"] = {"scale": [float(quant.scale[0])],
                                  "zero_point": [int(quant.zero_point[0])]}
    return entry


def build_manifest(primary: _Variant, variants: Sequence[_Variant], source_format: str,
                   source_sha256: str, model_files: dict[str, str],
                   gates: frozenset[int] | set[int] = frozenset()) -> dict[str, Any]:
    """Describe the partitioned model; file checksums are added when written."""
    graph, part = primary.graph, primary.part
    stages, exits = [], []
    cumulative = 0
    for stage in part.stages:
        macs = total_macs(graph, stage.nodes)
        cumulative += macs
        exit_tensor = graph.exits[stage.exit_index] if stage.exit_index is not None else None
        handoff = sum(graph.tensors[t].bytes_per_sample() for t in stage.outputs
                      if t != exit_tensor)
        io = {}
        files = {}
        for v in variants:
            vs = v.part.stages[stage.index]
            io[v.fmt] = {"inputs": [_tensor_json(v.graph, t) for t in vs.inputs],
                         "outputs": [_tensor_json(v.graph, t) for t in vs.outputs]}
            files[v.fmt] = f"{stage.name}{FILE_SUFFIX[v.fmt]}"
        stages.append({
            "index": stage.index, "name": stage.name, "side": stage.side, "files": files,
            "inputs": [_tensor_json(graph, t) for t in stage.inputs],
            "outputs": [_tensor_json(graph, t) for t in stage.outputs],
            "io": io, "exit": stage.exit_index, "macs": macs,
            "param_bytes": parameter_bytes(graph, stage.nodes),
            "handoff_bytes_per_sample": handoff, "nodes": len(stage.nodes),
        })
        if stage.exit_index is not None:
            tensor = graph.tensors[exit_tensor]  # type: ignore[index]
            columns = int(tensor.shape[-1])
            gated = stage.exit_index in gates
            exits.append({"index": stage.exit_index, "stage": stage.index,
                          "tensor": exit_tensor, "num_classes": columns - int(gated),
                          "cumulative_macs": cumulative,
                          "policy": {"criterion": "max_softmax", "threshold": None}})
            if gated:
                exits[-1]["gate"] = _gate_entry(variants, stage.index, columns)
    exits.sort(key=lambda e: e["index"])
    split = None
    if part.split is not None:
        cut = [_tensor_json(graph, t) for t in part.split.cut_tensors]
        split = {"requested": part.split.requested, "head_stages": part.split.head_stages,
                 "tail_stages": part.split.tail_stages, "cut_tensors": cut,
                 "cut_bytes_per_sample": sum(c["bytes_per_sample"] for c in cut)}
    return {
        "schema_version": 1, "eedge_version": __version__,
        "model": {"name": graph.name, "source_format": source_format,
                  "source_sha256": source_sha256, "opset": graph.opset,
                  "file": model_files.get(primary.fmt, next(iter(model_files.values()))),
                  "files": model_files,
                  "macs": total_macs(graph, range(len(graph.nodes)))},
        "inputs": [_tensor_json(graph, i.name, layout=True) for i in graph.inputs],
        "stages": stages, "exits": exits, "split": split,
        "verification": {}, "files": {},
    }


def _calibration_batches(graph: Graph, inputs_layout: list[dict[str, Any]],
                         calibration: np.ndarray, batch: int = 64) -> list[dict[str, np.ndarray]]:
    """Float calibration data (user layout) -> lowered-graph feeds (NHWC)."""
    if len(graph.inputs) != 1:
        raise InputDataError("calibration data for multi-input models is not supported yet")
    spec = inputs_layout[0]
    data = np.asarray(calibration, dtype=np.float32)
    expected = [int(d) for d in spec["shape"][1:]]
    if data.ndim == len(expected):
        data = data[None]
    if list(data.shape[1:]) != expected:
        raise InputDataError(f"calibration data has shape {list(data.shape)}; the model "
                             f"expects (N, {', '.join(map(str, expected))})")
    if len(data) == 0:
        raise InputDataError("the calibration data is empty")
    data = to_channels_last(data, spec.get("layout"))
    name = graph.inputs[0].name
    return [{name: data[i:i + batch]} for i in range(0, len(data), batch)]


def _quantization_report(graph: Graph, ranges: dict[str, TensorRange], observer: str,
                         samples: int) -> dict[str, Any]:
    tensors = {}
    for name, info in graph.tensors.items():
        r = ranges.get(name)
        tensors[name] = {"min": r.low if r else None, "max": r.high if r else None,
                         "scale": info.quant.scale[0], "zero_point": info.quant.zero_point[0]}
    return {"scheme": "int8 per-tensor activations, per-channel conv weights, int32 bias",
            "observer": observer, "calibration_samples": samples, "tensors": tensors}


def export_graph(graph: Graph, whole_model: bytes, source_format: str, source_sha256: str,
                 out: Path | str, options: ExportOptions | None = None,
                 progress: Progress | None = None, notes: Sequence[str] = (),
                 stripped_exits: Sequence[StrippedExit] = (),
                 **kwargs: Any) -> ExportResult:
    """Partition ``graph`` and write a verified bundle at ``out`` atomically.

    ``notes`` say how the source was normalized on import; they go into the
    manifest and the result so the user learns that the bundle's model
    differs from their file, and why.
    """
    opts = options or ExportOptions(**kwargs)
    out = Path(out)
    say = progress or (lambda _msg: None)
    check_replaceable(out.absolute(), opts.force, MANIFEST_NAME)  # fail before the work
    graph.name = bundle_model_name(graph.name)
    unknown = [f for f in opts.formats if f not in FORMATS]
    if unknown:
        raise InputDataError(f"unknown format {', '.join(unknown)}; choose from "
                             f"{', '.join(FORMATS)}")
    say("partitioning")
    primary = _Variant("onnx" if graph.dialect == "onnx" else
                       ("tflite_int8" if graph.inputs[0].dtype == "int8" or any(
                           t.dtype == "int8" for t in graph.tensors.values()) else "tflite"),
                       graph, partition(graph, opts.split_after))
    if opts.lowering_graph is not None:  # a fixed batch of 1: hand-offs checked on the twin
        partition(opts.lowering_graph, opts.split_after)  # that knows where the batch sits
    gates = gated_exits(graph, opts.gates)
    if gates and opts.ensemble and gates & set(opts.ensemble):
        raise InputDataError("gated exits cannot be ensemble members (an ensemble averages "
                             "class probabilities); drop the gate or the ensemble")
    stripped = {s.exit for s in stripped_exits}
    for k in sorted(gates):
        if graph.exits[k] in stripped:
            raise ModelError(f"gated exit {k} ({graph.exits[k]!r}) ends in a softmax; a gated "
                             "exit must output raw logits (the class logits, then the gate "
                             "logit)")
    variants, quant_report = _variants(primary, opts, say)
    with staging_directory(out, opts.force) as tmp:
        model_files = {}
        for v in variants:
            name = f"model{FILE_SUFFIX[v.fmt]}"
            if v is primary:
                (tmp / name).write_bytes(whole_model)
            else:
                (tmp / name).write_bytes(_whole_file(v))
            model_files[v.fmt] = name
            for stage in v.part.stages:
                say(f"writing {stage.name}{FILE_SUFFIX[v.fmt]}")
                (tmp / f"{stage.name}{FILE_SUFFIX[v.fmt]}").write_bytes(_stage_file(v, stage))
        manifest = build_manifest(primary, variants, source_format, source_sha256, model_files,
                                  gates)
        if notes:
            manifest["model"]["notes"] = list(notes)
        if opts.ensemble:
            manifest["ensemble"] = ensemble_section(list(opts.ensemble), len(manifest["exits"]))
        if quant_report is not None:
            manifest["quantization"] = quant_report
        manifest.update(opts.sections)
        manifest["files"] = file_entries(tmp, [p.name for p in tmp.iterdir()])
        write_manifest(tmp, manifest)
        if any(v.fmt == "tflite_int8" for v in variants):
            manifest["memory"] = _memory_plan(tmp)
            write_manifest(tmp, manifest)
        manifest["verification"] = _verify(load_bundle(tmp), opts, say)
        write_manifest(tmp, manifest)
    return ExportResult(bundle=load_bundle(out), dropped_nodes=primary.part.dropped_nodes,
                        notes=list(notes))


def bundle_model_name(name: str) -> str:
    """The model's name as a bundle may hold it (see the manifest schema).

    Names come from file names, which may hold quotes, backslashes or control
    characters; the name ends up in C string literals, Triton directories and URLs,
    so those characters become ``_`` rather than failing the export at the end.
    """
    cleaned = "".join("_" if (not ch.isprintable() or ch in '"\\/') else ch for ch in name)
    return cleaned[:256] or "model"


def _batch_first_handoffs(imported: OnnxImport) -> tuple[Graph, Graph | None]:
    """The import's graph (and its batch-followed twin) with time-major hand-offs
    transposed batch-first at their stage boundary (eedge.passes.batch_first_handoffs)."""
    twin = imported.lowering_graph
    graph = batch_first_handoffs(imported.graph, twin)
    return graph, (batch_first_handoffs(twin) if twin is not None else None)


def fixed_batch(graph: Graph) -> Graph:
    """``graph`` with its symbolic batch fixed to 1 again (see ``OnnxImport.lowering_graph``)."""
    def fixed(info: TensorInfo) -> TensorInfo:
        return replace(info, shape=tuple(1 if isinstance(d, str) else d for d in info.shape))
    tensors = {name: fixed(info) for name, info in graph.tensors.items()}
    return replace(graph, inputs=[tensors.get(i.name, fixed(i)) for i in graph.inputs],
                   tensors=tensors)


def _variants(primary: _Variant, opts: ExportOptions, say: Progress
              ) -> tuple[list[_Variant], dict[str, Any] | None]:
    graph = primary.graph
    variants: list[_Variant] = []
    if graph.dialect == "onnx":
        if "onnx" in opts.formats:
            variants.append(primary)
        lowered = None
        if "tflite" in opts.formats or opts.int8:
            say("lowering to TFLite operators (NHWC)")
            protected = [opts.split_after] if isinstance(opts.split_after, str) and \
                not opts.split_after.isdigit() else []
            lowered = lower_to_tflite(graph, protected) if opts.lowering_graph is None \
                else fixed_batch(lower_to_tflite(opts.lowering_graph, protected))
    else:
        if "onnx" in opts.formats and tuple(opts.formats) != ("onnx",):
            raise ModelError("a .tflite model cannot be exported to ONNX; use --format tflite")
        lowered = graph
        if primary.fmt == "tflite_int8":
            variants.append(primary)
            return variants, None
    quant_report = None
    if lowered is not None:
        float_variant = _Variant("tflite", lowered, partition(lowered, opts.split_after)) \
            if lowered is not graph else primary
        if "tflite" in opts.formats or graph.dialect != "onnx":
            variants.append(float_variant)
        if opts.int8:
            if opts.calibration is None:
                raise InputDataError("--int8 needs calibration data: pass --calib data.npz "
                                     "(an array x of representative inputs)")
            say(f"calibrating int8 ranges on {len(opts.calibration)} samples ({opts.observer})")
            inputs = [_tensor_json(graph, i.name, layout=True) for i in graph.inputs]
            batches = _calibration_batches(lowered, inputs, opts.calibration)
            ranges = observe_ranges(lowered, batches, opts.observer)
            quantized = quantize_graph(lowered, ranges)
            variants.append(_Variant("tflite_int8", quantized,
                                     partition(quantized, opts.split_after)))
            quant_report = _quantization_report(quantized, ranges, opts.observer,
                                                len(opts.calibration))
    for v in variants:
        _check_same_partition(primary.part, v)
    if not variants:
        raise InputDataError("nothing to export: choose --format onnx and/or tflite")
    return variants, quant_report


def ensemble_section(members: list[int], exits: int) -> dict[str, Any]:
    """Members must be the last exits, in order: the cascade ends with their mean."""
    if len(members) < 2 or members != list(range(exits - len(members), exits)):
        raise InputDataError(f"ensemble members {members} must be at least two exits and the "
                             f"last ones, in order (here {exits - len(members)}..{exits - 1})")
    return {"members": members, "aggregation": "mean_softmax", "monitor": None}


def _memory_plan(bundle_dir: Path) -> dict[str, Any]:
    """The C runtime's arena for the int8 stages (target independent)."""
    from eedge.codegen.byte_chains import fuse_byte_chains
    from eedge.codegen.model_source import load_codegen_model
    from eedge.codegen.project import plan_for

    model = fuse_byte_chains(load_codegen_model(bundle_dir))  # as generate_project plans it
    plan = plan_for(model)
    return {"planner": "greedy by size over tensor lifetimes across all stages; reshape "
                       "aliases its input", "arena_bytes": plan.arena_bytes,
            "offsets": dict(sorted(plan.offsets.items(), key=lambda kv: kv[1]))}


def _stage_file(v: _Variant, stage: Any) -> bytes:
    if v.fmt == "onnx":
        return serialize(subgraph_to_onnx(v.graph, stage.nodes, stage.inputs, stage.outputs,
                                          f"{v.graph.name}_{stage.name}"))
    return graph_to_tflite(v.graph, stage.nodes, stage.inputs, stage.outputs,
                           f"eedge {__version__} {v.graph.name} {stage.name}")


def _whole_file(v: _Variant) -> bytes:
    return graph_to_tflite(v.graph, range(len(v.graph.nodes)), [i.name for i in v.graph.inputs],
                           v.graph.exits, f"eedge {__version__} {v.graph.name}")


def _verify(bundle: Bundle, opts: ExportOptions, say: Progress) -> dict[str, Any]:
    formats = set.intersection(*(set(s["files"]) for s in bundle.stages))
    feeds = random_inputs(bundle.manifest["inputs"], VERIFY_SAMPLES)
    if opts.calibration is not None and bundle.manifest["inputs"][0]["dtype"] != "int8":
        name = bundle.manifest["inputs"][0]["name"]
        calib = np.asarray(opts.calibration, np.float32)[:VERIFY_SAMPLES]
        feeds = {name: np.concatenate([feeds[name], calib.reshape((-1,) + feeds[name].shape[1:])])}
    if bundle.manifest["inputs"][0]["dtype"] == "int8":
        rng = np.random.default_rng(0)
        feeds = {i["name"]: rng.integers(-128, 128, size=[VERIFY_SAMPLES] + [
            int(d) for d in i["shape"][1:]], dtype=np.int8) for i in bundle.manifest["inputs"]}
    report: dict[str, Any] = {}
    if "onnx" in formats:
        say("verifying staged ONNX against the whole model")
        report["onnx"] = check_staged_equals_whole(bundle, opts.check_inputs).to_json()
    if "tflite" in formats:
        say("verifying float TFLite stages")
        report["tflite"] = check_float_tflite(bundle, feeds)
    if "tflite_int8" in formats:
        say("verifying the int8 cascade (staged vs monolithic, reference vs TFLite Micro)")
        report["tflite_int8"] = {
            "staged_vs_monolithic": check_int8_staged_vs_monolithic(bundle, feeds),
            "reference_vs_tflm": check_int8_reference_vs_tflm(bundle, feeds)}
    return report


def export_onnx(path: Path | str, out: Path | str,
                input_shapes: dict[str | None, tuple[Dim, ...]] | None = None,
                progress: Progress | None = None, **kwargs: Any) -> ExportResult:
    """Export an ONNX file whose outputs are the exits.

    The manifest records the sha256 of the user's file; the bundle's
    ``model.onnx`` is the normalized model with its weights embedded, so it
    loads on its own (the user's file may keep them in ``m.onnx.data``).
    """
    path = Path(path)
    imported = import_onnx(read_onnx_file(path), input_shapes, name=path.stem)
    if imported.changed:
        check_normalized(str(path), imported)
    graph, twin = _batch_first_handoffs(imported)
    kwargs.setdefault("lowering_graph", twin)
    return export_graph(graph, serialize(imported.model), "onnx",
                        sha256_bytes(path.read_bytes()), out, progress=progress,
                        notes=imported.notes, stripped_exits=imported.stripped_exits, **kwargs)


def export_tflite(path: Path | str, out: Path | str, exits: Sequence[str] | None = None,
                  progress: Progress | None = None, **kwargs: Any) -> ExportResult:
    """Export a .tflite model (float32 or int8); ``exits`` marks extra early exits."""
    path = Path(path)
    graph, whole = load_tflite(path, exits)   # the reference outputs the exits, in order
    kwargs.setdefault("formats", ("tflite",))
    return export_graph(graph, whole, "tflite", sha256_bytes(path.read_bytes()), out,
                        progress=progress, **kwargs)


def export_torch(module: "torch.nn.Module", example: Any, out: Path | str, name: str = "model",
                 progress: Progress | None = None, **kwargs: Any) -> ExportResult:
    """Export a torch module whose forward returns one logits tensor per exit.

    The exported ONNX is checked against torch itself before partitioning,
    so the bundle's reference (model.onnx) is known to be the user's model.
    """
    say = progress or (lambda _msg: None)
    example = np.asarray(example.detach().cpu().numpy() if hasattr(example, "detach")
                         else example, dtype=np.float32)
    say("exporting the torch module to ONNX (dynamo)")
    model = torch_to_onnx(module, example)
    raw = serialize(model)
    _check_against_torch(module, model, example)
    imported = import_onnx(model, name=name)
    if imported.changed:
        check_normalized(raw, imported)
    graph, twin = _batch_first_handoffs(imported)
    kwargs.setdefault("lowering_graph", twin)
    return export_graph(graph, serialize(imported.model), "torch", sha256_bytes(raw),
                        out, progress=progress, notes=imported.notes,
                        stripped_exits=imported.stripped_exits, **kwargs)


def _check_against_torch(module: "torch.nn.Module", model: onnx.ModelProto,
                         example: np.ndarray) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(serialize(model), providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(example, dtype=np.float32)
    expected = torch_outputs(module, x)
    got = session.run(None, {session.get_inputs()[0].name: x})
    for k, (a, b) in enumerate(zip(expected, got)):
        require_finite(np.asarray(a), f"the torch module's exit {k}")
        require_finite(np.asarray(b), f"the exported ONNX model's exit {k}")
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(expected, got))
    if worst > TOLERANCE:
        raise VerificationError(f"the ONNX export differs from the torch module by {worst:.3g} "
                                f"(> {TOLERANCE:g}); the module may use an op the exporter "
                                "translates inexactly")


def _apply_stripped(op_type: str, logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return log_probs if op_type == "LogSoftmax" else np.exp(log_probs)


def check_normalized(source: str | bytes, imported: OnnxImport) -> None:
    """The normalized model must compute the user's model (ONNX Runtime, random inputs).

    ``source`` is the user's file path (ONNX Runtime reads its external
    data itself) or serialized model. Exits whose Softmax was removed are
    compared after applying it again. Runs at the source's own batch size.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures raise; ORT printing them too makes two lines
    providers = ["CPUExecutionProvider"]
    original = ort.InferenceSession(source, options, providers=providers)
    normalized = ort.InferenceSession(serialize(imported.model), options, providers=providers)
    spec = original.get_inputs()[0]
    info = imported.graph.inputs[0]
    batch = spec.shape[0] if isinstance(spec.shape[0], int) and spec.shape[0] > 0 else 2
    x = np.random.default_rng(0).standard_normal(
        [batch] + [int(d) for d in info.shape[1:]]).astype(info.dtype)
    expected = original.run(None, {spec.name: x})
    got = normalized.run(None, {info.name: x})
    stripped: dict[str, StrippedExit] = {s.exit: s for s in imported.stripped_exits}
    for out, want, have in zip(imported.graph.exits, expected, got):
        if out in stripped:
            have = _apply_stripped(stripped[out].op_type, have)
        worst = float(np.max(np.abs(want - have))) if want.size else 0.0
        if want.shape != have.shape or not worst <= TOLERANCE:
            raise VerificationError(f"eedge's normalized model differs from the source at "
                                    f"exit {out!r} (max |diff| {worst:.3g}); this is an eedge "
                                    "bug: please report it with the model")
