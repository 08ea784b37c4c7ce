"""End-to-end checks shared by the zoo tests: the CLI's JSON, export verification, and the
generated C runtime on a target compared byte for byte with a bundle's int8 stages.

The C runtime is compared stage by stage: every output of every stage it ran
must equal what the oracle computes on that stage's .tflite when fed the
oracle's own hand-offs (so a difference points at the first stage that
differs). The oracle is TFLite Micro wherever it has the kernels, and eedge's
int8 reference executor for bundles holding an op TFLite Micro lacks (GELU),
which export itself verifies node by node against LiteRT's reference kernels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_runner import run_cli

from eedge.codegen.device_run import DeviceRun, run_on_target
from eedge.codegen.inputs import device_samples
from eedge.codegen.model_source import CodegenModel, load_codegen_model
from eedge.ir.graph import Graph, Node, QuantParams, TensorInfo
from eedge.runtime.stage_runners import ReferenceRunner
from eedge.targets import load_target


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    """Run ``eedge ARGS --json`` in-process; fail with its stderr unless it exits 0."""
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, f"eedge {' '.join(args[:1])} failed (exit {code}): {err.strip()}"
    return json.loads(out)


def assert_verified(manifest: dict[str, Any]) -> None:
    """The export's own verification: staged == whole on every format it wrote."""
    report = manifest["verification"]
    for fmt in ("onnx", "tflite"):
        if fmt in report:
            assert report[fmt]["max_abs_diff"] <= report[fmt]["tolerance"], report[fmt]
    int8 = report["tflite_int8"]
    assert int8["staged_vs_monolithic"]["identical"] is True, int8
    assert int8["reference_vs_tflm"]["identical"] is True, int8
    assert int8["reference_vs_tflm"]["tensors_compared"] > 0


def stage_outputs(bundle: Path, manifest: dict[str, Any], x_int8: np.ndarray,
                  engine: str = "tflm") -> dict[str, np.ndarray]:
    """Every int8 stage's outputs, stage by stage, each fed the engine's own hand-offs.

    ``engine``: ``tflm`` (TFLite Micro's interpreter) or ``reference`` (eedge's
    numpy executor, for bundles with ops TFLite Micro has no kernel for).
    """
    from eedge.runtime.interpreters import TFLMModel

    store: dict[str, np.ndarray] = {}
    for stage in manifest["stages"]:
        io = stage["io"]["tflite_int8"]
        feeds = []
        for i, spec in enumerate(io["inputs"]):
            # the model input (read by every member of a cascade), else a hand-off
            value = x_int8 if (stage["index"] == 0 and i == 0) or \
                spec["name"] == manifest["inputs"][0]["name"] else store[spec["name"]]
            feeds.append(value.reshape([len(x_int8)] + spec["shape"][1:]))
        path = bundle / stage["files"]["tflite_int8"]
        runner = TFLMModel(path.read_bytes(), len(io["outputs"])) if engine == "tflm" \
            else ReferenceRunner.from_file(path)
        outs = runner.run(feeds)
        store.update({spec["name"]: out for spec, out in zip(io["outputs"], outs)})
    return store


def device_run(bundle: Path, x: np.ndarray, target: str = "qemu-cortex-m4",
               dsp: bool | None = None) -> tuple[CodegenModel, DeviceRun, np.ndarray]:
    """The generated C runtime on ``target`` (every stage runs: no thresholds).

    Returns the model, the run and the int8 samples it was given.
    """
    codegen = load_codegen_model(bundle)
    codegen.thresholds = [None] * len(codegen.thresholds)
    run = run_on_target(codegen, load_target(target), x, dsp=dsp)
    samples = device_samples(x, tuple(int(d) for d in codegen.graph.tensors[codegen.input].shape),
                             codegen.input_quant.scale[0], codegen.input_quant.zero_point[0],
                             codegen.input_layout)
    return codegen, run, samples


def assert_c_bit_exact(bundle: Path, x: np.ndarray, engine: str = "tflm",
                       target: str = "qemu-cortex-m4", dsp: bool | None = None) -> int:
    """Every output of every stage the C runtime computes equals ``engine``'s bytes.

    Returns the number of tensors compared (at least one per stage per sample).
    """
    manifest = json.loads((bundle / "manifest.json").read_text())
    codegen, run, samples = device_run(bundle, x, target, dsp)
    reference = stage_outputs(bundle, manifest, samples, engine)
    assert len(run.run.samples) == len(x)
    compared = 0
    for n, sample in enumerate(run.run.samples):
        assert sample.stages_run == len(codegen.stages), "no thresholds: every stage runs"
        for stage, outputs in zip(codegen.stages, sample.stage_outputs):
            for tensor, got in zip(stage.outputs, outputs):
                expected = reference[tensor][n].reshape(-1)
                assert np.array_equal(got, expected), (
                    f"sample {n} stage {stage.index} {tensor}: C differs from {engine} at "
                    f"{int(np.argmax(got != expected))} of {expected.size}")
                compared += 1
    assert compared >= len(x) * len(codegen.stages)
    return compared


def assert_c_equals_reference(model: CodegenModel, x: np.ndarray, target: str,
                              dsp: bool | None = None) -> dict[str, Any]:
    """Run ``model``'s C on ``target`` and compare every stage's first output, sample by
    sample, with eedge's int8 reference executor on the same int8 inputs; the run's summary.
    """
    from eedge.reference.executor import execute

    run = run_on_target(model, load_target(target), x, dsp=dsp)
    env = execute(model.graph, {model.input: x})
    for k, stage in enumerate(model.stages):
        device = np.stack([s.stage_outputs[k][0] for s in run.run.samples])
        expected = env[stage.outputs[0]]
        assert np.array_equal(device, expected.reshape(device.shape)), f"stage {k}"
    return run.summary()


# ---- small int8 graphs (tests/codegen): C kernels against the reference executor ----------

def write_tflite(graph: Graph, path: Path) -> bytes:
    """``graph`` as one .tflite (input ``x``, its exits as outputs) at ``path``; the bytes."""
    from eedge.backends.tflite_writer import graph_to_tflite

    data = graph_to_tflite(graph, range(len(graph.nodes)), ["x"], graph.exits)
    path.write_bytes(data)
    return data


def int8_inputs(shape: tuple[int, ...], seed: int, count: int = 3) -> np.ndarray:
    """``count`` random int8 samples of ``shape``, the first all 127 and the second all
    -128 (the extremes: sums at their largest, of both signs)."""
    x = np.random.default_rng(seed).integers(-128, 128, (count, *shape)).astype(np.int8)
    x[0], x[1] = 127, -128
    return x


def same_or_valid(h: int, w: int, kh: int, kw: int, stride: int, padding: str,
                  dil: int = 1) -> tuple[int, int]:
    """Output height and width of a strided, dilated window with SAME or VALID padding."""
    if padding == "SAME":
        return -(-h // stride), -(-w // stride)
    return (h - (kh - 1) * dil - 1) // stride + 1, (w - (kw - 1) * dil - 1) // stride + 1


def flat_exit(tensors: dict[str, TensorInfo], constants: dict[str, np.ndarray], name: str,
              flat: str, size: int, quant: QuantParams) -> Node:
    """The RESHAPE of ``name`` to (1, size) as tensor ``flat`` (its tensor and shape
    constant added): a graph exit."""
    tensors[flat] = TensorInfo(flat, (1, size), "int8", quant)
    constants[f"{flat}/shape"] = np.array([1, size], np.int32)
    return Node(flat, "RESHAPE", [name, f"{flat}/shape"], [flat], {})


def assert_c_equals_executor(path: Path, graph: Graph, x: np.ndarray, target: str,
                             dsp: bool | None, expected: dict[str, np.ndarray] | None = None
                             ) -> None:
    """The C runtime of the .tflite at ``path`` (``graph``, see ``write_tflite``) on
    ``target`` gives every exit of ``graph`` as eedge's int8 reference executor does on
    ``x`` (``expected``: that executor's outputs, when already computed)."""
    from eedge.reference.executor import execute

    if expected is None:
        expected = execute(graph, {"x": x})
    run = run_on_target(load_codegen_model(path), load_target(target), x, dsp=dsp)
    found: dict[str, list[np.ndarray]] = {}
    for sample in run.run.samples:
        for names, values in zip(run.project.stage_outputs, sample.stage_outputs):
            for (name, _), value in zip(names, values):
                found.setdefault(name, []).append(value)
    for name in graph.exits:
        want = expected[name]
        assert name in found, name
        assert np.array_equal(np.stack(found[name]).reshape(want.shape), want), name
