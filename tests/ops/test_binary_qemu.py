"""The binary kernels on a Cortex-M4 (QEMU mps2-an386), DSP path on and off.

One model, two builds: the chain of tests/ops/test_binary.py reaches every
branch of binary.c (lookup-table ADD/SUB with SSAT and with a fused
activation's clamp, MUL's four-lane SXTAB16 path with and without clamping
and with a left-shifting multiplier, MAXIMUM/MINIMUM's SSUB8/SEL lanes, and
the generic broadcast walks); both paths must give the reference's bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_binary import _device_exits, chain_graph, chain_inputs

from eedge.backends.tflite_writer import graph_to_tflite
from eedge.codegen.device_run import run_on_target
from eedge.codegen.model_source import load_codegen_model
from eedge.reference.executor import execute
from eedge.targets import load_target


@pytest.mark.parametrize("dsp", [True, False])
def test_cortex_m4_runs_the_chain_bit_exactly(tmp_path: Path, dsp: bool) -> None:
    graph = chain_graph()
    path = tmp_path / "chain.tflite"
    path.write_bytes(graph_to_tflite(graph, range(len(graph.nodes)), ["x"], graph.exits))
    model = load_codegen_model(path)
    x = chain_inputs(8)
    run = run_on_target(model, load_target("qemu-cortex-m4"), x, dsp=dsp)
    assert run.summary()["dsp"] is dsp
    expected = execute(model.graph, {"x": x})
    device = _device_exits(run)
    for name in graph.exits:
        assert np.array_equal(device[name].reshape(expected[name].shape), expected[name]), name
