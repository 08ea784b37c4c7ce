"""``eedge export``: model in, verified bundle out.

Frontend -> partition -> per-stage ONNX -> manifest -> equivalence check,
all inside a staging directory that only becomes the bundle when every
step succeeded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from eedge import __version__
from eedge.backends.onnx_writer import serialize, subgraph_to_onnx
from eedge.errors import VerificationError
from eedge.frontends.onnx_frontend import onnx_to_graph, read_onnx_file
from eedge.frontends.torch_frontend import torch_outputs, torch_to_onnx
from eedge.ir.bundle import (Bundle, file_entries, load_bundle, sha256_bytes,
                             staging_directory, write_manifest)
from eedge.ir.graph import Dim, Graph
from eedge.passes.cost import parameter_bytes, total_macs
from eedge.passes.partition import Partition, partition
from eedge.verify.equivalence import TOLERANCE, check_staged_equals_whole

if TYPE_CHECKING:
    import torch

MODEL_FILE = "model.onnx"
Progress = Callable[[str], None]


@dataclass
class ExportResult:
    bundle: Bundle
    dropped_nodes: list[str] = field(default_factory=list)


def _tensor_json(graph: Graph, name: str) -> dict[str, Any]:
    return graph.tensors[name].to_json()


def build_manifest(graph: Graph, part: Partition, source_format: str, source_sha256: str
                   ) -> dict[str, Any]:
    """Describe the partitioned model; file checksums are added when written."""
    stages, exits = [], []
    cumulative = 0
    for stage in part.stages:
        macs = total_macs(graph, stage.nodes)
        cumulative += macs
        exit_tensor = graph.exits[stage.exit_index] if stage.exit_index is not None else None
        handoff = sum(graph.tensors[t].bytes_per_sample() for t in stage.outputs
                      if t != exit_tensor)
        stages.append({
            "index": stage.index, "name": stage.name, "side": stage.side,
            "files": {"onnx": f"{stage.name}.onnx"},
            "inputs": [_tensor_json(graph, t) for t in stage.inputs],
            "outputs": [_tensor_json(graph, t) for t in stage.outputs],
            "exit": stage.exit_index, "macs": macs,
            "param_bytes": parameter_bytes(graph, stage.nodes),
            "handoff_bytes_per_sample": handoff, "nodes": len(stage.nodes),
        })
        if stage.exit_index is not None:
            tensor = graph.tensors[exit_tensor]  # type: ignore[index]
            exits.append({"index": stage.exit_index, "stage": stage.index,
                          "tensor": exit_tensor, "num_classes": int(tensor.shape[1]),
                          "cumulative_macs": cumulative,
                          "policy": {"criterion": "max_softmax", "threshold": None}})
    exits.sort(key=lambda e: e["index"])
    inputs = []
    for info in graph.inputs:
        entry = info.to_json()
        if len(info.shape) == 4:
            entry["layout"] = "NCHW"
        inputs.append(entry)
    split = None
    if part.split is not None:
        cut = [_tensor_json(graph, t) for t in part.split.cut_tensors]
        split = {"requested": part.split.requested, "head_stages": part.split.head_stages,
                 "tail_stages": part.split.tail_stages, "cut_tensors": cut,
                 "cut_bytes_per_sample": sum(c["bytes_per_sample"] for c in cut)}
    return {
        "schema_version": 1, "eedge_version": __version__,
        "model": {"name": graph.name, "source_format": source_format,
                  "source_sha256": source_sha256, "opset": graph.opset, "file": MODEL_FILE,
                  "macs": total_macs(graph, range(len(graph.nodes)))},
        "inputs": inputs, "stages": stages, "exits": exits, "split": split,
        "verification": {}, "files": {},
    }


def export_graph(graph: Graph, whole_model: bytes, source_format: str, source_sha256: str,
                 out: Path | str, split_after: str | int | None = None,
                 check_inputs: Sequence[np.ndarray] = (), force: bool = False,
                 progress: Progress | None = None) -> ExportResult:
    """Partition ``graph`` and write a verified bundle at ``out`` atomically."""
    out = Path(out)
    say = progress or (lambda _msg: None)
    say("partitioning")
    part = partition(graph, split_after)
    with staging_directory(out, force) as tmp:
        (tmp / MODEL_FILE).write_bytes(whole_model)
        for stage in part.stages:
            say(f"writing {stage.name}.onnx")
            model = subgraph_to_onnx(graph, stage.nodes, stage.inputs, stage.outputs,
                                     f"{graph.name}_{stage.name}")
            (tmp / f"{stage.name}.onnx").write_bytes(serialize(model))
        manifest = build_manifest(graph, part, source_format, source_sha256)
        names = [MODEL_FILE] + [s["files"]["onnx"] for s in manifest["stages"]]
        manifest["files"] = file_entries(tmp, names)
        write_manifest(tmp, manifest)
        say("verifying staged execution against the whole model")
        report = check_staged_equals_whole(load_bundle(tmp), check_inputs)
        manifest["verification"] = {"onnx": report.to_json()}
        write_manifest(tmp, manifest)
    return ExportResult(bundle=load_bundle(out), dropped_nodes=part.dropped_nodes)


def export_onnx(path: Path | str, out: Path | str, input_shapes: dict[str | None, tuple[Dim, ...]] | None
                = None, **kwargs: Any) -> ExportResult:
    """Export an ONNX file whose outputs are the exits."""
    path = Path(path)
    model = read_onnx_file(path)
    graph = onnx_to_graph(model, input_shapes, name=path.stem)
    raw = path.read_bytes()
    return export_graph(graph, raw, "onnx", sha256_bytes(raw), out, **kwargs)


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
    graph = onnx_to_graph(model, name=name)
    return export_graph(graph, raw, "torch", sha256_bytes(raw), out, progress=progress,
                        **kwargs)


def _check_against_torch(module: "torch.nn.Module", model: onnx.ModelProto,
                         example: np.ndarray) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(serialize(model), providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(example, dtype=np.float32)
    expected = torch_outputs(module, x)
    got = session.run(None, {session.get_inputs()[0].name: x})
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(expected, got))
    if worst > TOLERANCE:
        raise VerificationError(f"the ONNX export differs from the torch module by {worst:.3g} "
                                f"(> {TOLERANCE:g}); the module may use an op the exporter "
                                "translates inexactly")
