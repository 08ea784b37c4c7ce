"""One object per stage file that runs it: ONNX Runtime, LiteRT, TFLM, or eedge's reference.

Every runner takes the stage's inputs and returns its outputs as lists in
the order the manifest gives, with a leading batch axis of any size; the
cascade never needs to know which engine is underneath.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from eedge.errors import BundleError

# runtime name -> (file format in the bundle, engine). "int8" is LiteRT's fast
# kernels (what a Linux device runs); the reference, TFLM and LiteRT-reference
# engines give the bytes a microcontroller computes (LiteRT's reference
# FULLY_CONNECTED excepted: it requantizes in double precision).
RUNTIMES: dict[str, tuple[str, str]] = {
    "onnx": ("onnx", "ort"),
    "tflite": ("tflite", "litert"),
    "int8": ("tflite_int8", "litert"),
    "int8-litert-ref": ("tflite_int8", "litert-ref"),
    "int8-reference": ("tflite_int8", "reference"),
    "int8-tflm": ("tflite_int8", "tflm"),
    "tvm": ("tvm_host", "tvm"),
}


class StageRunner(Protocol):
    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]: ...


class OnnxRunner:
    def __init__(self, path: Path, input_names: list[str], dynamic_batch: bool,
                 threads: int) -> None:
        from eedge.runtime.cascade import make_session

        self.session = make_session(path, threads)
        self.input_names = input_names
        self.dynamic_batch = dynamic_batch

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        feeds = dict(zip(self.input_names, arrays))
        if self.dynamic_batch:
            return self.session.run(None, feeds)
        rows = arrays[0].shape[0]
        per_row = [self.session.run(None, {k: v[r:r + 1] for k, v in feeds.items()})
                   for r in range(rows)]
        return [np.concatenate([row[i] for row in per_row]) for i in range(len(per_row[0]))]


@dataclass
class ReferenceRunner:
    """eedge's numpy reference executor on a stage's .tflite file."""

    graph: Any
    inputs: list[str]
    outputs: list[str]

    @classmethod
    def from_file(cls, path: Path) -> "ReferenceRunner":
        from eedge.frontends.tflite_frontend import read_tflite_bytes

        graph, outputs = read_tflite_bytes(path.read_bytes(), name=path.stem)
        return cls(graph, [t.name for t in graph.inputs], outputs)

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        from eedge.reference.executor import execute

        env = execute(self.graph, dict(zip(self.inputs, arrays)))
        return [env[name] for name in self.outputs]


def make_runner(engine: str, path: Path, input_names: list[str], n_outputs: int,
                dynamic_batch: bool, threads: int) -> StageRunner:
    if not path.is_file():
        raise BundleError(f"stage file {path} is missing")
    if engine == "ort":
        return OnnxRunner(path, input_names, dynamic_batch, threads)
    if engine in ("litert", "litert-ref"):
        from eedge.runtime.interpreters import LiteRTModel

        return LiteRTModel(path.read_bytes(), reference=engine == "litert-ref", threads=threads)
    if engine == "reference":
        return ReferenceRunner.from_file(path)
    if engine == "tvm":
        from eedge.runtime.tvm_runner import TvmRunner

        return TvmRunner(path, dynamic_batch)
    if engine == "tflm":
        from eedge.runtime.interpreters import TFLMModel

        return TFLMModel(path.read_bytes(), n_outputs)
    raise ValueError(f"unknown engine {engine!r}")
