"""The activation family's C kernels: host build (plain, and ASan + UBSan) and QEMU Cortex-M4
(DSP on and off) equal the int8 reference byte for byte.

LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU and ELU run as 256-byte tables the
generator computes from the reference kernels (eedge_lut_s8, a word of four
bytes per iteration on the DSP path); PRELU has its own fixed-point kernel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_activations_models import LOGISTIC_Q, TANH_Q, Act, every_byte, model

from eedge.codegen.device_run import run_on_target
from eedge.codegen.model_source import CodegenModel, load_codegen_model
from eedge.codegen.project import generate_project, plan_for
from eedge.codegen.toolchain import build, run_host
from eedge.errors import ToolchainError
from eedge.reference.executor import execute
from eedge.targets import load_target

ALPHA4 = (np.array([-90, -3, 40, 127], np.int8).reshape(1, 1, 4), (0.01, -2))


def branches() -> list[Act]:
    """Every activation reading the model input: each exit is one op on every byte (PRELU
    twice: per-channel alpha, and one alpha value, which becomes a table lookup)."""
    return [Act("LOGISTIC", LOGISTIC_Q), Act("TANH", TANH_Q), Act("HARD_SWISH", (0.03, -100)),
            Act("LEAKY_RELU", (0.04, -10), alpha=0.1), Act("PRELU", (0.04, -10), prelu=ALPHA4),
            Act("ELU", (0.04, 30)),
            Act("PRELU", (0.03, 20), prelu=(np.full((1, 1, 4), 77, np.int8), (0.004, -50)))]


def chain() -> list[Act]:
    """LOGISTIC on the input (exit 0); HARD_SWISH -> LEAKY_RELU -> PRELU -> ELU -> TANH (exit 1):
    every link may run in place (the planner aliases output and input)."""
    return [Act("LOGISTIC", LOGISTIC_Q), Act("HARD_SWISH", (0.04, -90)),
            Act("LEAKY_RELU", (0.035, -60), alpha=-0.2, source=2),
            Act("PRELU", (0.03, -40), prelu=(np.arange(-3, 4, dtype=np.int8) * 30, (0.01, 0)),
                source=3),
            Act("ELU", (0.03, 10), source=4), Act("TANH", TANH_Q, source=5)]


def equals_reference(m: CodegenModel, x: np.ndarray, samples: list) -> None:
    env = execute(m.graph, {m.input: x})
    compared = 0
    for k, stage in enumerate(m.stages):
        expected = env[stage.outputs[0]]
        device = np.stack([s.stage_outputs[k][0] for s in samples]).reshape(expected.shape)
        assert np.array_equal(device, expected), \
            f"stage {k} ({stage.outputs[0]}): {int((device != expected).sum())} bytes differ"
        compared += expected.size
    assert compared == len(m.stages) * x.size


def device_equals_reference(path: Path, x: np.ndarray, target: str, dsp: bool | None = None
                            ) -> None:
    m = load_codegen_model(path)
    equals_reference(m, x, run_on_target(m, load_target(target), x, dsp=dsp).run.samples)


def test_host_build_equals_the_reference_for_every_op(tmp_path: Path) -> None:
    shape = (1, 8, 8, 4)
    path = tmp_path / "branches.tflite"
    path.write_bytes(model(shape, (0.05, 3), branches(), outputs=[1, 2, 3, 4, 5, 6, 7]))
    device_equals_reference(path, every_byte(shape, extra=3), "host")


def test_chain_runs_in_place_and_clean_under_sanitizers_on_the_host(tmp_path: Path) -> None:
    """ASan + UBSan build (the Makefile's `sanitize`): no finding, and the reference bytes."""
    shape = (1, 1, 37, 7)   # 259 bytes: every value, and a tail that is not a whole word
    path = tmp_path / "chain.tflite"
    path.write_bytes(model(shape, (0.06, -5), chain(), outputs=[1, 6]))
    m = load_codegen_model(path)
    offsets = plan_for(m).offsets
    in_place = [n for n in m.graph.nodes if n.op_type != "RESHAPE"
                and offsets[n.inputs[0]] == offsets[n.outputs[0]]]
    assert len(in_place) >= 2   # the planner aliases every other link of a chain
    x = np.concatenate([np.resize(np.arange(-128, 128, dtype=np.int8), shape),
                        np.full(shape, 127, np.int8), np.full(shape, -128, np.int8),
                        np.random.default_rng(5).integers(-128, 128, shape, dtype=np.int8)])
    project = generate_project(m, load_target("host"), tmp_path / "host")
    try:
        run = run_host(project, build(project, sanitize=True).binary, x.reshape(len(x), -1))
    except ToolchainError as exc:   # a non-zero exit or a sanitizer report
        pytest.fail(f"sanitized build: {exc}")
    equals_reference(m, x, run.samples)


@pytest.mark.parametrize("dsp", [False, True], ids=["portable", "dsp"])
def test_qemu_cortex_m4_equals_the_reference(dsp: bool, tmp_path: Path) -> None:
    shape = (1, 1, 37, 7)
    path = tmp_path / "chain.tflite"
    path.write_bytes(model(shape, (0.06, -5), chain(), outputs=[1, 6]))
    x = np.concatenate([np.resize(np.arange(-128, 128, dtype=np.int8), shape),
                        np.random.default_rng(6).integers(-128, 128, shape, dtype=np.int8)])
    device_equals_reference(path, x, "qemu-cortex-m4", dsp=dsp)
