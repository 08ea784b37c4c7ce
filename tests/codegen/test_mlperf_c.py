"""The generated C of the four MLPerf Tiny models, in QEMU, against TFLite Micro's bytes.

The baseline recorded TFLM's output bytes (Cortex-M4, both kernel sets) for three
xorshift inputs; the C runtime must give the same bytes with the DSP kernels and with
the portable ones, on every seed. These models exercise the optimized kernels on the
shapes they are tuned for (DS-CNN's 10x4 stem and 1x1 convolutions, MobileNet's
strided 3x3 depthwise, ResNet's residual adds, the autoencoder's FC stack). The outputs
are compared with eedge's reference executor too (same bytes as TFLM, checked on random
inputs in tests/reference/test_mlperf_tiny.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from reference.test_mlperf_tiny import BASELINE, FILES, MODELS, xorshift_bytes

from eedge.codegen.device_run import run_on_target
from eedge.codegen.model_source import load_codegen_model
from eedge.reference.executor import execute
from eedge.targets import load_target

pytestmark = pytest.mark.skipif(not MODELS.is_dir() or not BASELINE.is_file(),
                                reason="../shared/models/mlperf_tiny or the TFLM baseline is "
                                       "absent")
SEEDS = (0, 1, 2)


@pytest.mark.parametrize("dsp", [True, False], ids=["dsp", "portable"])
@pytest.mark.parametrize("name", sorted(FILES))
def test_qemu_cortex_m4_gives_tflm_bytes(name: str, dsp: bool) -> None:
    runs = json.loads(BASELINE.read_text())["runs"]
    expected = runs[f"cmsis_nn-O2/{name}"]["outputs_hex"]
    model = load_codegen_model(MODELS / FILES[name])
    model.thresholds = [None] * len(model.thresholds)
    shape = [int(d) for d in model.graph.tensors[model.input].shape]
    x = np.concatenate([xorshift_bytes(s, int(np.prod(shape))).view(np.int8).reshape(shape)
                        for s in SEEDS])
    run = run_on_target(model, load_target("qemu-cortex-m4"), x, dsp=dsp)
    env = execute(model.graph, {model.input: x})
    assert len(run.run.samples) == len(SEEDS)
    for seed, sample in zip(SEEDS, run.run.samples):
        for stage, outputs in zip(model.stages, sample.stage_outputs):
            for tensor, got in zip(stage.outputs, outputs):
                assert np.array_equal(got, env[tensor][seed].reshape(-1)), \
                    f"{name} seed {seed}: {tensor} differs from the reference executor"
        assert sample.stage_outputs[-1][0].tobytes().hex() == expected[str(seed)], \
            f"{name} seed {seed}: output differs from TFLM's"
