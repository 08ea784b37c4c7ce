"""Head and tail bundles (and a Triton repository) from a model cut after a stage.

Both halves are ordinary bundles, so every eedge command works on them. The
split section records the role: a head's last exit is not final (samples it
does not take go to the server, with the cut tensors), and a tail's inputs are
the cut tensors, not the model's input.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import InputDataError
from eedge.export import export_onnx
from eedge.ir.bundle import Bundle, file_entries, load_bundle, staging_directory, write_manifest

FORMATS_ORDER = ("onnx", "tflite", "tflite_int8")


def _subset(split: Bundle, stage_ids: list[int], role: str, out: Path, force: bool) -> Bundle:
    manifest = json.loads(json.dumps(split.manifest))
    head_exits = sum(1 for e in manifest["exits"] if e["stage"] in manifest["split"]["head_stages"])
    old = manifest["stages"]
    keep = [old[i] for i in stage_ids]
    remap = {s["index"]: new for new, s in enumerate(keep)}
    exits = [e for e in manifest["exits"] if e["stage"] in remap]
    exit_remap = {e["index"]: new for new, e in enumerate(exits)}
    for stage in keep:
        stage["index"] = remap[stage["index"]]
        stage["name"] = f"stage{stage['index']}"
        stage["exit"] = exit_remap.get(stage["exit"]) if stage["exit"] is not None else None
    for e in exits:
        e["stage"] = remap[e["stage"]]
        e["index"] = exit_remap[e["index"]]
    cut = manifest["split"]["cut_tensors"]
    manifest["stages"], manifest["exits"] = keep, exits
    manifest["split"] = {**manifest["split"], "role": role, "head_exits": head_exits}
    if role == "tail":
        manifest["inputs"] = cut
    manifest.pop("memory", None)
    manifest.pop("calibration", None)
    with staging_directory(out, force) as tmp:
        whole = {manifest["model"]["file"], *manifest["model"].get("files", {}).values()}
        names = list(whole)
        for stage in keep:
            for fmt, name in list(stage["files"].items()):
                new_name = stage["name"] + name[name.index("."):]  # stage7.f32.tflite -> stage0…
                shutil.copy2(split.path / name, tmp / new_name)
                stage["files"][fmt] = new_name
                names.append(new_name)
        for name in whole:  # the whole model stays as the reference of both halves
            shutil.copy2(split.path / name, tmp / name)
        manifest["files"] = file_entries(tmp, sorted(set(names)))
        write_manifest(tmp, manifest)
    return load_bundle(out)


def stage_cut(bundle: Bundle, after: str | int) -> dict[str, Any]:
    """The split section of ``bundle`` cut at one of its own stage boundaries.

    ``after`` is a stage index, or the tensor the bundle was exported with
    ``--split-after`` (its recorded cut). The stages stay as they are, int8 files
    included, so head and tail keep the whole-graph quantization: every hand-off
    tensor has the one scale/zero point its producer and consumer share.
    """
    stages, recorded = bundle.stages, bundle.manifest.get("split")
    if recorded and str(after) == str(recorded.get("requested")):
        return {k: recorded[k] for k in ("requested", "head_stages", "tail_stages",
                                         "cut_tensors", "cut_bytes_per_sample")}
    if not (isinstance(after, int) or str(after).isdigit()):
        for index in range(len(stages) - 1):  # a tensor that is a stage boundary's cut
            boundary = stage_cut(bundle, index)
            if [t["name"] for t in boundary["cut_tensors"]] == [str(after)]:
                return {**boundary, "requested": str(after)}
        hint = (f" (it was cut at {recorded['requested']!r})" if recorded else "")
        raise InputDataError(
            f"cannot cut the int8 bundle at tensor {after!r} without re-quantizing it{hint}: "
            "re-export it with `eedge export MODEL --int8 --calib DATA --split-after "
            f"{after}`, or cut after a stage index")
    index = int(after)
    if not 0 <= index < len(stages) - 1:
        raise InputDataError(f"cannot split after stage {index}: the bundle has {len(stages)} "
                             f"stages, so pick 0..{len(stages) - 2}")
    head, tail = list(range(index + 1)), list(range(index + 1, len(stages)))
    made = {t["name"] for i in tail for t in stages[i]["outputs"]}
    cut: dict[str, dict[str, Any]] = {}
    for i in tail:
        for t in stages[i]["inputs"]:
            if t["name"] not in made:
                cut.setdefault(t["name"], t)
    return {"requested": str(index), "head_stages": head, "tail_stages": tail,
            "cut_tensors": list(cut.values()),
            "cut_bytes_per_sample": sum(t["bytes_per_sample"] for t in cut.values())}


def export_int8_halves(bundle: Bundle, after: str | int, out: Path,
                       force: bool = False) -> tuple[Bundle, Bundle]:
    """Head and tail of an int8 bundle without re-exporting: its stages (float and int8
    files, thresholds) are split at a stage boundary, so the int8 head + tail compute
    exactly the unsplit int8 cascade."""
    out.mkdir(parents=True, exist_ok=True)
    split = Bundle(path=bundle.path, manifest={**bundle.manifest,
                                               "split": stage_cut(bundle, after)})
    info = split.manifest["split"]
    head = _subset(split, info["head_stages"], "head", out / "head", force)
    tail = _subset(split, info["tail_stages"], "tail", out / "tail", force)
    return head, tail


def export_halves(bundle: Bundle, after: str | int, out: Path, int8: bool = False,
                  calibration: Any = None, force: bool = False) -> tuple[Bundle, Bundle]:
    """Re-export the bundle's model cut after a stage or tensor; write out/head, out/tail.

    A bundle with int8 stages is split as it is (`export_int8_halves`) unless new
    ``calibration`` data is given; its int8 stages stay in both halves.
    """
    if bundle.has_int8_stages and calibration is None:
        return export_int8_halves(bundle, after, out, force)
    if "onnx" not in bundle.manifest["model"].get("files", {}):
        raise InputDataError("split export needs the ONNX model in the bundle (export it from "
                             "ONNX or torch)")
    out.mkdir(parents=True, exist_ok=True)
    thresholds = [e["policy"] for e in bundle.exits]
    formats = ("onnx", "tflite") if any("tflite" in s["files"] for s in bundle.stages) \
        else ("onnx",)
    work = out / ".split-work"
    try:
        split = export_onnx(bundle.file(bundle.manifest["model"]["files"]["onnx"]), work,
                            split_after=after, formats=formats, int8=int8,
                            calibration=calibration, force=True).bundle
        policies = {e["tensor"]: p for e, p in zip(bundle.exits, thresholds)}

        def keep_policies(manifest: dict[str, Any]) -> None:
            for e in manifest["exits"]:
                e["policy"] = policies.get(e["tensor"], e["policy"])

        from eedge.ir.bundle import update_manifest

        split = update_manifest(split, keep_policies)
        info = split.manifest["split"]
        head = _subset(split, info["head_stages"], "head", out / "head", force)
        tail = _subset(split, info["tail_stages"], "tail", out / "tail", force)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return head, tail


def export_whole_side(bundle: Bundle, side: str, out: Path, force: bool = False) -> Bundle:
    """The two cuts that split nothing, so `split plan`'s every answer can be exported.

    ``server``: ``out/tail`` is the whole model as a tail bundle whose inputs are
    the model's (the device sends its input); there is no head. ``device``:
    ``out/head`` is the bundle itself (its final exit decides); there is no tail.
    """
    out.mkdir(parents=True, exist_ok=True)
    if side == "device":
        manifest = json.loads(json.dumps(bundle.manifest))
        with staging_directory(out / "head", force) as tmp:
            for name in manifest["files"]:
                shutil.copy2(bundle.path / name, tmp / name)
            write_manifest(tmp, manifest)
        return load_bundle(out / "head")
    if side != "server":
        raise InputDataError(f"unknown whole-model side {side!r}: server or device")
    inputs = bundle.manifest["inputs"]
    split = {"requested": side, "head_stages": [],
             "tail_stages": [s["index"] for s in bundle.stages], "cut_tensors": inputs,
             "cut_bytes_per_sample": sum(t["bytes_per_sample"] for t in inputs)}
    whole = Bundle(path=bundle.path, manifest={**bundle.manifest, "split": split})
    return _subset(whole, split["tail_stages"], "tail", out / "tail", force)


TRITON_TYPES = {"float32": "TYPE_FP32", "int8": "TYPE_INT8"}


def tail_onnx(tail: Bundle) -> bytes:
    """The tail's ONNX stages merged into one model (inputs: cut tensors; outputs: exits)."""
    import onnx
    from onnx import helper

    nodes, initializers, value_info = [], {}, {}
    for stage in tail.stages:
        model = onnx.load(str(tail.file(stage["files"]["onnx"])))
        nodes.extend(model.graph.node)
        for init in model.graph.initializer:
            initializers.setdefault(init.name, init)
        for v in list(model.graph.value_info) + list(model.graph.output):
            value_info.setdefault(v.name, v)
        opset = model.opset_import
        ir_version = model.ir_version
    inputs = [helper.make_tensor_value_info(t["name"], helper.np_dtype_to_tensor_dtype(
        np.dtype(t["dtype"])), list(t["shape"])) for t in tail.manifest["inputs"]]
    outputs = [value_info[e["tensor"]] for e in tail.exits]
    graph = helper.make_graph(nodes, "tail", inputs, outputs, list(initializers.values()),
                              value_info=[v for n, v in value_info.items()
                                          if n not in {o.name for o in outputs}])
    merged = helper.make_model(graph, opset_imports=list(opset), producer_name="eedge")
    merged.ir_version = ir_version
    onnx.checker.check_model(merged, full_check=True)
    return merged.SerializeToString(deterministic=True)


def triton_config(tail: Bundle, name: str, max_batch: int = 64,
                  max_queue_delay_us: int = 500) -> str:
    def tensor(spec: dict[str, Any]) -> str:
        dims = ", ".join(str(int(d)) for d in spec["shape"][1:])
        return (f'  {{\n    name: "{spec["name"]}"\n    data_type: '
                f'{TRITON_TYPES[spec["dtype"]]}\n    dims: [ {dims} ]\n  }}')
    outputs = [{"name": e["tensor"], "dtype": "float32",  # a learned gate is one more column
                "shape": ["N", e["num_classes"] + (1 if e.get("gate") else 0)]}
               for e in tail.exits]
    return (f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch}\n'
            f'input [\n{",".join(tensor(t) for t in tail.manifest["inputs"])}\n]\n'
            f'output [\n{",".join(tensor(t) for t in outputs)}\n]\n'
            f'dynamic_batching {{\n  max_queue_delay_microseconds: {max_queue_delay_us}\n}}\n'
            'instance_group [\n  {\n    kind: KIND_CPU\n    count: 1\n  }\n]\n')


def _triton_model_config() -> Any:
    """tritonclient's ModelConfig module, loaded on its own: importing the
    ``tritonclient.grpc`` package also registers Triton's gRPC service protos, whose
    ``inference.*`` names clash with KServe's in one process (``eedge serve`` and this
    check then could not share a process); model_config.proto alone does not clash."""
    import importlib.util
    import sys

    name = "eedge_triton_model_config_pb2"
    if name in sys.modules:
        return sys.modules[name]
    import tritonclient

    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def validate_triton_config(text: str) -> Any:
    """Parse against Triton's ModelConfig protobuf (tritonclient); errors name line:column."""
    try:
        from google.protobuf import text_format
        model_config_pb2 = _triton_model_config()
    except (ImportError, OSError) as exc:
        raise InputDataError("validating a Triton config needs tritonclient[grpc] (pip "
                             "install 'eedge[split]')") from exc
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise InputDataError(f"invalid Triton config.pbtxt: {exc}") from exc


def export_triton(tail: Bundle, repo: Path, name: str) -> Path:
    """REPO/name/config.pbtxt and REPO/name/1/model.onnx for Triton's ONNX Runtime backend."""
    config = triton_config(tail, name)
    validate_triton_config(config)
    model_dir = repo / name
    with staging_directory(model_dir, force=True, marker="config.pbtxt") as tmp:
        (tmp / "1").mkdir()
        (tmp / "1" / "model.onnx").write_bytes(tail_onnx(tail))
        (tmp / "config.pbtxt").write_text(config)
    return model_dir
