"""One object per stage file that runs it: ONNX Runtime, LiteRT, TFLM, or eedge's reference.

Every runner takes the stage's inputs and returns its outputs as lists in
the order the manifest gives, with a leading batch axis of any size; the
cascade never needs to know which engine is underneath.
"""

from __future__ import annotations

import threading
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
    """One ONNX Runtime session, run through I/O binding.

    ``session.run`` builds a feed dict, validates names and allocates every
    output on each call: about 3 us of Python and allocation per call at batch 1,
    as much as a small stage's kernels. Here each input shape gets one binding
    whose input and output buffers are allocated once (shapes from a first plain
    run); a call copies the inputs into the bound buffers and runs. The public
    ``run_with_iobinding`` is called without RunOptions: with them it looks up
    run-config entries on every call (tens of us in onnxruntime 1.32). Bindings are
    per thread (``session.run`` is thread-safe; shared buffers would not be).
    """

    MAX_BINDINGS = 8  # input shapes kept bound (a stream sees batch 1 and a few sizes)

    def __init__(self, path: Path, input_names: list[str], dynamic_batch: bool,
                 threads: int) -> None:
        from eedge.runtime.cascade import make_session

        self.session = make_session(path, threads)
        self.input_names = input_names
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.dynamic_batch = dynamic_batch
        self._local = threading.local()

    def _binding(self, key: Any, arrays: list[np.ndarray]
                 ) -> tuple[Any, list[np.ndarray], list[np.ndarray]]:
        """The binding for these input shapes, made on first use (in this thread)."""
        bindings = getattr(self._local, "bindings", None)
        if bindings is None or len(bindings) >= self.MAX_BINDINGS:
            self._local.bindings = bindings = {}
        inputs = [np.empty(a.shape, a.dtype) for a in arrays]
        outputs = [np.empty(o.shape, o.dtype) for o in
                   self.session.run(self.output_names, dict(zip(self.input_names, arrays)))]
        io = self.session.io_binding()
        for name, buffer in zip(self.input_names, inputs):
            io.bind_cpu_input(name, buffer)
        for name, buffer in zip(self.output_names, outputs):
            io.bind_output(name, "cpu", 0, buffer.dtype, list(buffer.shape),
                           buffer.ctypes.data)
        bindings[key] = binding = (io, inputs, outputs)
        return binding

    def run_borrowed(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Outputs in the runner's own buffers: valid until this thread's next call with
        these shapes. The cascade's hot loop uses this; everything else calls :meth:`run`."""
        if not self.dynamic_batch and arrays[0].shape[0] != 1:
            return self.run(arrays)
        if arrays[0].shape[0] == 0:  # nothing to bind; ONNX Runtime returns empty outputs
            return self.session.run(self.output_names, dict(zip(self.input_names, arrays)))
        key = arrays[0].shape if len(arrays) == 1 else tuple(a.shape for a in arrays)
        binding = getattr(self._local, "bindings", {}).get(key)
        io, inputs, outputs = binding if binding is not None else self._binding(key, arrays)
        for buffer, array in zip(inputs, arrays):
            np.copyto(buffer, array)
        self.session.run_with_iobinding(io)
        return outputs

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Outputs the caller owns (copies of the bound buffers)."""
        if self.dynamic_batch or arrays[0].shape[0] <= 1:
            return [o.copy() for o in self.run_borrowed(arrays)]
        per_row = [[o.copy() for o in self.run_borrowed([a[r:r + 1] for a in arrays])]
                   for r in range(arrays[0].shape[0])]
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

        return TvmRunner(path, dynamic_batch, threads)
    if engine == "tflm":
        from eedge.runtime.interpreters import TFLMModel

        return TFLMModel(path.read_bytes(), n_outputs)
    raise ValueError(f"unknown engine {engine!r}")
