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
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "tests"))

from eedge.codegen.device_run import run_on_target  # noqa: E402
from eedge.codegen.model_source import CodegenModel, load_codegen_model  # noqa: E402
from eedge.passes.cost import total_macs  # noqa: E402
from eedge.targets import load_target  # noqa: E402

MLPERF = {"kws": "kws_ref_model.tflite", "resnet": "pretrainedResnet_quant.tflite",
          "vww": "vww_96_int8.tflite", "ad01": "ad01_int8.tflite"}
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
                      stack_bytes=summary["stack_used_bytes"])
        result[f"code_bytes_{key}"] = summary["code_bytes"]
        result["quant_param_bytes"] = summary["quant_param_bytes"]
        result[f"outputs_{key}"] = sample.stage_outputs[-1][0].tobytes().hex()
    result["macs"] = sum(result["stage_macs"])
    result["ram_bytes"] = result["arena_bytes"] + result["stack_bytes"]
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


def xorshift_input(seed: int, shape: list[int]) -> np.ndarray:
    from reference.test_mlperf_tiny import xorshift_bytes

    return xorshift_bytes(seed, int(np.prod(shape))).view(np.int8).reshape(shape)


def main() -> None:
    results: dict[str, Any] = {"target": TARGET, "python": platform.python_version(),
                               "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "method": "SysTick under qemu -icount shift=0, 40 instructions "
                                         "per tick; one inference, every stage run",
                               "models": {}, "mlperf": {}}
    with tempfile.TemporaryDirectory(prefix="eedge-bench-") as tmp:
        for name, bundle in zoo_bundles(Path(tmp)).items():
            model = load_codegen_model(bundle)
            shape = [int(d) for d in model.graph.tensors[model.input].shape]
            x = np.random.default_rng(0).integers(-128, 128, shape, dtype=np.int8)
            entry = measure(model, x)
            whole = bundle / "model.int8.tflite"
            entry["tflm_python_arena_bytes"] = tflm_python_arena(whole.read_bytes(), shape)
            entry["ram_over_tflm_python_arena"] = (entry["ram_bytes"] /
                                                   entry["tflm_python_arena_bytes"])
            results["models"][name] = entry
    baseline_file = SHARED / "baselines" / "tflm-cortex-m4" / "results.json"
    if (SHARED / "models" / "mlperf_tiny").is_dir() and baseline_file.is_file():
        baseline = json.loads(baseline_file.read_text())["runs"]
        for name, file in MLPERF.items():
            path = SHARED / "models" / "mlperf_tiny" / file
            model = load_codegen_model(path)
            shape = [int(d) for d in model.graph.tensors[model.input].shape]
            entry = measure(model, xorshift_input(0, shape))
            ref, cmsis = baseline[f"ref-O2/{name}"], baseline[f"cmsis_nn-O2/{name}"]
            entry.update(
                tflm_ref_instructions=ref["instructions_per_inference"],
                tflm_cmsis_instructions=cmsis["instructions_per_inference"],
                dsp_over_tflm_cmsis=entry["instructions_dsp"] / cmsis["instructions_per_inference"],
                tflm_arena_used_bytes=ref["arena_used_bytes"],
                ram_over_tflm_arena=entry["ram_bytes"] / ref["arena_used_bytes"],
                outputs_equal_tflm=entry["outputs_dsp"] == ref["outputs_hex"]["0"] ==
                entry["outputs_portable"])
            results["mlperf"][name] = entry
    else:
        console.print("[yellow]../shared/models/mlperf_tiny or its baseline is absent: "
                      "MLPerf Tiny comparison skipped[/]")
    out = ROOT / "bench" / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    show(results)
    console.print(f"wrote {out}")


def show(results: dict[str, Any]) -> None:
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
    if results["mlperf"]:
        table = Table(title="MLPerf Tiny: eedge (DSP, -O2) vs TFLite Micro on the same QEMU")
        for column in ("model", "eedge", "TFLM ref", "TFLM+CMSIS-NN", "eedge/CMSIS",
                       "instr/MAC", "RAM", "TFLM arena", "RAM ratio", "code bytes",
                       "bytes == TFLM"):
            table.add_column(column, justify="right")
        for name, e in results["mlperf"].items():
            table.add_row(name, f"{e['instructions_dsp']:,}", f"{e['tflm_ref_instructions']:,}",
                          f"{e['tflm_cmsis_instructions']:,}", f"{e['dsp_over_tflm_cmsis']:.2f}",
                          f"{e['instructions_per_mac_dsp']:.2f}", f"{e['ram_bytes']:,}",
                          f"{e['tflm_arena_used_bytes']:,}", f"{e['ram_over_tflm_arena']:.2f}",
                          f"{e['code_bytes_dsp']:,}", str(e["outputs_equal_tflm"]))
        console.print(table)


if __name__ == "__main__":
    main()
