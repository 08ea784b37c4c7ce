"""A one-sample result (OneSampleResult): the batch result's fields, some computed on read."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable

import numpy as np
import pytest
from zoo import example_input

from eedge.runtime.cascade import Cascade, CascadeResult
from eedge.runtime.result import OneSampleResult

FIELDS = ("predictions", "probabilities", "exit_index", "confidence", "rejected",
          "confidence_q", "pending")


@pytest.fixture(scope="module")
def cascade(tmp_path_factory: pytest.TempPathFactory) -> Cascade:
    import onnx
    from conftest import exported_onnx

    from eedge.export import export_onnx

    path = tmp_path_factory.mktemp("m") / "residual.onnx"
    onnx.save(exported_onnx("residual"), path)
    return Cascade(export_onnx(path, path.parent / "bundle").bundle,
                   thresholds=[0.0, None, None])


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_fields_are_the_batch_rows_and_computed_once_on_read(cascade: Cascade) -> None:
    x = example_input(seed=5, batch=3)
    batch = cascade.infer(x)
    one = cascade.infer(x[1:2])
    assert isinstance(one, OneSampleResult)
    assert "probabilities" not in vars(one) and "confidence" not in vars(one)
    probabilities = one.probabilities
    assert "probabilities" in vars(one) and "confidence" in vars(one)  # both, once
    assert one.probabilities is probabilities
    for name in FIELDS:
        expected = getattr(batch, name)
        expected = expected[1:2] if name != "pending" else expected
        assert _equal(getattr(one, name), expected), name


def test_a_field_set_before_it_is_read_is_kept(cascade: Cascade) -> None:
    one = cascade.infer(example_input(seed=5, batch=1))
    mine = np.full(1, 7.0, np.float32)
    one.confidence = mine
    assert one.confidence is mine
    assert one.probabilities.shape == (1, cascade.exits[-1]["num_classes"])
    assert one.confidence is mine


@pytest.mark.parametrize("clone", [lambda r: pickle.loads(pickle.dumps(r)), copy.copy,
                                   copy.deepcopy])
def test_pickles_and_copies_are_plain_results(cascade: Cascade,
                                              clone: Callable[[CascadeResult],
                                                              CascadeResult]) -> None:
    one = cascade.infer(example_input(seed=6, batch=1))
    other = cascade.infer(example_input(seed=6, batch=1))
    twin = clone(one)
    assert type(twin) is CascadeResult
    for name in FIELDS:
        assert _equal(getattr(twin, name), getattr(other, name)), name
    assert twin.stage_samples == other.stage_samples


def test_shared_arrays_cannot_be_written(cascade: Cascade) -> None:
    """The int fields are arrays shared between results: writing one must fail rather than
    change other results."""
    one = cascade.infer(example_input(seed=7, batch=1))
    for name in ("predictions", "exit_index", "rejected", "confidence_q", "pending"):
        array = getattr(one, name)
        assert not array.flags.writeable, name
        if array.size:
            with pytest.raises(ValueError, match="read-only"):
                array[0] = 1
    assert one.probabilities.flags.writeable and one.confidence.flags.writeable


def test_fields_read_late_belong_to_their_own_sample(cascade: Cascade) -> None:
    """Stage outputs are borrowed buffers reused by the next call: a result read after
    later inferences must still hold its own sample's probabilities."""
    x = example_input(seed=11, batch=6)
    batch = cascade.infer(x)
    kept = [cascade.infer(x[i:i + 1]) for i in range(len(x))]
    for i, one in enumerate(kept):
        assert _equal(one.probabilities, batch.probabilities[i:i + 1]), i
        assert _equal(one.confidence, batch.confidence[i:i + 1]), i
