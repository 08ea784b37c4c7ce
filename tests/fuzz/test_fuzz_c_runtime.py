"""Fuzz: the generated C runtime under ASan+UBSan, on hostile models and hostile stdin.

Models: the small three-exit CNN's int8 files (small_models.py) mutated the way
test_fuzz_tflite.py mutates them (bit flips, overwrites, writes aimed at scales,
zero points, shapes, buffers...), plus graph-level writes of extreme int32
biases and int8 weights that no file check looks at. Whatever ``eedge codegen``
accepts is built with ``make sanitize`` and run on random and edge-value
inputs: no sanitizer report, and every stage's bytes equal to eedge's reference
executor. Whatever it refuses must be one EedgeError (never another exception).
Stdin: the pristine sanitized binary gets whole samples followed by a cut-off
tail of random length: exit 0 or 2, output only for whole samples, no report.

Each accepted model costs a build (about a second), so the model loop runs a
fifth of ``EEDGE_FUZZ_CASES`` (8 by default) and the stdin loop all of them.
"""

from __future__ import annotations

import copy
import random
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from fuzz.harness import FuzzTally, case_count, seeds
from fuzz.small_models import tiny_int8_bundle
from fuzz.test_fuzz_tflite import model_fields, mutate

from eedge.codegen.model_source import CodegenModel, load_codegen_model
from eedge.codegen.project import GeneratedProject, generate_project
from eedge.codegen.toolchain import build, sanitizer_findings
from eedge.errors import EedgeError
from eedge.reference.executor import execute
from eedge.targets import load_target



def _sanitizers_work() -> bool:
    proc = subprocess.run(["gcc", "-fsanitize=address,undefined", "-x", "c", "-", "-o",
                           "/dev/null"], input="int main(void){return 0;}", text=True,
                          capture_output=True)
    return proc.returncode == 0


pytestmark = [pytest.mark.fuzz,
              pytest.mark.skipif(shutil.which("gcc") is None or not _sanitizers_work(),
                                 reason="gcc cannot link ASan/UBSan here")]

INT32 = (1 << 31) - 1


def edge_and_random(rng: random.Random, size: int) -> np.ndarray:
    gen = np.random.default_rng(rng.getrandbits(32))
    alternating = np.where(np.arange(size) % 2 == 0, -128, 127)
    return np.stack([np.full(size, -128), np.full(size, 127), alternating, np.zeros(size),
                     gen.integers(-128, 128, size), gen.integers(-128, 128, size)]
                    ).astype(np.int8)


def graph_mutation(model: CodegenModel, rng: random.Random) -> str:
    """Extreme biases or weights written into the int8 graph itself."""
    g = model.graph
    layers = [n for n in g.nodes if n.op_type in ("CONV_2D", "DEPTHWISE_CONV_2D",
                                                  "FULLY_CONNECTED")]
    node = rng.choice(layers)
    if rng.random() < 0.6 and len(node.inputs) > 2 and node.inputs[2] in g.constants:
        name = node.inputs[2]
        value = rng.choice([INT32, -INT32 - 1, INT32 - 100_000, 1 << 30, -(1 << 30),
                            rng.randint(-INT32 - 1, INT32)])
    else:
        name = node.inputs[1]
        value = rng.choice([127, -128, -127])
    array = np.array(g.constants[name], copy=True)
    flat = array.reshape(-1)
    picked = rng.sample(range(flat.size), k=min(flat.size, rng.choice([1, 3, flat.size])))
    flat[picked] = value
    g.constants[name] = array
    return f"{node.op_type} {name}[{len(picked)} of {flat.size}] = {value}"


def run_binary(binary: Path, data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(binary)], input=data, capture_output=True, timeout=120)


def check_model_case(model: CodegenModel, out: Path, rng: random.Random, what: str) -> int:
    """Generate, build with sanitizers, run: 0 when accepted and clean, 3+ when refused."""
    try:
        project = generate_project(model, load_target("host"), out)
    except EedgeError as exc:
        return exc.exit_code
    binary = build(project, sanitize=True).binary
    samples = edge_and_random(rng, project.input_bytes)
    proc = run_binary(binary, samples.tobytes())
    stderr = proc.stderr.decode(errors="replace")
    findings = sanitizer_findings(stderr)
    assert not findings and proc.returncode == 0, f"{what}: {findings or stderr[-2000:]}"
    shape = (len(samples),) + tuple(int(d) for d in model.graph.tensors[model.input].shape[1:])
    env = execute(model.graph, {model.input: samples.reshape(shape)})
    outputs = [(name, size) for stage in project.stage_outputs for name, size in stage]
    expected = b"".join(env[name][n].reshape(-1)[:size].astype(np.int8).tobytes()
                        for n in range(len(samples)) for name, size in outputs)
    per_sample = sum(size for _, size in outputs) + 24
    got = b"".join(proc.stdout[n * per_sample:(n + 1) * per_sample - 24]
                   for n in range(len(samples)))
    assert got == expected, f"{what}: the sanitized C differs from the reference executor"
    return 0


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_int8_bundle(tmp_path_factory.mktemp("fuzz-c") / "pristine")


def test_fuzz_c_runtime_models(bundle: Path, tmp_path: Path) -> None:
    files = [bundle / name for name in ("model.int8.tflite", "stage0.int8.tflite")]
    bases = [(path.name, path.read_bytes()) for path in files]
    fields = {name: model_fields(data) for name, data in bases}
    pristine = load_codegen_model(bundle)
    tally = FuzzTally("c_runtime models")
    start = time.perf_counter()
    for index, rng in zip(range(max(1, case_count() // 5)), seeds("c_runtime_models")):
        case = tmp_path / f"case{index}"
        case.mkdir()
        if rng.random() < 0.5:
            name, data = rng.choice(bases)
            mutated, what = mutate(data, fields[name], rng)
            (case / "x.tflite").write_bytes(mutated)
            what = f"case {index} ({name}: {what})"
            try:
                model = load_codegen_model(case / "x.tflite")
            except EedgeError as exc:
                tally.add(exc.exit_code)
                continue
        else:
            model = copy.deepcopy(pristine)
            what = f"case {index} (graph: {graph_mutation(model, rng)})"
        tally.add(check_model_case(model, case / "p", rng, what))
    print(f"\n{tally.report()} in {time.perf_counter() - start:.1f} s")


def test_fuzz_c_runtime_stdin(bundle: Path, tmp_path: Path) -> None:
    project: GeneratedProject = generate_project(load_codegen_model(bundle),
                                                 load_target("host"), tmp_path / "p")
    binary = build(project, sanitize=True).binary
    size = project.input_bytes
    per_sample = sum(b for stage in project.stage_outputs for _, b in stage) + 24
    tally = FuzzTally("c_runtime stdin")
    start = time.perf_counter()
    for index, rng in enumerate(seeds("c_runtime_stdin")):
        whole = rng.choice([0, 0, 1, 1, 2, 3])
        tail = rng.choice([0, 1, size - 1, rng.randrange(1, size)]) if rng.random() < 0.7 else 0
        pattern = rng.choice(["random", "ff", "00", "80", "7f"])
        count = whole * size + tail
        data = (rng.randbytes(count) if pattern == "random"
                else bytes.fromhex(pattern) * count)
        proc = run_binary(binary, data)
        stderr = proc.stderr.decode(errors="replace")
        what = f"case {index}: {whole} samples + {tail} bytes of {pattern}"
        assert not sanitizer_findings(stderr), f"{what}: {stderr[-2000:]}"
        assert proc.returncode == (2 if tail else 0), f"{what}: exit {proc.returncode} {stderr}"
        assert len(proc.stdout) == whole * per_sample, what
        assert (stderr.count("\n") == 1) if tail else not stderr, what
        tally.add(proc.returncode)
    print(f"\n{tally.report()} in {time.perf_counter() - start:.1f} s")
