"""Load TFLite interpreters: LiteRT (or tflite_runtime) and TFLite Micro's.

LiteRT is run with its *reference* op resolver when eedge checks
arithmetic: the default XNNPACK and optimized kernels round once instead
of twice and are never bit-exact references. TFLite Micro's Python
interpreter runs TFLM's reference kernels on the host, the same bytes a
Cortex-M produces.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from eedge.errors import BundleError, ToolchainError

MISSING_REFERENCE_OP = "Didn't find op for builtin opcode"


def litert_interpreter(model: bytes, reference: bool = True, threads: int = 1) -> Any:
    """A ready (allocated) LiteRT interpreter; falls back to tflite_runtime."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter, OpResolverType
        except ImportError as exc:
            raise ToolchainError("no TFLite interpreter: pip install ai-edge-litert") from exc
    resolver = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    try:
        with _quiet_native_stderr():
            interpreter = Interpreter(model_content=model, num_threads=threads,
                                      experimental_op_resolver_type=resolver)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        if reference and MISSING_REFERENCE_OP in str(exc):
            # BUILTIN_REF registers no kernel for some builtins (ELU): LiteRT's default one
            # is then its only kernel. Runs that compare LiteRT with itself (staged vs
            # monolithic) stay consistent; TFLite Micro remains the bit-exact oracle.
            return litert_interpreter(model, False, threads)
        raise BundleError(f"LiteRT cannot load the model: {str(exc).splitlines()[0]}") from exc
    return interpreter


def uses_delegate(interpreter: Any) -> bool:
    """Whether LiteRT handed nodes to a delegate (XNNPACK: the only one its default resolver
    applies on a CPU). Read from the execution plan, where delegated partitions are
    DELEGATE nodes: LiteRT logs the delegate's creation only once per process."""
    try:
        return any(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
    except (AttributeError, KeyError, RuntimeError, ValueError):
        return False


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """LiteRT's C++ logs an INFO line per interpreter on fd 2; keep the CLI clean."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            sys.stderr.flush()
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def tflm_interpreter(model: bytes) -> Any:
    """TFLite Micro's Python interpreter (the bit-exact int8 reference)."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as exc:
        raise ToolchainError("tflite-micro is not installed: pip install tflite-micro") from exc
    try:
        return runtime.Interpreter.from_bytes(model, arena_size=tflm_arena_bytes(model))
    except (ValueError, RuntimeError) as exc:
        raise BundleError(f"TFLite Micro cannot load the model: {exc}") from exc


def tflm_arena_bytes(model: bytes) -> int:
    """An arena that holds every activation at once, with room for TFLM's own records.

    tflite-micro's default (ten times the file) is too small for models with few
    weights and large activations (a 32x16x16 ReLU and a small classifier), which
    then fail to allocate although they are valid. Planning is TFLM's job; this
    bound only has to be safe, so it does not share buffers between lifetimes.
    """
    from eedge.tflite_schema import schema

    activations = 0
    try:
        root = schema.Model.GetRootAs(model, 0)
        for g in range(root.SubgraphsLength()):
            graph = root.Subgraphs(g)
            for t in range(graph.TensorsLength()):
                tensor = graph.Tensors(t)
                buffer = root.Buffers(tensor.Buffer()) if tensor.Buffer() > 0 else None
                if buffer is not None and buffer.DataLength() > 0:
                    continue  # a constant: it stays in the flatbuffer
                elements = int(np.prod(tensor.ShapeAsNumpy())) if tensor.ShapeLength() else 1
                activations += (elements * 4 + 16)  # up to 4 bytes per element, aligned
    except Exception:  # a damaged file: TFLM's own loader reports it
        activations = 0
    return max(10 * len(model), 2 * activations + (256 << 10))


def has_reference_kernels(model: bytes) -> bool:
    """Whether LiteRT's BUILTIN_REF resolver has a kernel for every operator of ``model``.

    It has none for ELU, where :func:`litert_interpreter` falls back to the
    default kernels; a check that compares LiteRT with itself must then run
    both sides on the default kernels.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        from tflite_runtime.interpreter import Interpreter, OpResolverType
    try:
        with _quiet_native_stderr():
            Interpreter(model_content=model,
                        experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    except (ValueError, RuntimeError) as exc:
        return MISSING_REFERENCE_OP not in str(exc)
    return True


class LiteRTModel:
    """Run a .tflite file sample by sample (eedge writes batch-1 files).

    Tensor indices are looked up once; a batch-1 call is one ``set_tensor`` per
    input, ``invoke`` and one ``get_tensor`` (already a copy) per output, with no
    per-call lists or concatenation; larger batches fill outputs allocated once
    per call, row by row.
    """

    def __init__(self, model: bytes, reference: bool = True, threads: int = 1) -> None:
        self.interpreter = litert_interpreter(model, reference, threads)
        self.xnnpack = uses_delegate(self.interpreter)
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()
        self._in = [d["index"] for d in self.inputs]
        self._out = [d["index"] for d in self.outputs]
        self._set = self.interpreter.set_tensor
        self._get = self.interpreter.get_tensor
        self._invoke = self.interpreter.invoke

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Inputs and outputs in the subgraph's order, with a batch axis of any size."""
        rows = arrays[0].shape[0]
        if rows == 1:
            for index, array in zip(self._in, arrays):
                self._set(index, array)
            self._invoke()
            return [self._get(index) for index in self._out]
        results = [np.empty((rows, *d["shape"][1:]), d["dtype"]) for d in self.outputs]
        for r in range(rows):
            for index, array in zip(self._in, arrays):
                self._set(index, array[r:r + 1])
            self._invoke()
            for index, out in zip(self._out, results):
                out[r:r + 1] = self._get(index)
        return results

    run_borrowed = run  # outputs are copies already: nothing to borrow


class TFLMModel:
    """Run a .tflite file with TFLite Micro, sample by sample."""

    def __init__(self, model: bytes, n_outputs: int) -> None:
        self.interpreter = tflm_interpreter(model)
        self.n_outputs = n_outputs

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        rows = arrays[0].shape[0]
        results: list[list[np.ndarray]] = [[] for _ in range(self.n_outputs)]
        for r in range(rows):
            for i, array in enumerate(arrays):
                self.interpreter.set_input(np.ascontiguousarray(array[r:r + 1]), i)
            self.interpreter.invoke()
            for k in range(self.n_outputs):
                results[k].append(self.interpreter.get_output(k).copy())
        return [np.concatenate(parts) for parts in results]
