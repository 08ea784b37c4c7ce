"""Per-stage host latency: TVM-compiled stages vs ONNX Runtime, for `make bench`.

Both runtimes time the same stages on one thread, batch 1, in cascade order.
Runs alternate (ORT, TVM, ORT, TVM) and each keeps its best p50, so a noisy
moment on the machine penalises neither side alone. TVM is used as shipped
(default Relax pipeline, no auto-tuning) in the first table.

Tuned: the residual 96x96 bundle (int8 stages too) is tuned with `eedge compile
--tune`'s code (TUNE_TRIALS per stage, timed), then ONNX Runtime, TVM untuned,
TVM tuned and int8 LiteRT (XNNPACK, what a Linux board runs) are timed per stage
in interleaved rounds. Tuning takes minutes; EEDGE_BENCH_TVM_DB=DIR re-uses the
database saved in DIR by an earlier run (written there when DIR holds none), and
the results say which happened.

Call overhead per stage: each runtime runs the stage's *null twin*, a model with
the same inputs and outputs (batch 1) that does almost no work, through the
same runner the cascade uses. (ONNX Runtime's profiler cannot split its own
time: with profiling on, its recorded kernel times exceed the unprofiled run.)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROUNDS = 2
TUNE_TRIALS = 48  # per stage: about 2 minutes on a quiet 2-core host, 3 with a busy one
TUNED_ROUNDS = 3
TUNED_RUNTIMES = ("onnx", "tvm-untuned", "tvm-tuned", "int8")
DB_ENV = "EEDGE_BENCH_TVM_DB"


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
                         "total_tvm_over_ort": sum(best["tvm"]) / sum(best["onnx"]),
                         "call_overhead": call_overhead(bundle, x[:1])}
    tuned_dir = workdir / "tvm-tuned"
    tuned_dir.mkdir()
    results["tuned"] = tuned_vs_ort(tuned_dir)
    return results


def tuned_vs_ort(workdir: Path, repeats: int = 300,
                 trials: int = TUNE_TRIALS) -> dict[str, Any]:
    """Residual 96x96 per stage: ORT, TVM untuned, TVM tuned, int8 LiteRT; tuning cost."""
    from latency_bench import residual96

    from eedge.backends.tvm_compiler import compile_bundle
    from eedge.ir.bundle import load_bundle
    from eedge.profiling.drivers import profile_host

    source, x = residual96(workdir)
    untuned_dir, tuned_dir = workdir / "untuned", workdir / "tuned"
    shutil.copytree(source, untuned_dir)
    shutil.copytree(source, tuned_dir)
    untuned = compile_bundle(load_bundle(untuned_dir), "host")
    tuning = _tune_or_reuse(load_bundle(tuned_dir), trials)
    tuned = compile_bundle(load_bundle(tuned_dir), "host")
    bundles = {"onnx": untuned, "tvm-untuned": untuned, "tvm-tuned": tuned, "int8": untuned}
    load = [os.getloadavg()[0]]
    best: dict[str, list[float]] = {}
    for _ in range(TUNED_ROUNDS):
        for name in TUNED_RUNTIMES:
            runtime = "tvm" if name.startswith("tvm") else name
            profile = profile_host(bundles[name], x[:1], runtime, 1, repeats // 10, repeats,
                                   lambda _m: None)
            p50 = [s.stats["p50"] for s in profile.stages]
            best[name] = [min(a, b) for a, b in zip(best.get(name, p50), p50)]
    load.append(os.getloadavg()[0])
    ort = best["onnx"]
    return {"model": "residual96", "threads": 1, "batch": 1, "rounds": TUNED_ROUNDS,
            "p50_ms": best, "tuning": tuning, "load_average_1min": load,
            "tuning_cpu": tuned.manifest["tvm"]["host"]["tuning"].get("cpu"),
            **{f"{name.replace('-', '_')}_over_ort": [v / o for v, o in zip(best[name], ort)]
               for name in TUNED_RUNTIMES[1:]},
            **{f"total_{name.replace('-', '_')}_over_ort": sum(best[name]) / sum(ort)
               for name in TUNED_RUNTIMES[1:]}}


def _tune_or_reuse(bundle: Any, trials: int) -> dict[str, Any]:
    """Tune the bundle for the host, or add the database saved in $EEDGE_BENCH_TVM_DB."""
    from eedge.backends import tvm_tuning
    from eedge.backends.tvm_compiler import resolve_target

    saved = Path(os.environ[DB_ENV]) if os.environ.get(DB_ENV) else None
    info_file = saved / "bench-tuning.json" if saved else None
    if info_file is not None and info_file.is_file():
        info = json.loads(info_file.read_text())
        tvm_tuning.add_database(bundle, "host", saved, int(info["trials"]))
        return {**info, "reused_from": str(saved)}
    started = time.monotonic()
    tuned = tvm_tuning.tune_bundle(bundle, resolve_target("host"), trials, lambda _m: None,
                                   lambda _d, _t, _b: None)
    info = {"trials": tuned.manifest["tvm"]["host"]["tuning"]["trials"],
            "trials_per_stage": trials, "seconds": time.monotonic() - started,
            "tuned_at": time.strftime("%Y-%m-%d %H:%M:%S"), "reused_from": None}
    if saved is not None:
        tvm_tuning.save_database(tuned, "host", saved)
        info_file.write_text(json.dumps({k: v for k, v in info.items() if k != "reused_from"},
                                        indent=2) + "\n")
    return info


def _p50_us(call: Any, runs: int) -> float:
    for _ in range(max(runs // 10, 20)):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def null_twin(stage: dict[str, Any], path: Path) -> Path:
    """An ONNX model with the stage's inputs and outputs (batch 1) and almost no work.

    Each output is its shape filled with the sum of the first input (ReduceSum,
    Expand): what remains of a call is the runtime's per-call cost for this
    signature (feeding inputs, allocating and returning outputs), its overhead.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def dims(t: dict[str, Any]) -> list[int]:
        return [1 if isinstance(d, str) else int(d) for d in t["shape"]]

    inputs = [helper.make_tensor_value_info(t["name"], TensorProto.FLOAT, dims(t))
              for t in stage["inputs"]]
    outputs = [helper.make_tensor_value_info(t["name"], TensorProto.FLOAT, dims(t))
               for t in stage["outputs"]]
    nodes = [helper.make_node("ReduceSum", [stage["inputs"][0]["name"]], ["total"],
                              keepdims=0)]
    inits = []
    for i, t in enumerate(stage["outputs"]):
        inits.append(numpy_helper.from_array(np.array(dims(t), np.int64), f"shape{i}"))
        nodes.append(helper.make_node("Expand", ["total", f"shape{i}"], [t["name"]]))
    graph = helper.make_graph(nodes, "null_twin", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def call_overhead(bundle: Any, x: np.ndarray, runs: int = 3000) -> dict[str, list[float]]:
    """Per stage: each runtime's p50 on the stage's null twin (its call overhead), µs."""
    from eedge.backends.tvm_compiler import compile_onnx, resolve_target
    from eedge.runtime.stage_runners import make_runner

    out: dict[str, list[float]] = {"ort_us": [], "tvm_us": [], "overhead_tvm_over_ort": []}
    x1 = np.ascontiguousarray(x[:1])
    with tempfile.TemporaryDirectory() as tmp:
        for stage in bundle.stages:
            twin = null_twin(stage, Path(tmp) / f"twin{stage['index']}.onnx")
            library = Path(tmp) / f"twin{stage['index']}.so"
            compile_onnx(twin, library, resolve_target("host"))
            names = [t["name"] for t in stage["inputs"]]
            shapes = [[1 if isinstance(d, str) else int(d) for d in t["shape"]]
                      for t in stage["inputs"]]
            inputs = [x1 if s == list(x1.shape) else np.zeros(s, np.float32) for s in shapes]
            ort = make_runner("ort", twin, names, len(stage["outputs"]), True, 1)
            tvm = make_runner("tvm", library, names, len(stage["outputs"]), True, 1)
            ort_us = min(_p50_us(lambda: ort.run(inputs), runs) for _ in range(2))
            tvm_us = min(_p50_us(lambda: tvm.run(inputs), runs) for _ in range(2))
            for key, value in zip(out, (ort_us, tvm_us, tvm_us / ort_us)):
                out[key].append(value)
    return out


def show_tvm(results: dict[str, Any], console: Console) -> None:
    table = Table(title="host per-stage p50: TVM (untuned) vs ONNX Runtime, 1 thread, batch 1")
    for column in ("model", "stage", "ORT ms", "TVM ms", "TVM/ORT"):
        table.add_column(column, justify="right")
    models = {name: r for name, r in results.items() if name != "tuned"}
    for name, r in models.items():
        for i, (o, t, ratio) in enumerate(zip(r["ort_p50_ms"], r["tvm_p50_ms"],
                                              r["tvm_over_ort"])):
            table.add_row(name, f"stage{i}", f"{o:.4f}", f"{t:.4f}", f"{ratio:.2f}")
        table.add_row(name, "all", f"{sum(r['ort_p50_ms']):.4f}", f"{sum(r['tvm_p50_ms']):.4f}",
                      f"{r['total_tvm_over_ort']:.2f}")
    console.print(table)
    overhead = Table(title="per-stage call overhead, µs p50 (each stage's null twin: same "
                           "inputs and outputs, no work)")
    for column in ("model", "stage", "ORT", "TVM", "TVM/ORT"):
        overhead.add_column(column, justify="right")
    for name, r in models.items():
        o = r.get("call_overhead")
        if not o:
            continue
        for i in range(len(o["ort_us"])):
            overhead.add_row(name, f"stage{i}", f"{o['ort_us'][i]:.1f}",
                             f"{o['tvm_us'][i]:.1f}", f"{o['overhead_tvm_over_ort'][i]:.2f}")
    console.print(overhead)
    if "tuned" in results:
        show_tuned(results["tuned"], console)


def show_tuned(r: dict[str, Any], console: Console) -> None:
    tuning = r["tuning"]
    how = (f"database re-used from {tuning['reused_from']} (tuned {tuning['tuned_at']})"
           if tuning.get("reused_from") else "tuned in this run")
    table = Table(title=f"{r['model']} per-stage p50 ms, host, 1 thread, batch 1: "
                        f"TVM tuned with {tuning['trials']} trials in {tuning['seconds']:.0f} s "
                        f"({how}; CPU {r.get('tuning_cpu') or '?'}), load "
                        f"{r['load_average_1min'][0]:.1f}-{r['load_average_1min'][1]:.1f}")
    for column in ("stage", "ORT", "TVM untuned", "TVM tuned", "int8 LiteRT", "untuned/ORT",
                   "tuned/ORT", "int8/ORT"):
        table.add_column(column, justify="right")
    p50 = r["p50_ms"]
    rows = [(f"stage{i}", [p50[k][i] for k in TUNED_RUNTIMES],
             [r[f"{k}_over_ort"][i] for k in ("tvm_untuned", "tvm_tuned", "int8")])
            for i in range(len(p50["onnx"]))]
    rows.append(("all", [sum(p50[k]) for k in TUNED_RUNTIMES],
                 [r[f"total_{k}_over_ort"] for k in ("tvm_untuned", "tvm_tuned", "int8")]))
    for stage, times, ratios in rows:
        table.add_row(stage, *(f"{t:.3f}" for t in times), *(f"{q:.2f}" for q in ratios))
    console.print(table)


if __name__ == "__main__":
    # the tuned table alone: python bench/tvm_bench.py [OUT.json]
    import sys

    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root / "tests"), str(root / "bench")]
    with tempfile.TemporaryDirectory(prefix="eedge-tvm-bench-") as tmp:
        tuned_result = tuned_vs_ort(Path(tmp))
    show_tuned(tuned_result, Console(width=170))
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(json.dumps(tuned_result, indent=2) + "\n")
