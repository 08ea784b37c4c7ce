"""Standard int8 models nobody here wrote: eedge's reference gives TFLM's bytes.

The expected bytes for the three xorshift inputs were recorded from TFLite
Micro running on an emulated Cortex-M4 (../shared/baselines); random inputs
are compared with tflite-micro's Python interpreter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eedge.frontends.tflite_frontend import load_tflite
from eedge.passes.cost import total_macs
from eedge.reference.executor import execute
from eedge.runtime.interpreters import TFLMModel

SHARED = Path(__file__).resolve().parents[3] / "shared"
MODELS = SHARED / "models" / "mlperf_tiny"
BASELINE = SHARED / "baselines" / "tflm-cortex-m4" / "results.json"
FILES = {"kws": "kws_ref_model.tflite", "resnet": "pretrainedResnet_quant.tflite",
         "vww": "vww_96_int8.tflite", "ad01": "ad01_int8.tflite"}
MACS = {"kws": 2_656_768, "resnet": 12_501_632, "vww": 7_489_664, "ad01": 264_192}

pytestmark = pytest.mark.skipif(not MODELS.is_dir() or not BASELINE.is_file(),
                                reason="../shared/models/mlperf_tiny or the TFLM baseline is "
                                       "absent")


def xorshift_bytes(seed: int, count: int) -> np.ndarray:
    """The baseline's input generator (see its README)."""
    s = (0x9E3779B9 ^ ((seed * 0x85EBCA6B) & 0xFFFFFFFF)) & 0xFFFFFFFF or 1
    out = np.empty(count, np.uint8)
    for i in range(count):
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        out[i] = s >> 24
    return out


@pytest.mark.parametrize("model", sorted(FILES))
def test_reference_reproduces_tflm_on_cortex_m4(model: str) -> None:
    graph, data = load_tflite(MODELS / FILES[model])
    assert total_macs(graph, range(len(graph.nodes))) == MACS[model]
    expected = json.loads(BASELINE.read_text())["runs"][f"ref-O2/{model}"]["outputs_hex"]
    spec = graph.inputs[0]
    shape = [int(d) for d in spec.shape]
    for seed, hex_bytes in expected.items():
        x = xorshift_bytes(int(seed), int(np.prod(shape))).view(np.int8).reshape(shape)
        out = execute(graph, {spec.name: x})[graph.exits[0]]
        assert out.tobytes().hex() == hex_bytes, f"{model} seed {seed}"


@pytest.mark.parametrize("model", sorted(FILES))
def test_reference_equals_tflite_micro_on_random_inputs(model: str) -> None:
    graph, data = load_tflite(MODELS / FILES[model])
    spec = graph.inputs[0]
    rng = np.random.default_rng(7)
    count = 20 if model in ("vww", "resnet") else 60
    x = rng.integers(-128, 128, size=[count] + [int(d) for d in spec.shape[1:]], dtype=np.int8)
    ours = np.concatenate([execute(graph, {spec.name: x[i:i + 1]})[graph.exits[0]]
                           for i in range(count)])
    theirs = TFLMModel(data, 1).run([x])[0]
    assert np.array_equal(ours, theirs.reshape(ours.shape))
