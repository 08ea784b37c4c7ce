"""Per-stage host latency: TVM-compiled stages vs ONNX Runtime, for `make bench`.

Both runtimes time the same stages on one thread, batch 1, in cascade order.
Runs alternate (ORT, TVM, ORT, TVM) and each keeps its best p50, so a noisy
moment on the machine penalises neither side alone. TVM is used as shipped
(default Relax pipeline, no auto-tuning).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROUNDS = 2


def tvm_vs_ort(bundles: dict[str, tuple[Path, np.ndarray]], workdir: Path,
               repeats: int = 300) -> dict[str, Any]:
    from eedge.backends.tvm_compiler import compile_bundle
    from eedge.ir.bundle import load_bundle
    from eedge.profiling.drivers import profile_host

    results: dict[str, Any] = {}
    for name, (source, x) in bundles.items():
        copy = workdir / f"tvm-{name}"
        shutil.copytree(source, copy)
        bundle = compile_bundle(load_bundle(copy), "host")
        best: dict[str, list[float]] = {}
        for _ in range(ROUNDS):
            for runtime in ("onnx", "tvm"):
                profile = profile_host(bundle, x[:1], runtime, 1, repeats // 10, repeats,
                                       lambda _m: None)
                p50 = [s.stats["p50"] for s in profile.stages]
                best[runtime] = [min(a, b) for a, b in zip(best.get(runtime, p50), p50)]
        results[name] = {"ort_p50_ms": best["onnx"], "tvm_p50_ms": best["tvm"],
                         "tvm_over_ort": [t / o for t, o in zip(best["tvm"], best["onnx"])],
                         "total_tvm_over_ort": sum(best["tvm"]) / sum(best["onnx"])}
    return results


def show_tvm(results: dict[str, Any], console: Console) -> None:
    table = Table(title="host per-stage p50: TVM (untuned) vs ONNX Runtime, 1 thread, batch 1")
    for column in ("model", "stage", "ORT ms", "TVM ms", "TVM/ORT"):
        table.add_column(column, justify="right")
    for name, r in results.items():
        for i, (o, t, ratio) in enumerate(zip(r["ort_p50_ms"], r["tvm_p50_ms"],
                                              r["tvm_over_ort"])):
            table.add_row(name, f"stage{i}", f"{o:.4f}", f"{t:.4f}", f"{ratio:.2f}")
        table.add_row(name, "all", f"{sum(r['ort_p50_ms']):.4f}", f"{sum(r['tvm_p50_ms']):.4f}",
                      f"{r['total_tvm_over_ort']:.2f}")
    console.print(table)
