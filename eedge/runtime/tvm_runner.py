"""A stage compiled by `eedge compile --backend tvm`, run by TVM's Relax VM on the CPU.

Its own module so the TVM call path (the part of a TVM stage's latency that
is Python, not kernels) can evolve without touching the other engines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class TvmRunner:
    """A stage compiled by `eedge compile --backend tvm`, run by TVM's Relax VM on the CPU.

    A stage compiled at a fixed batch (a batch-1 export) checks its input shape, so
    larger batches run row by row, as ONNX Runtime's sessions do.
    """

    def __init__(self, path: Path, dynamic_batch: bool = True) -> None:
        from eedge.backends.tvm_compiler import import_tvm

        tvm = import_tvm()
        self.tvm = tvm
        self.vm = tvm.relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())
        self.dynamic_batch = dynamic_batch

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        out = self.vm["main"](*[self.tvm.runtime.tensor(np.ascontiguousarray(a))
                                for a in arrays])
        items = [out] if hasattr(out, "numpy") else list(out)
        return [item.numpy() for item in items]

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self.dynamic_batch or arrays[0].shape[0] == 1:
            return self._run(arrays)
        per_row = [self._run([a[r:r + 1] for a in arrays]) for r in range(arrays[0].shape[0])]
        return [np.concatenate([row[i] for row in per_row]) for i in range(len(per_row[0]))]
