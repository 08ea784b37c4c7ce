"""A stage compiled by `eedge compile --backend tvm`, run by TVM's Relax VM on the CPU.

Its own module so the TVM call path (the part of a TVM stage's latency that
is Python, not kernels) can evolve without touching the other engines.

Why the call path looks the way it does (measured on the digits demo's first
stage, 1 thread, batch 1; ONNX Runtime's ``session.run`` took 7.5 µs):

- ``tvm.runtime.tensor(a)`` per input plus ``.numpy()`` per output: 33 µs.
- inputs copied into tensors allocated once (``Tensor.copyfrom``): 24 µs.
- inputs written with ``np.copyto`` into numpy *views* of tensors allocated
  once, outputs handed back as zero-copy ``np.from_dlpack`` views: 8.6 µs.

``np.from_dlpack`` on a caller's array is not usable for inputs: TVM refuses
data not aligned to 64 bytes, which numpy does not promise. The VM allocates
fresh output tensors on every call, so a returned view stays valid after the
next call; an output that *is* an input (a pass-through stage) would alias the
reused input buffer, and a constant output would be the VM's own memory, so
such outputs (found on the second call with a signature) are copied.

Threads: kernels tuned by MetaSchedule have parallel loops, which run on TVM's
worker pool, a process-wide pool sized by default to the physical cores
(hyper-threads halved on x86) whatever ONNX Runtime was given. A runner sets
the pool to the cascade's thread count, so `--threads 1` means one thread for
both runtimes (untuned kernels have no parallel loops and use one either way).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np


# TVM's ThreadGroup mode "threads share all listed cores": sets the worker count and
# leaves CPU affinity alone. Mode 1 ("big cores") pins the calling thread to one
# core, which would pin ONNX Runtime and numpy in this process too.
_SHARE_ALL_CORES = -3


def set_tvm_threads(tvm: Any, threads: int) -> int:
    """Size TVM's (process-wide) worker pool to ``threads``; returns the size in use.

    The pool cannot grow past the size it is created with (``TVM_NUM_THREADS``,
    else the physical cores), so before its first use the ceiling is raised to
    the cores this process may run on, unless the user set ``TVM_NUM_THREADS``.
    """
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS)
        cores = list(range(os.cpu_count() or 1))
    os.environ.setdefault("TVM_NUM_THREADS", str(len(cores)))
    tvm.get_global_func("runtime.config_threadpool")(_SHARE_ALL_CORES, int(threads),
                                                      [str(c) for c in cores])
    return int(tvm.get_global_func("runtime.NumThreads")())


class TvmRunner:
    """A stage compiled by `eedge compile --backend tvm`, run by TVM's Relax VM on the CPU.

    A stage compiled at a fixed batch (a batch-1 export) checks its input shape, so
    larger batches run row by row, as ONNX Runtime's sessions do.
    """

    def __init__(self, path: Path, dynamic_batch: bool = True, threads: int = 1) -> None:
        from eedge.backends.tvm_compiler import import_tvm

        tvm = import_tvm()
        self.tvm = tvm
        self.threads = set_tvm_threads(tvm, threads)  # what the pool could give, if fewer
        self.vm = tvm.relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())
        self.main = self.vm["main"]  # looked up once: the lookup costs a few µs per call
        self.dynamic_batch = dynamic_batch
        # input tensors per (shape, dtype) signature, with numpy views of their memory
        self._inputs: dict[tuple[Any, ...], list[Any]] = {}
        self._lock = threading.Lock()  # the reused input buffers belong to one call at a time

    def _buffers(self, arrays: list[np.ndarray]) -> list[Any]:
        """[tensors, their numpy views, outputs to copy (None: unknown), first results]."""
        key = tuple(a.shape for a in arrays)
        found = self._inputs.get(key)
        if found is None:
            tensors = [self.tvm.runtime.empty(a.shape, str(a.dtype), self.tvm.cpu())
                       for a in arrays]
            found = [tensors, [np.from_dlpack(t) for t in tensors], None, None]
            if len(self._inputs) > 16:  # many batch sizes: keep memory bounded
                self._inputs.clear()
            self._inputs[key] = found
        return found

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            found = self._buffers(arrays)
            tensors, views, copy, first = found
            for view, a in zip(views, arrays):
                np.copyto(view, a)
            out = self.main(*tensors)
            items = [out] if isinstance(out, self.tvm.runtime.Tensor) else list(out)
            results = [np.from_dlpack(item) for item in items]
            if copy is None:
                if first is None:  # first call: keep these alive, hand out copies
                    found[3] = results
                    return [r.copy() for r in results]
                # Which outputs are not fresh memory is fixed by the compiled code: an
                # input passed through (it lives in our reused buffer), or a constant
                # the VM returns every time (the first results are still alive, so a
                # fresh output cannot have been given their memory).
                copy = found[2] = [any(np.may_share_memory(r, o) for o in (*views, *first))
                                   for r in results]
                found[3] = None
            if any(copy):
                results = [r.copy() if c else r for r, c in zip(results, copy)]
            return results

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self.dynamic_batch or arrays[0].shape[0] == 1:
            return self._run(arrays)
        per_row = [self._run([a[r:r + 1] for a in arrays]) for r in range(arrays[0].shape[0])]
        return [np.concatenate([row[i] for row in per_row]) for i in range(len(per_row[0]))]


def check_tuned_cpu(manifest: dict[str, Any], bundle_path: Path) -> None:
    """Refuse host libraries compiled for another CPU, before loading them.

    Tuned host libraries are compiled for this machine's CPU (its AVX generation,
    see ``tvm_tuning.tuning_target``; the manifest's ``tvm.host.cpu`` names it).
    Loaded on an older CPU they die with an illegal instruction, which no Python
    handler can turn into an error: a bundle copied to another machine says so
    instead, with what to do.
    """
    tuned_for = ((manifest.get("tvm") or {}).get("host") or {}).get("cpu")
    if not tuned_for:
        return
    from eedge.backends.tvm_tuning import host_cpu
    from eedge.errors import BundleError

    here = host_cpu()
    if here != tuned_for:
        raise BundleError(f"{bundle_path}'s TVM host libraries were compiled for CPU {tuned_for}, "
                          f"this machine's is {here or 'unknown'}: recompile them here with "
                          f"`eedge compile {bundle_path} --backend tvm --target host` (the "
                          "tuning records are reused; add --tune to time them on this CPU), "
                          "or use --runtime onnx")
