"""`make bench`: eedge's generated C runtime measured on QEMU Cortex-M4, side by side.

Instructions come from SysTick under `-icount shift=0` (one tick per 40 guest
instructions on mps2-an386, so figures are exact to +-40 per stage and
repeatable). Ratios are taken within this run (portable vs DSP kernels) or
against TFLite Micro's figures recorded the same way in ../shared/baselines.
Writes bench/results.json and prints tables.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from eedge.codegen.device_run import run_on_target  # noqa: E402
from eedge.codegen.model_source import CodegenModel, load_codegen_model  # noqa: E402
from eedge.passes.cost import total_macs  # noqa: E402
from eedge.targets import load_target  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from qute_bench import qute_checks, show_qute  # noqa: E402
from gates_bench import gates_bench, show_gates  # noqa: E402
from cascade_bench import cascade_bench, show_cascade  # noqa: E402
from tvm_bench import show_tvm, tvm_vs_ort  # noqa: E402
from architectures_bench import architectures_bench, show_architectures  # noqa: E402
from sequence_bench import sequence_bench, show_sequence  # noqa: E402
from mlperf_bench import mlperf_bench, show_mlperf  # noqa: E402
from serve_bench import serve_bench, show_serve_bench  # noqa: E402
from latency_bench import latency_bench, show_latency  # noqa: E402

TARGET = "qemu-cortex-m4"
console = Console(width=170)


def tflm_python_arena(model_bytes: bytes, input_shape: list[int]) -> int | None:
    """Arena total that tflite-micro's recording allocator prints (host, 64-bit)."""
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model_bytes)
    interpreter.set_input(np.zeros(input_shape, np.int8), 0)
    interpreter.invoke()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            interpreter.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    for line in text.splitlines():
        if "Arena allocation total" in line:
            return int(line.split("total")[1].split()[0])
    return None


def measure(model: CodegenModel, x: np.ndarray) -> dict[str, Any]:
    """Every stage (no early exit) with portable and DSP kernels."""
    model.thresholds = [None] * len(model.thresholds)
    result: dict[str, Any] = {"stage_macs": [total_macs(model.graph, s.nodes)
                                             for s in model.stages]}
    for dsp in (False, True):
        run = run_on_target(model, load_target(TARGET), x, dsp=dsp)
        key = "dsp" if dsp else "portable"
        sample = run.run.samples[0]
        per_tick = run.instructions_per_tick or 1
        result[f"stage_instructions_{key}"] = [t * per_tick for t in sample.stage_ticks]
        result[f"instructions_{key}"] = sum(result[f"stage_instructions_{key}"])
        summary = run.summary()
        result.update(arena_bytes=summary["arena_bytes"], weight_bytes=summary["weight_bytes"],
                      stack_bytes=summary["stack_used_bytes"], ram_bytes=summary["ram_bytes"])
        result[f"code_bytes_{key}"] = summary["code_bytes"]
        result["quant_param_bytes"] = summary["quant_param_bytes"]
        result[f"outputs_{key}"] = sample.stage_outputs[-1][0].tobytes().hex()
    result["macs"] = sum(result["stage_macs"])
    result["dsp_over_portable"] = result["instructions_dsp"] / result["instructions_portable"]
    result["instructions_per_mac_dsp"] = result["instructions_dsp"] / max(result["macs"], 1)
    return result


def zoo_bundles(workdir: Path) -> dict[str, Path]:
    """The demo model (trained) and two more architectures, exported to int8 bundles."""
    import onnx
    from zoo import build_torch, example_input

    from eedge.examples.demo import run_demo
    from eedge.export import export_onnx
    from eedge.frontends.torch_frontend import torch_to_onnx

    bundles = {}
    run_demo(workdir / "demo", epochs=30, firmware_target=None)
    bundles["digits-demo"] = workdir / "demo" / "bundle"
    for name in ("residual", "depthwise"):
        source = workdir / f"{name}.onnx"
        onnx.save(torch_to_onnx(build_torch(name), example_input()), source)
        export_onnx(source, workdir / name, int8=True, calibration=example_input(seed=1, batch=64))
        bundles[name] = workdir / name
    return bundles


def staged_vs_monolithic(bundle_dir: Path, x: np.ndarray, repeats: int) -> dict[str, float]:
    """Sum of per-stage p50 (exits off) against one ONNX Runtime session of the whole model."""
    from eedge.ir.bundle import load_bundle
    from eedge.profiling.drivers import profile_host
    from eedge.profiling.stats import summarize
    from eedge.runtime.cascade import make_session

    bundle = load_bundle(bundle_dir)
    host = profile_host(bundle, x[:1], "onnx", 1, repeats // 10, repeats, lambda _m: None)
    staged = sum(s.value for s in host.stages)
    whole = make_session(bundle.file("model.onnx"), 1)
    feed = {bundle.manifest["inputs"][0]["name"]: x[:1]}
    for _ in range(repeats // 10):
        whole.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        whole.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    monolithic = summarize(times)["p50"]
    return {"staged_sum_p50_ms": staged, "monolithic_p50_ms": monolithic,
            "staged_over_monolithic": staged / monolithic}


def medium_bundle(workdir: Path) -> tuple[Path, np.ndarray]:
    """The residual test architecture at 96x96: enough work per stage to time it."""
    from zoo import build_torch

    from eedge.export import export_torch

    x = np.random.default_rng(0).standard_normal((2, 3, 96, 96)).astype(np.float32)
    export_torch(build_torch("residual"), x, workdir / "residual96", name="residual96")
    return workdir / "residual96", x


def profiler_checks(bundle_dir: Path, test_data: Path) -> dict[str, Any]:
    """Staged vs monolithic on the host, and predicted vs measured on QEMU (the host's
    predicted vs measured cascade latency is latency_bench's)."""
    from eedge.ir.bundle import load_bundle
    from eedge.profiling.drivers import profile_qemu
    from eedge.profiling.stats import expected_latency
    from eedge.runtime.cascade import Cascade

    bundle = load_bundle(bundle_dir)
    with np.load(test_data) as archive:
        x = archive["x"]
    quiet = lambda _m: None  # noqa: E731
    exit_stages = [e["stage"] for e in bundle.exits]
    small = staged_vs_monolithic(bundle_dir, x, 2000)
    medium_dir, medium_x = medium_bundle(bundle_dir.parent.parent)
    medium = staged_vs_monolithic(medium_dir, medium_x, 300)
    qemu = profile_qemu(bundle, load_target(TARGET), x[:1], quiet)
    int8_rates = Cascade(bundle, runtime="int8-reference").infer(x).exit_index
    q_rates = [float(np.mean(int8_rates == k)) for k in range(len(bundle.exits))]
    q_predicted = expected_latency([s.value for s in qemu.stages], q_rates,
                                   exit_stages)["expected"]
    device = run_on_target(bundle_dir, load_target(TARGET), x)
    per_tick = device.instructions_per_tick or 1
    q_measured = float(np.mean([sum(s.stage_ticks) * per_tick for s in device.run.samples]))
    return {
        "host_staged_vs_monolithic_demo": small, "host_staged_vs_monolithic_residual96": medium,
        "qemu_exit_rates": q_rates, "qemu_predicted_instructions": q_predicted,
        "qemu_measured_mean_instructions": q_measured,
        "qemu_predicted_over_measured": q_predicted / q_measured,
        "qemu_stage_instructions": [s.value for s in qemu.stages],
        "qemu_repeat_identical": [s.value for s in qemu.stages] ==
        [s.value for s in profile_qemu(bundle, load_target(TARGET), x[:1], quiet).stages]}


def calibration_checks(bundle_dir: Path) -> dict[str, Any]:
    """Demo at --max-accuracy-drop 0.01, per criterion: test accuracy and MACs saved."""
    from eedge.examples.digits import load_digits_splits
    from eedge.ir.bundle import load_bundle
    from eedge.policies.calibrate import calibrate
    from eedge.runtime.cascade import Cascade

    bundle = load_bundle(bundle_dir)
    data = load_digits_splits(seed=0)
    costs = [float(e["cumulative_macs"]) for e in bundle.exits]
    out = {}
    for criterion in ("max_softmax", "margin", "entropy"):
        result = calibrate(bundle, data.x_val, data.y_val, "max_accuracy_drop", 0.01, costs,
                           "MACs", criterion)
        cascade = Cascade(bundle)
        cascade.set_policy(criterion=criterion)
        cascade.set_thresholds(result.chosen.thresholds)
        decided = cascade.infer(data.x_test)
        final = float(np.mean(np.argmax(cascade.run_all_exits(data.x_test)[-1], -1) ==
                              data.y_test))
        rates = [float(np.mean(decided.exit_index == k)) for k in range(len(costs))]
        out[criterion] = {
            "thresholds": result.chosen.thresholds,
            "test_accuracy": float(np.mean(decided.predictions == data.y_test)),
            "test_final_exit_accuracy": final,
            "test_macs_saved": 1 - float(np.dot(rates, costs)) / costs[-1],
            "calibration_cost_per_exit": result.chosen.cost,
            "calibration_cost_global": result.best_global.cost if result.best_global else None}
    return out


def main() -> None:
    results: dict[str, Any] = {"target": TARGET, "python": platform.python_version(),
                               "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "method": "SysTick under qemu -icount shift=0, 40 instructions "
                                         "per tick; one inference, every stage run",
                               "models": {}}
    with tempfile.TemporaryDirectory(prefix="eedge-bench-") as tmp:
        bundles = zoo_bundles(Path(tmp))
        results["profiler"] = profiler_checks(bundles["digits-demo"],
                                              Path(tmp) / "demo" / "test.npz")
        results["latency"] = latency_bench(bundles["digits-demo"],
                                           Path(tmp) / "demo" / "test.npz",
                                           Path(tmp) / "latency")
        results["calibration"] = calibration_checks(bundles["digits-demo"])
        results["serve"] = serve_bench(Path(tmp) / "serve")
        results["qute"] = qute_checks(Path(tmp) / "qute")
        results["gates"] = gates_bench(Path(tmp) / "gates")
        results["cascade"] = cascade_bench(Path(tmp) / "cascade")
        demo_x = np.load(Path(tmp) / "demo" / "test.npz")["x"]
        results["tvm"] = tvm_vs_ort({"digits-demo": (bundles["digits-demo"], demo_x),
                                     "residual96": medium_bundle(Path(tmp) / "tvm-medium")},
                                    Path(tmp))
        results["architectures"] = architectures_bench(Path(tmp) / "architectures")
        results["sequence"] = sequence_bench(Path(tmp) / "sequence")
        for name, bundle in bundles.items():
            model = load_codegen_model(bundle)
            shape = [int(d) for d in model.graph.tensors[model.input].shape]
            x = np.random.default_rng(0).integers(-128, 128, shape, dtype=np.int8)
            entry = measure(model, x)
            whole = bundle / "model.int8.tflite"
            entry["tflm_python_arena_bytes"] = tflm_python_arena(whole.read_bytes(), shape)
            entry["ram_over_tflm_python_arena"] = (entry["ram_bytes"] /
                                                   entry["tflm_python_arena_bytes"])
            results["models"][name] = entry
    results["mlperf"] = mlperf_bench(say=console.print)
    if results["mlperf"]:   # the same models on the Cortex-M55 (Helium), next to the M4's
        results["mlperf_m55"] = mlperf_bench(target="qemu-cortex-m55", portable=False,
                                             say=console.print)
        results["mlperf_m55"]["versus"] = {"target": results["mlperf"]["target"],
                                           "models": results["mlperf"]["models"]}
    out = ROOT / "bench" / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    show(results)
    console.print(f"wrote {out}")


def show_profiler(p: dict[str, Any]) -> None:
    table = Table(title="profiler checks on the demo bundle (digits, 3 stages)")
    table.add_column("check")
    table.add_column("value", justify="right")
    table.add_column("ratio", justify="right")
    for key, label in (("host_staged_vs_monolithic_demo", "demo (15 us: call overhead)"),
                       ("host_staged_vs_monolithic_residual96", "residual 96x96")):
        r = p[key]
        table.add_row(f"host: sum of stage p50 vs monolithic ORT p50, {label}",
                      f"{r['staged_sum_p50_ms']:.4f} vs {r['monolithic_p50_ms']:.4f} ms",
                      f"{r['staged_over_monolithic']:.3f}")
    table.add_row("qemu: predicted vs measured mean instructions with exits",
                  f"{p['qemu_predicted_instructions']:,.0f} vs "
                  f"{p['qemu_measured_mean_instructions']:,.0f}",
                  f"{p['qemu_predicted_over_measured']:.3f}")
    table.add_row("qemu: repeated runs identical", str(p["qemu_repeat_identical"]), "")
    console.print(table)


def show_calibration(c: dict[str, Any]) -> None:
    table = Table(title="calibration of the demo at --max-accuracy-drop 0.01 (val -> test)")
    for column in ("criterion", "test accuracy", "final exit", "drop (points)", "MACs saved",
                   "per-exit vs global cost (val)"):
        table.add_column(column, justify="right")
    for name, e in c.items():
        table.add_row(name, f"{e['test_accuracy']:.2%}", f"{e['test_final_exit_accuracy']:.2%}",
                      f"{100 * (e['test_final_exit_accuracy'] - e['test_accuracy']):.2f}",
                      f"{e['test_macs_saved']:.1%}",
                      f"{e['calibration_cost_per_exit']:,.0f} vs "
                      f"{e['calibration_cost_global'] or float('nan'):,.0f}")
    console.print(table)


def show(results: dict[str, Any]) -> None:
    if "serve" in results:
        show_serve_bench(results["serve"], console)
    if "qute" in results:
        show_qute(results["qute"], console)
    if "gates" in results:
        show_gates(results["gates"], console)
    if "cascade" in results:
        show_cascade(results["cascade"], console)
    if "tvm" in results:
        show_tvm(results["tvm"], console)
    if "calibration" in results:
        show_calibration(results["calibration"])
    if "profiler" in results:
        show_profiler(results["profiler"])
    if "latency" in results:
        show_latency(results["latency"], console)
    if "architectures" in results:
        show_architectures(results["architectures"], console)
    if "sequence" in results:
        show_sequence(results["sequence"], console)
    table = Table(title=f"generated C runtime on {results['target']} (instructions per inference)")
    for column in ("model", "MACs", "portable", "DSP", "DSP/portable", "instr/MAC",
                   "RAM (arena+stack)", "tflite-micro arena", "RAM ratio", "code bytes"):
        table.add_column(column, justify="right")
    for name, e in results["models"].items():
        table.add_row(name, f"{e['macs']:,}", f"{e['instructions_portable']:,}",
                      f"{e['instructions_dsp']:,}", f"{e['dsp_over_portable']:.2f}",
                      f"{e['instructions_per_mac_dsp']:.2f}", f"{e['ram_bytes']:,}",
                      f"{e['tflm_python_arena_bytes']:,} (host)",
                      f"{e['ram_over_tflm_python_arena']:.2f}", f"{e['code_bytes_dsp']:,}")
    console.print(table)
    show_mlperf(results["mlperf"], console)
    if results.get("mlperf_m55"):
        show_mlperf(results["mlperf_m55"], console)


if __name__ == "__main__":
    main()
