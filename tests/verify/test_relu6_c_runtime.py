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
from eedge.reference.int8_kernels import INT8_KERNELS
from eedge.runtime.interpreters import TFLMModel
from eedge.targets import load_target


def test_generated_relu6_is_the_requantizing_reference_as_a_table(tmp_path: Path) -> None:
    """The code generator tabulates the byte-to-byte RELU6 from eedge's reference kernel."""
    path = tmp_path / "x.tflite"
    path.write_bytes(relu6_model())
    model = load_codegen_model(path)
    generate_project(model, load_target("host"), tmp_path / "fw")
    source = (tmp_path / "fw" / "model.c").read_text()
    call = re.search(r"/\* EEDGE_LUT \w*relu6_1 \*/ eedge_lut_s8\((\w+_table), ", source)
    assert call is not None
    body = re.search(rf"static const int8_t {call.group(1)}\[256\] = \{{([^}}]*)\}}", source)
    assert body is not None
    table = np.array([int(v) for v in body.group(1).split(",")], np.int8)
    node = next(n for n in model.graph.nodes if n.op_type == "RELU6")
    every = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    expected = INT8_KERNELS["RELU6"](node, model.graph, [every]).reshape(-1)
    assert np.array_equal(table, np.concatenate([expected[128:], expected[:128]]))
    # input scale 0.05, zero point -20; output 6/255, -128: byte -20 is 0.0 -> -128, byte 20
    # is 2.0 -> 85 steps -> -43, byte 127 is 7.35 -> clamped at 6.0 -> 127
    assert table[256 - 20] == -128 and table[20] == -43 and table[127] == 127


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
