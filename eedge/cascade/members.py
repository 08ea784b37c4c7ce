"""Read the members of a cascade: ONNX files, torch modules, ``.tflite`` files.

Each member is one model with one input and one output (its logits). Reading
normalizes nothing: the members are merged as the user gave them, and the
merged graph then goes through the same import as any model. What a member
is kept with is its *reference*: a function computing its output with the
user's own runtime (ONNX Runtime on the user's file, torch, LiteRT/TFLite
Micro), so the merged model can be checked against every member.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from eedge.backends.onnx_writer import serialize
from eedge.errors import ModelError
from eedge.frontends.onnx_frontend import read_onnx_file
from eedge.frontends.torch_frontend import strip_metadata, torch_outputs, torch_to_onnx
from eedge.ir.bundle import sha256_bytes
from eedge.ir.graph import Graph

if TYPE_CHECKING:
    import torch

Reference = Callable[[np.ndarray], np.ndarray]


@dataclass
class Member:
    """One model of the cascade, as read from the user's file or module."""

    name: str                       # for messages and the manifest (file stem or given)
    source: str                     # the user's file, or "<torch module>"
    format: str                     # "onnx", "torch" or "tflite"
    sha256: str                     # of the user's file (ONNX: the .onnx, not its .data)
    reference: Reference            # the member's output on a batch, by the user's runtime
    onnx_model: onnx.ModelProto | None = None  # onnx/torch members: weights embedded
    graph: Graph | None = None      # tflite members (and lowered ONNX ones): tflite dialect
    tflite_bytes: bytes | None = None
    stripped: str | None = None     # the final Softmax/LogSoftmax eedge's import removed


def read_members(specs: Sequence[Any], example: np.ndarray | None = None,
                 names: Sequence[str] | None = None) -> list[Member]:
    """Members from paths (``.onnx``, ``.tflite``) and torch modules, in cascade order.

    ``example`` (one input batch) is needed only for torch modules, which are
    exported with eedge's own torch exporter (dynamo, dynamic batch).
    """
    if len(specs) < 2:
        raise ModelError(f"a cascade needs at least two members, got {len(specs)}; for one "
                         "model use `eedge export`")
    if names is not None and len(names) != len(specs):
        raise ModelError(f"got {len(names)} names for {len(specs)} members; give one each")
    members = [_read(spec, k, example) for k, spec in enumerate(specs)]
    if names is not None:
        for member, name in zip(members, names):
            member.name = name
    from eedge.export import bundle_model_name

    for member in members:  # names go into the manifest, messages and generated C comments
        member.name = bundle_model_name(str(member.name))
    seen: dict[str, int] = {}
    for m in members:  # two members from m.onnx and other/m.onnx: keep names apart
        seen[m.name] = seen.get(m.name, 0) + 1
        if seen[m.name] > 1:
            m.name = f"{m.name}_{seen[m.name] - 1}"
    return members


def _read(spec: Any, k: int, example: np.ndarray | None) -> Member:
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.is_file():
            raise ModelError(f"cascade member {k} ({path}) does not exist; check the path")
        if path.suffix == ".onnx":
            return _onnx_member(path)
        if path.suffix == ".tflite":
            return _tflite_member(path)
        raise ModelError(f"cascade member {k} ({path.name}) is neither .onnx nor .tflite; "
                         "export torch models with torch.onnx.export, or pass the module "
                         "to eedge.cascade.build_cascade")
    if hasattr(spec, "forward") and hasattr(spec, "eval"):
        return _torch_member(spec, k, example)
    raise ModelError(f"cascade member {k} is a {type(spec).__name__}; pass a path to an "
                     ".onnx or .tflite file, or a torch.nn.Module")


def _onnx_member(path: Path) -> Member:
    model = strip_metadata(read_onnx_file(path))
    data = serialize(model)

    def reference(x: np.ndarray) -> np.ndarray:
        return run_onnx(data, x)[0]

    return Member(path.stem, str(path), "onnx", sha256_bytes(path.read_bytes()), reference,
                  onnx_model=model)


def run_onnx(data: bytes, x: np.ndarray) -> list[np.ndarray]:
    """A model's outputs with ONNX Runtime, in steps of its batch when that is fixed."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    spec = session.get_inputs()[0]
    if isinstance(spec.shape[0], int):
        step = spec.shape[0]
        rows = [session.run(None, {spec.name: x[i:i + step]}) for i in range(0, len(x), step)]
        return [np.concatenate([r[j] for r in rows]) for j in range(len(rows[0]))]
    return list(session.run(None, {spec.name: x}))


def _torch_member(module: "torch.nn.Module", k: int, example: np.ndarray | None) -> Member:
    if example is None:
        raise ModelError(f"cascade member {k} is a torch module: pass example= (one input "
                         "batch) so eedge can export it")
    model = torch_to_onnx(module, example)
    data = serialize(model)

    def reference(x: np.ndarray) -> np.ndarray:
        outputs = torch_outputs(module, x)
        if len(outputs) != 1:
            raise ModelError(f"cascade member {k} returns {len(outputs)} outputs; a member "
                             "returns one logits tensor")
        return np.asarray(outputs[0])

    return Member(type(module).__name__, "<torch module>", "torch", sha256_bytes(data),
                  reference, onnx_model=model)


def _tflite_member(path: Path) -> Member:
    from eedge.frontends.tflite_frontend import load_tflite

    graph, whole = load_tflite(path)
    if len(graph.exits) != 1:
        raise ModelError(f"{path.name} has {len(graph.exits)} outputs; a cascade member "
                         "returns one logits tensor")

    def reference(x: np.ndarray) -> np.ndarray:
        return run_tflite(whole, x, 1)[0]

    return Member(path.stem, str(path), "tflite", sha256_bytes(path.read_bytes()), reference,
                  graph=graph, tflite_bytes=whole)


def run_tflite(model: bytes, x: np.ndarray, outputs: int) -> list[np.ndarray]:
    """A .tflite model's outputs on a batch, one row at a time.

    int8 models run on TFLite Micro (the bit-exact reference); float ones on
    LiteRT's reference kernels.
    """
    from eedge.runtime.interpreters import LiteRTModel, TFLMModel

    runner: Any = TFLMModel(model, outputs) if x.dtype == np.int8 else LiteRTModel(model)
    rows = [runner.run([x[i:i + 1]]) for i in range(len(x))]
    return [np.concatenate([r[j] for r in rows]) for j in range(outputs)]
