"""The generated C follows eedge's reference (not TFLM) on a scale-changing RELU6."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from relu6_model import int8_inputs, relu6_model

from eedge.codegen.device_run import run_on_target
from eedge.codegen.model_source import load_codegen_model
from eedge.codegen.project import generate_project
from eedge.reference.executor import execute
from eedge.runtime.interpreters import TFLMModel
from eedge.targets import load_target


def test_generated_relu6_requantizes(tmp_path: Path) -> None:
    path = tmp_path / "x.tflite"
    path.write_bytes(relu6_model())
    generate_project(load_codegen_model(path), load_target("host"), tmp_path / "fw")
    source = (tmp_path / "fw" / "model.c").read_text()
    assert re.search(r"/\* RELU6 relu6_1 \*/ eedge_requantize_s8\(", source)
    params = re.search(r"eedge_requant_params \w+ = \{([^}]*)\}", source)
    assert params is not None
    # 0.05 / (6/255) = 2.125 = 0.53125 * 2**2; output zero point -128, Q(6) = 127
    assert ".in_offset = 20, .out_offset = -128, .multiplier = 1140850688, .shift = 2, " \
        ".act_min = -128, .act_max = 127" in params.group(1)


def test_host_build_equals_the_reference_not_tflm(tmp_path: Path) -> None:
    path = tmp_path / "x.tflite"
    path.write_bytes(relu6_model())
    model = load_codegen_model(path)
    x = int8_inputs(200, seed=9)
    run = run_on_target(model, load_target("host"), x)
    device = np.stack([s.stage_outputs[-1][0] for s in run.run.samples])
    expected = execute(model.graph, {model.input: x})["logits"]
    assert np.array_equal(device, expected.reshape(device.shape))
    tflm = TFLMModel(path.read_bytes(), 1).run([x])[0]
    assert not np.array_equal(device, tflm.reshape(device.shape))
