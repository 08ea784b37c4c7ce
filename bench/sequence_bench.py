"""Issue 18's numbers: transformers and recurrent keyword spotters on QEMU Cortex-M4.

Per model of tests/zoo_sequence.py (``vit``, ``kwt``, ``gru``, ``lstm``; trained
with the zoo's default 300 Adam steps, exported with ``torch.onnx.export``, int8
PTQ on 100 validation samples): MACs and parameters, float (ONNX Runtime) and int8
(eedge's reference = the device's bytes) accuracy per exit on the test split, the
operating point ``eedge calibrate --max-accuracy-drop 0.01`` chooses on the
validation split with the device's integer scores (its test accuracy and
expected MACs), C instructions per stage (DSP build, one inference, every stage),
flash and RAM (arena + measured stack).

Run alone (``python bench/sequence_bench.py``: merges into bench/results.json
under "sequence") or from ``make bench``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from architectures_bench import (_instructions, _pct, bench_models, memory_entry,  # noqa: E402
                                 model_entry, models_table, run_alone)

from eedge.export import export_onnx  # noqa: E402

TARGET = "qemu-cortex-m4"
MAX_DROP = 0.01
console = Console(width=170)


def calibrated_point(bundle_dir: Path, data: Any) -> dict[str, Any]:
    """`calibrate --max-accuracy-drop 0.01` on the validation split with the int8 scores the
    device decides with; the chosen thresholds' accuracy and expected MACs on the test split."""
    from eedge.ir.bundle import load_bundle
    from eedge.policies.calibrate import calibrate
    from eedge.runtime.cascade import Cascade

    bundle = load_bundle(bundle_dir)
    costs = [float(e["cumulative_macs"]) for e in bundle.exits]
    result = calibrate(bundle, data.x_val, data.y_val, "max_accuracy_drop", MAX_DROP, costs,
                       "MACs", runtime="int8-reference")
    cascade = Cascade(bundle, runtime="int8-reference")
    cascade.set_thresholds(result.chosen.thresholds)
    decided = cascade.infer(data.x_test)
    rates = [float(np.mean(decided.exit_index == k)) for k in range(len(costs))]
    expected = float(np.dot(rates, costs))
    return {"thresholds": result.chosen.thresholds, "exit_rates": rates,
            "accuracy": float(np.mean(decided.predictions == data.y_test)),
            "expected_macs": expected, "full_macs": costs[-1],
            "macs_saved": 1 - expected / costs[-1]}


def sequence_entry(name: str, workdir: Path) -> dict[str, Any]:
    from zoo_sequence import dataset, export_default, train

    data = dataset(name)
    model = train(name, data)
    source = export_default(name, model, workdir / f"{name}.onnx")
    bundle = workdir / name
    exported = export_onnx(source, bundle, int8=True, calibration=data.x_val[:100], force=True)
    entry = model_entry(bundle, exported.bundle.manifest, data)
    entry["params"] = int(sum(p.numel() for p in model.parameters()))
    entry["calibrated"] = calibrated_point(bundle, data)
    stages, summary = _instructions(bundle, data.x_test[:1], dsp=True)
    entry.update(stage_instructions_dsp=stages, instructions_dsp=sum(stages),
                 **memory_entry(summary))
    entry["instructions_per_mac_dsp"] = entry["instructions_dsp"] / max(entry["macs"], 1)
    return entry


def sequence_bench(workdir: Path) -> dict[str, Any]:
    from zoo_sequence import MODELS

    return {"target": TARGET, "max_accuracy_drop": MAX_DROP,
            "models": bench_models(MODELS, sequence_entry, workdir)}


def show_sequence(results: dict[str, Any], out: Console = console) -> None:
    out.print(models_table(
        f"transformers and RNNs on {results['target']} (DSP build; accuracy on the test split "
        f"per exit; calibrated at <= {results['max_accuracy_drop']:.0%} drop, int8 scores)",
        ("model", "MACs", "params", "float acc", "int8 acc", "calibrated acc",
         "expected MACs (saved)", "instr per stage", "instr/MAC", "flash", "RAM",
         "arena + stack"),
        results["models"],
        lambda e: (f"{e['macs']:,}", f"{e['params']:,}", _pct(e["float_accuracy"]),
                   _pct(e["int8_accuracy"]), f"{e['calibrated']['accuracy']:.1%}",
                   f"{e['calibrated']['expected_macs']:,.0f} "
                   f"({e['calibrated']['macs_saved']:.0%})",
                   " / ".join(f"{v:,.0f}" for v in e["stage_instructions_dsp"]),
                   f"{e['instructions_per_mac_dsp']:.2f}", f"{e['flash_bytes']:,}",
                   f"{e['ram_bytes']:,}", f"{e['arena_bytes']:,} + {e['stack_bytes']:,}")))


def main() -> None:
    run_alone("sequence", sequence_bench, show_sequence)


if __name__ == "__main__":
    main()
