"""The end-to-end cascade timing: structure, the decisions it streams, and the overhead paths."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "codegen"))
sys.path.insert(0, str(Path(__file__).parents[1]))

from int8_bundles import int8_bundle  # noqa: E402
from zoo import example_input  # noqa: E402

from eedge.profiling.cascade_timing import time_cascade  # noqa: E402
from eedge.profiling.prediction import end_to_end  # noqa: E402
from eedge.runtime.cascade import Cascade  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return int8_bundle("sequential", tmp_path_factory.mktemp("timing"))


@pytest.mark.parametrize("runtime", ["onnx", "int8"])
def test_time_cascade_structure_and_decisions(bundle, runtime: str) -> None:  # type: ignore[no-untyped-def]
    x = example_input(seed=5, batch=12)
    cascade = Cascade(bundle, runtime=runtime)
    reference = Cascade(bundle, runtime=runtime).infer(x)  # the batch decides row by row
    timing = time_cascade(cascade, x, batch=4, rounds=3, stage_passes=10,
                          overhead_repeats=6, warmup=2)
    assert timing.stage_round_sizes == [3, 3, 4] and timing.overhead_round_sizes == [2, 2, 2]
    assert len(timing.stage_ms) == len(bundle.stages)
    assert all(len(t) == 10 and min(t) > 0 for t in timing.stage_ms)
    # every exit can be forced on a plain cascade: each path timed 6 times
    assert [len(o) for o in timing.overhead_ms] == [6] * len(bundle.exits)
    assert len(timing.measured_ms) == 3 * len(x) and min(timing.measured_ms) > 0
    assert timing.exit_index == reference.exit_index.tolist() * 3
    assert len(timing.measured_batch_ms) == 3 * 3 and len(timing.stage_batch_ms[0]) == 1 + 1 + 2
    # forced paths at batch 4 and at 2 rows (the batch code's fixed cost), once per round
    assert [len(o) for o in timing.overhead_batch_ms] == [3] * len(bundle.exits)
    assert [len(o) for o in timing.overhead_pair_ms] == [3] * len(bundle.exits)
    # the forced runs leave the cascade as it was: it decides the same again
    assert cascade.infer(x).exit_index.tolist() == reference.exit_index.tolist()
    assert cascade.thresholds == reference_thresholds(bundle)
    report = end_to_end(timing.to_json(), [e["stage"] for e in bundle.exits])
    predicted, overhead = report["batch1"]["predicted"], report["overhead"]
    assert overhead["overhead_ms"] > 0 and all(o > 0 for o in overhead["overhead_by_exit_ms"])
    assert predicted["mean"] == pytest.approx(overhead["stages_ms"] + overhead["overhead_ms"])
    assert report["batch1"]["measured"]["mean"] > 0 and "batch4" in report


def test_large_data_streams_slices_round_by_round(bundle, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from eedge.profiling import cascade_timing

    monkeypatch.setattr(cascade_timing, "MAX_STREAM", 6)
    x = example_input(seed=4, batch=5)
    cascade = Cascade(bundle)
    reference = cascade.infer(x).exit_index.tolist()
    timing = time_cascade(cascade, x, rounds=3, stage_passes=3, overhead_repeats=3, warmup=1)
    assert timing.exit_index == [reference[i % 5] for i in range(6)]  # 2 per round, in order
    assert len(timing.measured_ms) == 6
    assert timing.round(2).exit_index == [reference[4], reference[0]]


def reference_thresholds(bundle) -> list:  # type: ignore[no-untyped-def]
    return [e["policy"]["threshold"] for e in bundle.exits]


def test_stages_only_without_a_stream(bundle) -> None:  # type: ignore[no-untyped-def]
    timing = time_cascade(Cascade(bundle), example_input(seed=1, batch=1), batch=8, rounds=2,
                          stage_passes=4, warmup=1, stream=False)
    assert all(len(t) == 4 for t in timing.stage_ms)
    assert timing.measured_ms == [] and all(o == [] for o in timing.overhead_ms)
    assert timing.measured_batch_ms == [] and timing.stage_batch_ms == []



def test_tvm_cascade_end_to_end(bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """TVM-compiled stages run the same end-to-end timing (host, Relax VM)."""
    import shutil

    pytest.importorskip("tvm", reason="Apache TVM (eedge[tvm]) is not installed")
    from eedge.backends.tvm_compiler import compile_bundle
    from eedge.ir.bundle import load_bundle

    copy = tmp_path / "tvm-bundle"
    shutil.copytree(bundle.path, copy)
    compiled = compile_bundle(load_bundle(copy), "host")
    x = example_input(seed=6, batch=6)
    cascade = Cascade(compiled, runtime="tvm")
    timing = time_cascade(cascade, x, rounds=2, stage_passes=4, overhead_repeats=2, warmup=1)
    assert timing.exit_index == Cascade(compiled, runtime="tvm").infer(x).exit_index.tolist() * 2
    report = end_to_end(timing.to_json(), [e["stage"] for e in bundle.exits])
    assert report["batch1"]["measured"]["mean"] > 0 and report["overhead"]["overhead_ms"] > 0
