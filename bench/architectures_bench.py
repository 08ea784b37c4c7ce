"""Issue 17's numbers: modern architectures and single operators on QEMU Cortex-M4.

Per architecture of tests/zoo_modern.py (trained a few seconds on digits, exported
with ``torch.onnx.export``, int8 PTQ on 100 validation digits): MACs, exits, float
and int8 accuracy per exit on the 360 held-out digits, C instructions per stage with
the DSP and the portable kernels, flash and RAM (arena + measured stack).

Per operator: a single-op model x[1,32,16,16] -> OP -> global pool -> two Linear
layers (the exit the bundle contract needs), minus that head fed directly with
OP's output shape, divided by the op's output elements (1x16x16x32 in NHWC for
most): instructions per element on the Cortex-M4 (DSP build). Ops above twice
ADD's figure are listed.

Run alone (``python bench/architectures_bench.py``: merges into bench/results.json
under "architectures") or from ``make bench``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from eedge.codegen.device_run import run_on_target  # noqa: E402
from eedge.codegen.model_source import load_codegen_model  # noqa: E402
from eedge.export import export_onnx  # noqa: E402
from eedge.targets import load_target  # noqa: E402

TARGET = "qemu-cortex-m4"
SHAPE = [1, 32, 16, 16]
RESIZE_SHAPE = [1, 32, 8, 8]
"""Resizes upsample 8x8 to the common 16x16 output (a 32x32 output does not fit the arena
tflite-micro's Python interpreter sizes from the model's bytes, which export's check uses)."""
console = Console(width=170)


def _instructions(bundle: Path, x: np.ndarray, dsp: bool) -> tuple[list[float], dict[str, Any]]:
    """Instructions of each stage for one sample (no thresholds: every stage runs).

    The summary also carries ``stage_bytes``: every stage output, to compare builds.
    """
    model = load_codegen_model(bundle)
    model.thresholds = [None] * len(model.thresholds)
    run = run_on_target(model, load_target(TARGET), x, dsp=dsp)
    per_tick = run.instructions_per_tick or 1
    sample = run.run.samples[0]
    summary = run.summary()
    summary["stage_bytes"] = b"".join(o.tobytes() for outs in sample.stage_outputs for o in outs)
    return [t * per_tick for t in sample.stage_ticks], summary


def _accuracy(bundle: Path, runtime: str, x: np.ndarray, y: np.ndarray) -> list[float]:
    from eedge.ir.bundle import load_bundle
    from eedge.runtime.cascade import Cascade

    logits = Cascade(load_bundle(bundle), runtime=runtime).run_all_exits(x)
    return [float(np.mean(np.argmax(lg, axis=-1) == y)) for lg in logits]


def model_entry(bundle: Path, manifest: dict[str, Any], data: Any) -> dict[str, Any]:
    """MACs, exits, float (ONNX Runtime) and int8 (device bytes) accuracy per exit on the
    test split: the figures every bench of a trained zoo model reports."""
    return {"macs": int(sum(s["macs"] for s in manifest["stages"])),
            "stage_macs": [int(s["macs"]) for s in manifest["stages"]],
            "exits": len(manifest["exits"]),
            "float_accuracy": _accuracy(bundle, "onnx", data.x_test, data.y_test),
            "int8_accuracy": _accuracy(bundle, "int8-reference", data.x_test, data.y_test),
            "test_samples": len(data.y_test)}


def memory_entry(summary: dict[str, Any]) -> dict[str, Any]:
    """Flash and RAM figures of a device run's summary (DSP build)."""
    return {"flash_bytes": summary["flash_bytes"], "arena_bytes": summary["arena_bytes"],
            "stack_bytes": summary["stack_used_bytes"], "weight_bytes": summary["weight_bytes"],
            "code_bytes": summary["code_bytes"],
            "ram_bytes": summary["ram_bytes"]}


def architecture_entry(name: str, workdir: Path) -> dict[str, Any]:
    from zoo_modern import digits16, export_default, train

    data = digits16(name)
    source = export_default(train(name, data, steps=200), workdir / f"{name}.onnx")
    bundle = workdir / name
    exported = export_onnx(source, bundle, int8=True, calibration=data.x_val[:100], force=True)
    entry = model_entry(bundle, exported.bundle.manifest, data)
    outputs = {}
    for dsp in (True, False):
        key = "dsp" if dsp else "portable"
        stages, summary = _instructions(bundle, data.x_test[:1], dsp)
        entry[f"stage_instructions_{key}"] = stages
        entry[f"instructions_{key}"] = sum(stages)
        outputs[key] = summary["stage_bytes"]
        if dsp:
            entry.update(memory_entry(summary))
    entry["dsp_bytes_equal_portable"] = outputs["dsp"] == outputs["portable"]
    entry["dsp_over_portable"] = entry["instructions_dsp"] / entry["instructions_portable"]
    entry["instructions_per_mac_dsp"] = entry["instructions_dsp"] / max(entry["macs"], 1)
    return entry


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value.astype(np.float32), name)


def _op_nodes(op: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """ONNX nodes x -> ... -> y for one benchmarked operator, and their constants."""
    rng = np.random.default_rng(0)
    full = _const("c", rng.standard_normal(SHAPE))
    node = helper.make_node
    unary = {"RELU": "Relu", "LOGISTIC": "Sigmoid", "TANH": "Tanh", "HARD_SWISH": "HardSwish",
             "ELU": "Elu"}
    binary = {"ADD": "Add", "SUB": "Sub", "MUL": "Mul", "MAXIMUM": "Max", "MINIMUM": "Min"}
    if op in unary:
        return [node(unary[op], ["x"], ["y"])], []
    if op in binary:
        return [node(binary[op], ["x", "c"], ["y"])], [full]
    if op == "ADD (channel broadcast)":
        return [node("Add", ["x", "c"], ["y"])], [_const("c", rng.standard_normal([1, 32, 1, 1]))]
    if op == "LEAKY_RELU":
        return [node("LeakyRelu", ["x"], ["y"], alpha=0.1)], []
    if op == "PRELU":
        return [node("PRelu", ["x", "c"], ["y"])], [_const("c", rng.uniform(0, .3, [32, 1, 1]))]
    if op == "HardSigmoid (MUL, ADD, RELU6)":
        return [node("HardSigmoid", ["x"], ["y"])], []
    if op == "TRANSPOSE (H<->W)":
        return [node("Transpose", ["x"], ["y"], perm=[0, 1, 3, 2])], []
    if op == "SLICE (half the channels)":
        ints = [numpy_helper.from_array(np.array(v, np.int64), n)
                for n, v in (("starts", [0]), ("ends", [16]), ("axes", [1]))]
        return [node("Slice", ["x", "starts", "ends", "axes"], ["y"])], ints
    if op == "SPLIT (2 on channels) + CONCATENATION":
        split = numpy_helper.from_array(np.array([16, 16], np.int64), "split")
        return [node("Split", ["x", "split"], ["a", "b"], axis=1),
                node("Concat", ["b", "a"], ["y"], axis=1)], [split]
    if op == "CONCATENATION (x, x)":
        return [node("Concat", ["x", "x"], ["y"], axis=1)], []
    if op == "PAD (1 pixel)":
        pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
        return [node("Pad", ["x", "pads"], ["y"])], [pads]
    if op.startswith("RESIZE"):
        scales = _const("scales", np.array([1, 1, 2, 2]))
        mode = "nearest" if "NEAREST" in op else "linear"
        return [node("Resize", ["x", "", "scales"], ["y"], mode=mode)], [scales]
    if op == "channel shuffle (RESHAPE, TRANSPOSE, RESHAPE)":
        s5 = numpy_helper.from_array(np.array([1, 2, 16, 16, 16], np.int64), "s5")
        s4 = numpy_helper.from_array(np.array(SHAPE, np.int64), "s4")
        return [node("Reshape", ["x", "s5"], ["r"]),
                node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
                node("Reshape", ["t", "s4"], ["y"])], [s5, s4]
    raise ValueError(op)


MICRO_OPS = ("ADD", "ADD (channel broadcast)", "SUB", "MUL", "MAXIMUM", "MINIMUM", "RELU",
             "LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU", "PRELU", "ELU",
             "HardSigmoid (MUL, ADD, RELU6)", "TRANSPOSE (H<->W)", "SLICE (half the channels)",
             "SPLIT (2 on channels) + CONCATENATION", "CONCATENATION (x, x)", "PAD (1 pixel)",
             "RESIZE_NEAREST_NEIGHBOR (2x)", "RESIZE_BILINEAR (2x)",
             "channel shuffle (RESHAPE, TRANSPOSE, RESHAPE)")


HIDDEN = 512
"""Width of the head's hidden layer: its weights make the file large enough for the arena
tflite-micro's Python interpreter sizes at 10x the file (export's check runs it)."""


def _with_head(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto],
               shape: list[int], out_shape: list[int]) -> onnx.ModelProto:
    """x -> nodes -> y -> GlobalAveragePool -> Flatten -> Gemm -> Gemm (10 logits)."""
    rng = np.random.default_rng(1)
    inits = inits + [_const("head_w1", rng.standard_normal([HIDDEN, out_shape[1]]) * 0.1),
                     _const("head_w2", rng.standard_normal([10, HIDDEN]) * 0.05)]
    nodes = nodes + [helper.make_node("GlobalAveragePool", ["y"], ["head_g"]),
                     helper.make_node("Flatten", ["head_g"], ["head_f"]),
                     helper.make_node("Gemm", ["head_f", "head_w1"], ["head_h"], transB=1),
                     helper.make_node("Gemm", ["head_h", "head_w2"], ["exit0"], transB=1)]
    graph = helper.make_graph(nodes, "single_op",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("exit0", TensorProto.FLOAT, [1, 10])],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def single_op_model(op: str) -> tuple[onnx.ModelProto, list[int]]:
    """x -> op -> head; and the op's output shape (NCHW)."""
    nodes, inits = _op_nodes(op)
    shape = RESIZE_SHAPE if op.startswith("RESIZE") else SHAPE
    probe = helper.make_model(helper.make_graph(
        nodes, "probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits),
        opset_imports=[helper.make_opsetid("", 17)])
    inferred = onnx.shape_inference.infer_shapes(probe)
    out_shape = [d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    return _with_head(nodes, inits, shape, out_shape), out_shape


def baseline_model(out_shape: list[int]) -> onnx.ModelProto:
    """The same head fed directly: what a single-op model costs without its op."""
    return _with_head([helper.make_node("Identity", ["x"], ["y"])], [], out_shape, out_shape)


def _model_instructions(model: onnx.ModelProto, slug: str, workdir: Path) -> float:
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    source = workdir / f"{slug}.onnx"
    onnx.save(model, source)
    calib = np.random.default_rng(2).standard_normal([32] + shape[1:]).astype(np.float32)
    export_onnx(source, workdir / slug, int8=True, calibration=calib, force=True)
    stages, _ = _instructions(workdir / slug, calib[:1], dsp=True)
    return sum(stages)


def micro_bench(workdir: Path) -> dict[str, Any]:
    """Each op's instructions minus those of its head alone (one baseline per output shape)."""
    workdir.mkdir(parents=True, exist_ok=True)
    baselines: dict[tuple[int, ...], float] = {}
    ops: dict[str, Any] = {}
    for op in MICRO_OPS:
        try:
            model, out_shape = single_op_model(op)
            key = tuple(out_shape)
            if key not in baselines:
                baselines[key] = _model_instructions(
                    baseline_model(out_shape), "baseline_" + "x".join(map(str, key)), workdir)
            slug = "".join(c if c.isalnum() else "_" for c in op)
            total = _model_instructions(model, slug, workdir)
        except Exception as exc:  # an op a family has not landed: recorded, not fatal
            ops[op] = {"error": str(exc).splitlines()[0][:200]}
            continue
        elements = int(np.prod(out_shape))
        ops[op] = {"instructions": total - baselines[key], "output_elements": elements,
                   "instructions_per_element": (total - baselines[key]) / elements}
    add = ops["ADD"].get("instructions_per_element")
    slow = [op for op, e in ops.items() if add and e.get("instructions_per_element", 0) > 2 * add]
    return {"shape_nchw": SHAPE, "baselines": {"x".join(map(str, k)): v
                                               for k, v in baselines.items()},
            "ops": ops, "above_twice_add": slow}


def bench_models(names: Any, entry: Any, workdir: Path) -> dict[str, Any]:
    """``entry(name, workdir)`` for each model; a model that fails (an operator that has not
    landed, an export that stopped working) is recorded with its error, not fatal."""
    workdir.mkdir(parents=True, exist_ok=True)
    models: dict[str, Any] = {}
    for name in names:
        try:
            models[name] = entry(name, workdir)
        except Exception as exc:
            models[name] = {"error": str(exc).splitlines()[0][:200]}
    return models


def architectures_bench(workdir: Path) -> dict[str, Any]:
    from zoo_modern import ARCHITECTURES

    return {"target": TARGET, "models": bench_models(ARCHITECTURES, architecture_entry, workdir),
            "micro": micro_bench(workdir / "micro")}


def _pct(values: list[float]) -> str:
    return " / ".join(f"{v:.1%}" for v in values)


def models_table(title: str, columns: tuple[str, ...], models: dict[str, Any],
                 row: Any) -> Table:
    """One row per model (``row(entry)`` after its name); a failed model shows its error."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for name, e in models.items():
        if "error" in e:
            table.add_row(name, e["error"], *[""] * (len(columns) - 2))
        else:
            table.add_row(name, *row(e))
    return table


def show_architectures(results: dict[str, Any], out: Console = console) -> None:
    out.print(models_table(
        f"modern architectures on {results['target']} (one inference, every stage; accuracy "
        "on held-out digits per exit)",
        ("model", "MACs", "exits", "float acc", "int8 acc", "DSP instr per stage",
         "portable instr per stage", "DSP/portable", "instr/MAC", "flash", "RAM",
         "DSP == portable bytes"),
        results["models"],
        lambda e: (f"{e['macs']:,}", str(e["exits"]), _pct(e["float_accuracy"]),
                   _pct(e["int8_accuracy"]),
                   " / ".join(f"{v:,.0f}" for v in e["stage_instructions_dsp"]),
                   " / ".join(f"{v:,.0f}" for v in e["stage_instructions_portable"]),
                   f"{e['dsp_over_portable']:.2f}", f"{e['instructions_per_mac_dsp']:.2f}",
                   f"{e['flash_bytes']:,}", f"{e['ram_bytes']:,}",
                   str(e["dsp_bytes_equal_portable"]))))
    micro = results["micro"]
    table = Table(title="single operators on 1x16x16x32 int8 (DSP build): instructions per "
                        "output element")
    for column in ("operator", "instructions", "output elements", "instr/element", "vs ADD"):
        table.add_column(column, justify="right")
    add = micro["ops"]["ADD"].get("instructions_per_element") or float("nan")
    for op, e in micro["ops"].items():
        if "error" in e:
            table.add_row(op, e["error"], "", "", "")
            continue
        table.add_row(op, f"{e['instructions']:,.0f}", f"{e['output_elements']:,}",
                      f"{e['instructions_per_element']:.2f}",
                      f"{e['instructions_per_element'] / add:.2f}")
    out.print(table)
    out.print("above 2x ADD per element: " + (", ".join(micro["above_twice_add"]) or "none"))


def run_alone(key: str, bench: Any, show: Any) -> None:
    """A bench script run by itself: its section merged into bench/results.json, its table."""
    with tempfile.TemporaryDirectory(prefix=f"eedge-{key}-bench-") as tmp:
        results = bench(Path(tmp))
    path = ROOT / "bench" / "results.json"
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged[key] = results
    path.write_text(json.dumps(merged, indent=2) + "\n")
    show(results)
    console.print(f"wrote {path} ({key})")


def main() -> None:
    run_alone("architectures", architectures_bench, show_architectures)


if __name__ == "__main__":
    main()
