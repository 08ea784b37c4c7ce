"""Whole-graph PTQ follows TFLite's int8 spec."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import exported_onnx
from zoo import example_input

from eedge.errors import InputDataError
from eedge.frontends.onnx_frontend import onnx_to_graph
from eedge.passes.lower_tflite import lower_to_tflite
from eedge.passes.quantize import (affine_params, observe_ranges, quantize_graph,
                                   symmetric_weights)


def calibrated(name: str, observer: str = "minmax"):  # type: ignore[no-untyped-def]
    lowered = lower_to_tflite(onnx_to_graph(exported_onnx(name)))
    batches = [{"input": example_input(seed=s, batch=16).transpose(0, 2, 3, 1)}
               for s in range(3)]
    ranges = observe_ranges(lowered, batches, observer)
    return lowered, ranges, quantize_graph(lowered, ranges)


def test_affine_params_contain_zero_exactly() -> None:
    for low, high in [(0.0, 6.0), (-1.0, 3.0), (2.0, 5.0), (-4.0, -1.0), (0.0, 0.0)]:
        p = affine_params(low, high)
        assert -128 <= p.zero_point[0] <= 127 and p.scale[0] > 0
        # 0.0 is representable: q = zero point
        assert min(low, 0) - p.scale[0] <= p.scale[0] * (-128 - p.zero_point[0]) <= min(low, 0) + 1e-6
    assert np.float32(affine_params(-1, 1).scale[0]) == affine_params(-1, 1).scale[0]


def test_symmetric_per_channel_weights() -> None:
    w = np.stack([np.linspace(-1, 1, 9), np.linspace(-0.1, 0.05, 9)]).reshape(2, 3, 3, 1)
    q, params = symmetric_weights(w, axis=0)
    assert params.axis == 0 and params.zero_point == (0, 0)
    assert q.dtype == np.int8 and q.min() >= -127 and q.max() <= 127
    assert q[0].max() == 127 and q[1].min() == -127
    np.testing.assert_allclose(q[1] * params.scale[1], w[1], atol=params.scale[1] / 2 + 1e-9)


def test_quantized_graph_types_and_shared_params() -> None:
    lowered, ranges, q = calibrated("branchy")
    assert all(t.dtype == "int8" and t.quant is not None for t in q.tensors.values())
    for node in q.nodes:
        if node.op_type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            assert q.constants[node.inputs[1]].dtype == np.int8
            assert q.constants[node.inputs[2]].dtype == np.int32
            w_q = q.const_quant[node.inputs[1]]
            assert (w_q.axis == 0) == (node.op_type == "CONV_2D") or node.op_type != "CONV_2D"
        if node.op_type in ("RESHAPE", "MAX_POOL_2D", "AVERAGE_POOL_2D", "CONCATENATION", "PAD"):
            out = q.tensors[node.outputs[0]].quant
            for t in q.activation_inputs(node):
                assert q.tensors[t].quant == out, f"{node.op_type} must not requantize"
    # every observed range is inside its tensor's representable range
    for name, r in ranges.items():
        p = q.tensors[name].quant
        low = p.scale[0] * (-128 - p.zero_point[0])
        high = p.scale[0] * (127 - p.zero_point[0])
        assert low <= r.low + p.scale[0] and high >= r.high - p.scale[0]


def test_percentile_observer_clips_outliers() -> None:
    _, full, _ = calibrated("sequential", "minmax")
    _, clipped, _ = calibrated("sequential", "percentile")
    assert any(clipped[n].high < full[n].high for n in full)
    assert all(clipped[n].high <= full[n].high + 1e-9 for n in full)


def test_bad_calibration() -> None:
    lowered = lower_to_tflite(onnx_to_graph(exported_onnx("sequential")))
    with pytest.raises(InputDataError, match="no calibration data"):
        observe_ranges(lowered, [])
    with pytest.raises(InputDataError, match="observer"):
        observe_ranges(lowered, [], "kl")
    bad = example_input(batch=2).transpose(0, 2, 3, 1)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InputDataError, match="not finite"):
        observe_ranges(lowered, [{"input": bad}])
