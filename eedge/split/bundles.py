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
        names = [manifest["model"]["file"], *manifest["model"].get("files", {}).values()]
        for stage in keep:
            for fmt, name in list(stage["files"].items()):
                new_name = f"{stage['name']}{Path(name).name[len(Path(name).name.split('.')[0]):]}"
                shutil.copy2(split.path / name, tmp / new_name)
                stage["files"][fmt] = new_name
                names.append(new_name)
        for name in set(manifest["model"].get("files", {}).values()) | {manifest["model"]["file"]}:
            shutil.copy2(split.path / name, tmp / name)
        manifest["files"] = file_entries(tmp, sorted(set(names)))
        write_manifest(tmp, manifest)
    return load_bundle(out)


def export_halves(bundle: Bundle, after: str | int, out: Path, int8: bool = False,
                  calibration: Any = None, force: bool = False) -> tuple[Bundle, Bundle]:
    """Re-export the bundle's model cut after a stage or tensor; write out/head, out/tail."""
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
