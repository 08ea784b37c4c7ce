"""The generated C runtime under AddressSanitizer and UBSan (`make sanitize`).

Every zoo architecture and every MLPerf Tiny model is generated for the host,
built with ``-fsanitize=address,undefined -fno-sanitize-recover=all`` and run
on random int8 inputs and edge values (all -128, all 127, alternating, zero).
The first finding aborts the binary with a report on stderr, which fails the
test; the bytes must still equal the reference executor's, so the sanitized
build checks the same program the plain build ships. Zoo models run with
thresholds that spread samples over every exit (the sequential net also with
thresholds that never exit early and always exit first), plus the other exit
policies' code (margin with a reject window, entropy, the budget controller, a
QUTE ensemble with its monitor). The Cortex-M DSP kernels, which only build for
Arm, run in QEMU built with UBSan in trap mode. Regression tests for what the
sanitizers found: more stages than the runtime counts, exits over 256 classes,
biases that overflow the int32 accumulator, a cut-off last sample on stdin.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from cli_runner import run_cli
from int8_bundles import int8_bundle
from test_c_runtime import MLPERF, assert_matches_reference, quantized
from zoo import example_input

from eedge.codegen.model_source import CodegenModel, load_codegen_model
from eedge.codegen.project import MAX_STAGES, GeneratedProject, generate_project
from eedge.codegen.toolchain import (RunResult, build, run_host, run_qemu,
                                     sanitizer_findings)
from eedge.errors import ModelError, TargetError, ToolchainError
from eedge.export import export_onnx
from eedge.policies.fixed_point import int8_probabilities, int8_score
from eedge.reference.executor import execute
from eedge.runtime.cascade import Cascade
from eedge.targets import load_target

pytestmark = pytest.mark.slow

ARCHITECTURES = ["sequential", "residual", "branchy", "depthwise", "audio1d"]
MLPERF_MODELS = ["kws_ref_model", "pretrainedResnet_quant", "vww_96_int8", "ad01_int8"]
EXTREME_THRESHOLDS = ("sequential",)   # also built to never / always exit early


def _sanitizers_work() -> bool:
    """gcc here links -fsanitize=address,undefined (libasan and libubsan are installed)."""
    if shutil.which("gcc") is None:
        return False
    proc = subprocess.run(["gcc", "-fsanitize=address,undefined", "-x", "c", "-", "-o",
                           "/dev/null"], input="int main(void){return 0;}", text=True,
                          capture_output=True)
    return proc.returncode == 0


requires_sanitizers = pytest.mark.skipif(not _sanitizers_work(),
                                         reason="gcc cannot link ASan/UBSan here")


@pytest.fixture(scope="module")
def bundle_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sanitizer-bundles")


def edge_values(shape: tuple[int, ...]) -> np.ndarray:
    """All -128, all 127, alternating -128/127 and all zero: the extremes of int8."""
    size = int(np.prod(shape))
    alternating = np.where(np.arange(size) % 2 == 0, -128, 127).reshape(shape)
    return np.stack([np.full(shape, -128), np.full(shape, 127), alternating,
                     np.zeros(shape)]).astype(np.int8)


def user_shape(model: CodegenModel) -> tuple[int, ...]:
    """One sample's shape as the user gives it (NCHW/NCL for torch models, else NHWC)."""
    shape = tuple(int(d) for d in model.graph.tensors[model.input].shape[1:])
    if model.input_layout == "NCHW":
        return (shape[2], shape[0], shape[1])
    if model.input_layout == "NCL":
        return (shape[2], shape[1])
    return shape


def dequantized(model: CodegenModel, q: np.ndarray) -> np.ndarray:
    """Floats that quantize back to exactly ``q`` (the Python cascade takes floats)."""
    quant = model.input_quant
    return ((q.astype(np.float32) - np.float32(quant.zero_point[0])) *
            np.float32(quant.scale[0])).astype(np.float32)


def sanitized_run(model: CodegenModel, out: Path, samples: np.ndarray
                  ) -> tuple[GeneratedProject, RunResult]:
    """Generate for the host, build with ASan+UBSan, run; any finding fails the test."""
    project = generate_project(model, load_target("host"), out)
    binary = build(project, sanitize=True).binary
    assert binary.name == "model-sanitized"
    try:
        return project, run_host(project, binary, samples)
    except ToolchainError as exc:  # a non-zero exit or a sanitizer report
        pytest.fail(f"sanitized {model.name}: {exc}")


def zoo_inputs(name: str, model: CodegenModel, random: int) -> np.ndarray:
    """Int8 samples in the user's layout: float test inputs (which reach every exit),
    uniform random bytes and the edge values."""
    shape = user_shape(model)
    rng = np.random.default_rng(5)
    from_floats = quantized(model, example_input(seed=11, batch=random, name=name))
    device = tuple(int(d) for d in model.graph.tensors[model.input].shape[1:])
    floats_user = from_floats.reshape((random,) + device)
    if model.input_layout == "NCHW":
        floats_user = floats_user.transpose(0, 3, 1, 2)
    elif model.input_layout == "NCL":
        floats_user = floats_user.reshape(random, shape[1], shape[0]).transpose(0, 2, 1)
    noise = rng.integers(-128, 128, (random,) + shape).astype(np.int8)
    return np.concatenate([floats_user, noise, edge_values(shape)])


def with_thresholds(model: CodegenModel, thresholds: list[float | None]) -> CodegenModel:
    variant = copy.copy(model)
    variant.thresholds = thresholds
    return variant


@requires_sanitizers
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_zoo_under_sanitizers_has_no_findings_and_the_reference_bytes(
        name: str, bundle_root: Path, tmp_path: Path) -> None:
    bundle = int8_bundle(name, bundle_root)
    model = load_codegen_model(bundle.path)
    q = zoo_inputs(name, model, 24)
    x = dequantized(model, q)
    samples = quantized(model, x)
    early = len(model.thresholds) - 1
    variants = {"median": model.thresholds}
    if name in EXTREME_THRESHOLDS:  # the same kernels, only the decision loop differs
        variants.update(never=[None] * early + [model.thresholds[-1]],
                        always=[0.0] * early + [model.thresholds[-1]])
    python = Cascade(bundle, runtime="int8-reference").infer(x)
    for label, thresholds in variants.items():
        _, run = sanitized_run(with_thresholds(model, thresholds), tmp_path / label, samples)
        assert_matches_reference(model, samples, SimpleNamespace(run=run))
        exits = np.array([s.exit_index for s in run.samples])
        if label == "median":
            assert set(exits.tolist()) == set(range(early + 1)), "every exit is exercised"
            assert np.array_equal(exits, python.exit_index)
            assert np.array_equal([s.class_index for s in run.samples], python.predictions)
        else:
            assert set(exits.tolist()) == {early if label == "never" else 0}


@requires_sanitizers
def test_every_exit_policy_runs_clean_under_sanitizers(bundle_root: Path,
                                                       tmp_path: Path) -> None:
    """margin with a reject window and the budget controller, entropy, a QUTE ensemble."""
    model = load_codegen_model(int8_bundle("sequential", bundle_root).path)
    samples = quantized(model, dequantized(model, zoo_inputs("sequential", model, 16)))
    margin = copy.copy(model)
    margin.criteria = ["margin"] * 3
    margin.thresholds, margin.window_low = [0.3, 0.3, None], [0.05, 0.05, None]
    margin.budget = {"macs": 0.6 * model.exit_costs[-1]}
    entropy = copy.copy(model)
    entropy.criteria = ["entropy"] * 3
    entropy.thresholds = [-0.8, -0.8, None]
    ensemble = copy.copy(model)
    ensemble.ensemble = {"members": [0, 1, 2], "monitor": {"window": 4, "rho": 0.9}}
    for label, variant in (("margin", margin), ("entropy", entropy), ("ensemble", ensemble)):
        _, run = sanitized_run(variant, tmp_path / label, samples)
        assert_matches_reference(model, samples, SimpleNamespace(run=run))
        assert all(0 <= s.exit_index < 3 for s in run.samples), label


@requires_sanitizers
@pytest.mark.skipif(not MLPERF.is_dir(), reason="../shared/models/mlperf_tiny is absent")
@pytest.mark.parametrize("name", MLPERF_MODELS)
def test_mlperf_tiny_under_sanitizers(name: str, tmp_path: Path) -> None:
    path = MLPERF / f"{name}.tflite"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    model = load_codegen_model(path)
    shape = user_shape(model)
    rng = np.random.default_rng(7)
    samples = np.concatenate([rng.integers(-128, 128, (2,) + shape).astype(np.int8),
                              edge_values(shape)]).reshape(6, -1)
    _, run = sanitized_run(model, tmp_path / "p", samples)
    assert_matches_reference(model, samples, SimpleNamespace(run=run))
    env = execute(model.graph, {model.input: samples.reshape((6,) + shape)})
    final = env[model.stages[-1].outputs[0]].reshape(6, -1)
    assert [s.exit_index for s in run.samples] == [0] * 6
    assert [s.class_index for s in run.samples] == np.argmax(final, axis=1).tolist()
    # the final exit always decides, with its max-softmax as the confidence (ad01's
    # 640 outputs were once "rejected" with confidence INT32_MIN: over 256 classes)
    assert not any(s.rejected for s in run.samples)
    scale = model.graph.tensors[model.stages[-1].outputs[0]].quant.scale[0]
    expected = int8_score(int8_probabilities(final, scale), "max_softmax")
    assert [s.confidence for s in run.samples] == expected.tolist()


@requires_sanitizers
def test_truncated_stdin_is_a_clean_error(bundle_root: Path, tmp_path: Path) -> None:
    """A cut-off last sample is reported (exit 2), never read past or padded."""
    model = load_codegen_model(int8_bundle("sequential", bundle_root).path)
    project = generate_project(model, load_target("host"), tmp_path / "p")
    binary = build(project, sanitize=True).binary
    size = project.input_bytes
    per_sample = sum(b for stage in project.stage_outputs for _, b in stage) + 24
    whole = np.random.default_rng(3).integers(-128, 128, 2 * size).astype(np.int8).tobytes()
    for data, samples, code in ((b"", 0, 0), (whole[:1], 0, 2), (whole[:size + 7], 1, 2),
                                (whole[:2 * size - 1], 1, 2), (whole, 2, 0)):
        proc = subprocess.run([str(binary)], input=data, capture_output=True, timeout=60)
        stderr = proc.stderr.decode(errors="replace")
        assert not sanitizer_findings(stderr), stderr
        assert proc.returncode == code, (len(data), stderr)
        assert len(proc.stdout) == samples * per_sample
        if code:
            assert stderr.count("\n") == 1 and "ends inside a sample" in stderr


@requires_sanitizers
def test_build_command_sanitize(capsys: pytest.CaptureFixture[str], bundle_root: Path,
                                tmp_path: Path) -> None:
    bundle = int8_bundle("depthwise", bundle_root)
    host = tmp_path / "host"
    code, _, err = run_cli(capsys, "codegen", str(bundle.path), "--target", "host", "--out",
                           str(host))
    assert code == 0, err
    code, out, err = run_cli(capsys, "build", str(host), "--sanitize", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["sanitizers"] == ["address", "undefined"]
    assert Path(report["binary"]).name == "model-sanitized" and Path(report["binary"]).is_file()
    makefile = host / "Makefile"  # a project generated before `make sanitize` existed
    makefile.write_text(makefile.read_text().split("\nsanitize:")[0] + "\n")
    code, _, err = run_cli(capsys, "build", str(host), "--sanitize")
    assert code == 7 and "without a sanitizer build; run `eedge codegen` again" in err
    mcu = tmp_path / "mcu"
    code, _, err = run_cli(capsys, "codegen", str(bundle.path), "--target", "qemu-cortex-m4",
                           "--out", str(mcu))
    assert code == 0, err
    code, out, err = run_cli(capsys, "build", str(mcu), "--sanitize", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["sanitizers"] == ["undefined (trap)"]
    assert Path(report["binary"]).name == "firmware-sanitized.elf"


def deep_mlp(exits: int, classes: int = 3, width: int = 8) -> onnx.ModelProto:
    """x[N,8] -> (Gemm, Relu) per stage, each with a ``classes``-wide exit head (onnx.helper)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(4)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((0.4 * rng.standard_normal(shape)).astype(np.float32),
                                       name)

    inits, nodes, outputs, h = [], [], [], "x"
    for k in range(exits):
        inits += [weight(f"w{k}", width, width), weight(f"b{k}", width),
                  weight(f"we{k}", classes, width), weight(f"be{k}", classes)]
        nodes += [helper.make_node("Gemm", [h, f"w{k}", f"b{k}"], [f"g{k}"], transB=1),
                  helper.make_node("Relu", [f"g{k}"], [f"h{k}"]),
                  helper.make_node("Gemm", [f"h{k}", f"we{k}", f"be{k}"], [f"exit{k}"],
                                   transB=1)]
        outputs.append(helper.make_tensor_value_info(f"exit{k}", TensorProto.FLOAT,
                                                     ["N", classes]))
        h = f"h{k}"
    graph = helper.make_graph(nodes, "deep", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", width])], outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def mlp_codegen_model(root: Path, exits: int, classes: int = 3) -> CodegenModel:
    onnx.save(deep_mlp(exits, classes), root / "mlp.onnx")
    calibration = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    bundle = export_onnx(root / "mlp.onnx", root / "bundle", int8=True,
                         calibration=calibration, force=True).bundle
    return load_codegen_model(bundle.path)


@requires_sanitizers
def test_more_stages_than_the_runtime_counts_are_refused(tmp_path: Path) -> None:
    """17 stages overflowed eedge_result.stage_ticks[16] (ASan: stack-buffer-overflow)."""
    deep = mlp_codegen_model(tmp_path, MAX_STAGES + 1)
    with pytest.raises(TargetError, match=f"{MAX_STAGES + 1} stages; the C runtime runs at "
                                          f"most {MAX_STAGES}"):
        generate_project(deep, load_target("host"), tmp_path / "too-deep")
    assert not (tmp_path / "too-deep").exists()
    runtime_h = (Path(__file__).parents[2] / "firmware_templates" / "runtime" / "include" /
                 "eedge" / "runtime.h").read_text()
    assert f"#define EEDGE_MAX_STAGES {MAX_STAGES} " in runtime_h
    (tmp_path / "16").mkdir()
    most = mlp_codegen_model(tmp_path / "16", MAX_STAGES)  # as deep as the runtime goes
    samples = np.concatenate([np.random.default_rng(1).integers(-128, 128, (4, 8)),
                              edge_values((8,))]).astype(np.int8)
    _, run = sanitized_run(most, tmp_path / "deepest", samples)
    assert_matches_reference(most, samples, SimpleNamespace(run=run))
    assert {s.stages_run for s in run.samples} == {MAX_STAGES}


@requires_sanitizers
def test_exits_with_more_than_256_classes_score_like_python(tmp_path: Path) -> None:
    """The exit score once needed a 256-byte buffer: wider exits were 'rejected'."""
    model = mlp_codegen_model(tmp_path, 2, classes=300)
    samples = np.concatenate([np.random.default_rng(2).integers(-128, 128, (6, 8)),
                              edge_values((8,))]).astype(np.int8)
    env = execute(model.graph, {model.input: samples})
    for label, criterion, threshold, decides in (("final", "max_softmax", None, 1),
                                                 ("first", "margin", 0.0, 0)):
        variant = copy.copy(model)
        variant.criteria = [criterion, "max_softmax"]
        variant.thresholds = [threshold, None]
        _, run = sanitized_run(variant, tmp_path / label, samples)
        logits = env[model.exit_tensor(decides)].reshape(len(samples), -1)
        scale = model.graph.tensors[model.exit_tensor(decides)].quant.scale[0]
        expected = int8_score(int8_probabilities(logits, scale), criterion)
        assert [s.exit_index for s in run.samples] == [decides] * len(samples)
        assert not any(s.rejected for s in run.samples)
        assert [s.confidence for s in run.samples] == expected.tolist()
        assert [s.class_index for s in run.samples] == np.argmax(logits, axis=1).tolist()


@requires_sanitizers
def test_biases_that_overflow_the_accumulator_are_refused(tmp_path: Path) -> None:
    """A bias near 2^31 (a damaged file passes the reader) was signed overflow in conv.c."""
    model = mlp_codegen_model(tmp_path, 2)
    g = model.graph
    fc = next(g.nodes[i] for i in model.stages[0].nodes
              if g.nodes[i].op_type == "FULLY_CONNECTED")
    weights, bias = g.constants[fc.inputs[1]], fc.inputs[2]
    zero_point = int(g.tensors[fc.inputs[0]].quant.zero_point[0])
    reach = max(127 - zero_point, zero_point + 128)
    largest = (1 << 31) - 1 - reach * int(np.abs(weights.astype(np.int64)).sum(axis=1).max())
    samples = np.concatenate([np.random.default_rng(3).integers(-128, 128, (4, 8)),
                              edge_values((8,))]).astype(np.int8)
    for value, ok in ((largest, True), (-largest, True), (largest + 1, False)):
        g.constants[bias] = np.full_like(g.constants[bias], value)
        if not ok:
            with pytest.raises(ModelError, match="int32 accumulator"):
                generate_project(model, load_target("host"), tmp_path / "refused")
            continue
        _, run = sanitized_run(model, tmp_path / f"bias{value}", samples)  # the edge: clean
        assert_matches_reference(model, samples, SimpleNamespace(run=run))


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed")
def test_clang_builds_the_generated_c_without_warnings(bundle_root: Path,
                                                       tmp_path: Path) -> None:
    """clang -Wall -Wextra -Werror (the Makefile's flags), plain and with its sanitizers."""
    models = {"depthwise": load_codegen_model(int8_bundle("depthwise", bundle_root).path),
              "audio1d": load_codegen_model(int8_bundle("audio1d", bundle_root).path)}
    if (MLPERF / "kws_ref_model.tflite").is_file():
        models["kws"] = load_codegen_model(MLPERF / "kws_ref_model.tflite")
    for name, model in models.items():
        project = generate_project(model, load_target("host"), tmp_path / name)
        for goal in ("build/model", "sanitize"):
            proc = subprocess.run(["make", "-C", str(project.path), "CC=clang", goal],
                                  capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, f"{name} {goal}: {proc.stderr[-2000:]}"
        samples = edge_values((project.input_bytes,))
        run = run_host(project, project.path / "build" / "model-sanitized", samples)
        assert_matches_reference(model, samples, SimpleNamespace(run=run))


@pytest.mark.skipif(shutil.which("qemu-system-arm") is None
                    or shutil.which("arm-none-eabi-gcc") is None,
                    reason="the Arm toolchain or QEMU is not installed")
@pytest.mark.parametrize("name", ["residual", "audio1d"])
def test_dsp_kernels_under_trapping_ubsan_in_qemu(name: str, bundle_root: Path,
                                                   tmp_path: Path) -> None:
    """The SMLAD/SXTAB16 paths only build for Cortex-M: UBSan in trap mode covers them
    (conv and FC in residual, depthwise in audio1d); a finding would fault and exit 3."""
    model = load_codegen_model(int8_bundle(name, bundle_root).path)
    shape = user_shape(model)
    rng = np.random.default_rng(9)
    q = np.concatenate([rng.integers(-128, 128, (2,) + shape).astype(np.int8),
                        edge_values(shape)])
    samples = quantized(model, dequantized(model, q))
    target = load_target("qemu-cortex-m4")
    project = generate_project(model, target, tmp_path / "fw", samples, dsp=True)
    elf = build(project, sanitize=True).binary
    assert elf.name == "firmware-sanitized.elf"
    disassembly = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)],
                                 capture_output=True, text=True, check=True).stdout
    assert "\tudf\t" in disassembly, "UBSan inserted no trap"
    try:
        run = run_qemu(project, target, elf)
    except ToolchainError as exc:  # a trap ends in the fault handler: exit 3
        pytest.fail(f"sanitized {name} on the Cortex-M4: {exc}")
    assert_matches_reference(model, samples, SimpleNamespace(run=run))
