"""The cascade: routing, early exit decisions, thresholds, input checks."""

from __future__ import annotations

import numpy as np
import pytest
from zoo import example_input

from eedge.errors import InputDataError
from eedge.policies.criteria import confidence
from eedge.runtime.cascade import Cascade


@pytest.fixture(scope="module")
def residual_bundle(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import onnx
    from conftest import exported_onnx

    from eedge.export import export_onnx

    path = tmp_path_factory.mktemp("m") / "residual.onnx"
    onnx.save(exported_onnx("residual"), path)
    return export_onnx(path, path.parent / "bundle").bundle


def test_zero_thresholds_exit_everything_at_exit0(residual_bundle) -> None:  # type: ignore[no-untyped-def]
    result = Cascade(residual_bundle, thresholds=[0.0, 0.0, None]).infer(example_input(batch=6))
    assert (result.exit_index == 0).all()
    assert result.stage_samples == [6, 0, 0]


def test_no_thresholds_run_every_stage(residual_bundle) -> None:  # type: ignore[no-untyped-def]
    cascade = Cascade(residual_bundle)
    x = example_input(batch=5)
    result = cascade.infer(x)
    assert (result.exit_index == 2).all()
    final = cascade.run_all_exits(x)[2]
    assert np.array_equal(result.predictions, final.argmax(axis=1))
    assert np.allclose(result.probabilities.sum(axis=1), 1.0)


def test_batch_routing_equals_one_sample_at_a_time(residual_bundle) -> None:  # type: ignore[no-untyped-def]
    cascade = Cascade(residual_bundle)
    x = example_input(seed=3, batch=40)
    logits = cascade.run_all_exits(x)
    # thresholds at the median confidence: about half leave at each early exit
    thresholds = [float(np.median(confidence(lg))) for lg in logits[:-1]] + [None]
    cascade.set_thresholds(thresholds)
    batch = cascade.infer(x)
    assert len(set(batch.exit_index.tolist())) == 3, "every exit should take some samples"
    assert batch.stage_samples[0] == 40 and batch.stage_samples[0] > batch.stage_samples[1] \
        > batch.stage_samples[2] > 0
    for i in range(len(x)):
        single = cascade.infer(x[i])
        assert single.exit_index[0] == batch.exit_index[i]
        assert single.predictions[0] == batch.predictions[i]
        expected_exit = batch.exit_index[i]
        assert batch.predictions[i] == logits[expected_exit][i].argmax()
        for k in range(expected_exit):
            assert confidence(logits[k][i:i + 1])[0] < thresholds[k]
        if expected_exit < 2:
            assert batch.confidence[i] >= thresholds[expected_exit]


def test_early_exit_can_be_switched_off(residual_bundle) -> None:  # type: ignore[no-untyped-def]
    cascade = Cascade(residual_bundle, thresholds=[0.0, 0.0, None])
    assert (cascade.infer(example_input(), early_exit=False).exit_index == 2).all()


@pytest.mark.parametrize("shape", [(2, 3, 9, 8), (3, 8, 8, 2), (8,)])
def test_wrong_input_shape(residual_bundle, shape: tuple) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputDataError, match="expects"):
        Cascade(residual_bundle).infer(np.zeros(shape, np.float32))


def test_non_numeric_input_and_bad_thresholds(residual_bundle) -> None:  # type: ignore[no-untyped-def]
    cascade = Cascade(residual_bundle)
    with pytest.raises(InputDataError, match="dtype"):
        cascade.infer(np.array([["a"]]))
    with pytest.raises(InputDataError, match="one per exit"):
        cascade.set_thresholds([0.5])
    with pytest.raises(InputDataError, match="outside"):
        cascade.set_thresholds([1.5, None, None])


def test_fixed_batch_models_run_row_by_row(bundle_of) -> None:  # type: ignore[no-untyped-def]
    from eedge.export import export_onnx
    from zoo import onnx_two_exit_mlp

    del bundle_of
    import tempfile
    from pathlib import Path

    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fixed.onnx"
        onnx.save(onnx_two_exit_mlp(batch=1), path)
        bundle = export_onnx(path, Path(tmp) / "b").bundle
        cascade = Cascade(bundle)
        assert not cascade.dynamic_batch
        x = np.random.default_rng(0).standard_normal((7, 16)).astype(np.float32)
        result = cascade.infer(x)
        assert result.predictions.shape == (7,)
        assert np.array_equal(result.predictions, cascade.run_all_exits(x)[1].argmax(axis=1))


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import onnx
    from conftest import exported_onnx

    from eedge.export import export_onnx

    path = tmp_path_factory.mktemp("q") / "depthwise.onnx"
    onnx.save(exported_onnx("depthwise"), path)
    return export_onnx(path, path.parent / "bundle", formats=("onnx", "tflite"), int8=True,
                       calibration=example_input(seed=5, batch=64)).bundle


def test_runtimes_agree(int8_bundle) -> None:  # type: ignore[no-untyped-def]
    x = example_input(seed=6, batch=30)
    onnx_logits = Cascade(int8_bundle, runtime="onnx").run_all_exits(x)
    tflite_logits = Cascade(int8_bundle, runtime="tflite").run_all_exits(x)
    for a, b in zip(onnx_logits, tflite_logits):
        np.testing.assert_allclose(a, b, atol=1e-4)
    reference = Cascade(int8_bundle, runtime="int8-reference")
    tflm = Cascade(int8_bundle, runtime="int8-tflm")
    for a, b in zip(reference.run_all_exits(x, raw=True), tflm.run_all_exits(x, raw=True)):
        assert a.dtype == np.int8 and np.array_equal(a, b)
    thresholds = [0.5, None]
    reference.set_thresholds(thresholds)
    tflm.set_thresholds(thresholds)
    r, t = reference.infer(x), tflm.infer(x)
    assert np.array_equal(r.exit_index, t.exit_index)
    assert np.array_equal(r.predictions, t.predictions)


def test_missing_format_is_a_clear_error(residual_bundle) -> None:  # type: ignore[no-untyped-def]
    from eedge.errors import BundleError

    with pytest.raises(BundleError, match="no tflite_int8 stage files.*--int8"):
        Cascade(residual_bundle, runtime="int8")
    with pytest.raises(InputDataError, match="unknown runtime"):
        Cascade(residual_bundle, runtime="gpu")
