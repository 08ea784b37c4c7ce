"""Hand-given thresholds, labels and exit costs: the shared parsers and validators."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from zoo import onnx_two_exit_mlp  # noqa: E402

from eedge.errors import InputDataError  # noqa: E402
from eedge.export import export_onnx  # noqa: E402
from eedge.ir.bundle import Bundle, load_bundle, update_manifest  # noqa: E402
from eedge.policies.apply import record_thresholds  # noqa: E402
from eedge.policies.costs import latency_costs, mac_costs  # noqa: E402
from eedge.policies.labels import check_labels  # noqa: E402
from eedge.policies.thresholds import check_thresholds, deciding_exits, parse_thresholds  # noqa: E402


def manifest(exits: int, **extra: Any) -> dict[str, Any]:
    return {"exits": [{"index": k} for k in range(exits)], **extra}


@pytest.fixture
def mlp_bundle(tmp_path: Path) -> Bundle:
    onnx.save(onnx_two_exit_mlp(), tmp_path / "mlp.onnx")
    return export_onnx(tmp_path / "mlp.onnx", tmp_path / "b", force=True).bundle


def test_one_value_per_early_exit_no_more_no_fewer() -> None:
    m = manifest(3)
    assert parse_thresholds("0.9, none", m) == [0.9, None, None]
    for text in ("0.9", "0.9,0.8,0.7", "0.9,0.8,0.7,0.6"):
        with pytest.raises(InputDataError, match="the bundle has 3 exits: give 2"):
            parse_thresholds(text, m)
    with pytest.raises(InputDataError, match="bad threshold 'high'"):
        parse_thresholds("0.9,high", m)


def test_head_bundles_and_ensembles_change_how_many_exits_decide() -> None:
    head = manifest(2, split={"role": "head"})
    assert deciding_exits(head) == 2
    assert parse_thresholds("0.9,0.8", head) == [0.9, 0.8]
    ensemble = manifest(4, ensemble={"members": [2, 3]})
    assert deciding_exits(ensemble) == 2
    assert parse_thresholds("0.9,0.8", ensemble) == [0.9, 0.8, None, None]
    with pytest.raises(InputDataError, match="before the ensemble of exits 2..3"):
        parse_thresholds("0.9,0.8,0.7", ensemble)
    with pytest.raises(InputDataError, match="1 exit and none takes a threshold"):
        parse_thresholds("0.5", manifest(1))


@pytest.mark.parametrize("value", [math.nan, math.inf, -0.01, 1.5])
def test_thresholds_must_be_finite_and_in_the_criterion_range(value: float) -> None:
    with pytest.raises(InputDataError, match="exit0"):
        check_thresholds([value, None], ["margin", "margin"])
    check_thresholds([0.0, 1.0, None], ["entropy", "max_softmax", "margin"])


def test_labels_outside_the_classes_are_refused_the_same_way() -> None:
    assert check_labels(np.array([0, 3, 1], np.int32), 4, "d.npz").dtype == np.int64
    for bad, shown in ((4, "label 4"), (-1, "label -1")):
        with pytest.raises(InputDataError, match=f"d.npz: {shown} at sample 1 .* 0..3"):
            check_labels(np.array([0, bad, 1]), [4, 5], "d.npz")
    with pytest.raises(InputDataError, match="integer"):
        check_labels(np.array([0.0, 1.0]), 4, "d.npz")
    with pytest.raises(InputDataError, match="2 labels but x has 3"):
        check_labels(np.array([0, 1]), 4, "d.npz", samples=3)


def qemu_report(bundle: Bundle, instructions: list[float], clock_hz: float = 25e6
                ) -> dict[str, Any]:
    """A report shaped like `eedge profile --target qemu-... --report`."""
    cumulative = np.cumsum(instructions).tolist()
    return {"target": "qemu-cortex-m4", "unit": "instructions",
            "environment": {"estimate_basis": f"1.0 cycles per instruction at "
                                              f"{clock_hz / 1e6:g} MHz (estimate)"},
            "stages": [{"index": i, "value": v, "estimates": {"cycles": v,
                                                              "ms": v / clock_hz * 1e3}}
                       for i, v in enumerate(instructions)],
            "exits": [{"index": e["index"], "stage": e["stage"],
                       "cumulative": cumulative[e["stage"]]} for e in bundle.exits]}


def test_instruction_profiles_give_estimated_milliseconds(mlp_bundle: Bundle) -> None:
    costs = latency_costs(mlp_bundle, qemu_report(mlp_bundle, [25_000.0, 50_000.0]), "r.json")
    assert costs.unit == "ms" and costs.values == pytest.approx([1.0, 3.0])
    assert costs.estimated and "25 MHz" in (costs.basis or "")
    assert "(estimate) (" not in (costs.basis or "")
    measured = latency_costs(mlp_bundle, {"unit": "ms", "stages": [], "exits": [
        {"stage": 0, "cumulative": 0.02}, {"stage": 1, "cumulative": 0.05}]}, "r.json")
    assert measured.values == [0.02, 0.05] and not measured.estimated
    report = qemu_report(mlp_bundle, [1.0, 2.0])
    for stage in report["stages"]:
        stage["estimates"] = {}
    with pytest.raises(InputDataError, match="no millisecond estimates"):
        latency_costs(mlp_bundle, report, "r.json")
    with pytest.raises(InputDataError, match="not a report"):
        latency_costs(mlp_bundle, {"unit": "ms"}, "r.json")
    assert mac_costs(mlp_bundle).unit == "MACs"


def test_record_thresholds_like_calibrate(mlp_bundle: Bundle) -> None:
    def add_window_and_calibration(m: dict[str, Any]) -> None:
        m["exits"][0]["policy"]["window_low"] = 0.2
        m["calibration"] = {"objective": "budget"}

    bundle = update_manifest(mlp_bundle, add_window_and_calibration)
    kept = record_thresholds(bundle, [0.7, None], None, "by hand")
    policy = kept.exits[0]["policy"]
    assert policy == {"criterion": "max_softmax", "threshold": 0.7, "method": "by hand",
                      "window_low": 0.2}
    assert "calibration" not in kept.manifest  # it described other thresholds
    changed = record_thresholds(kept, [0.3, None], "margin", "by hand", {"objective": "x"})
    assert changed.exits[0]["policy"] == {"criterion": "margin", "threshold": 0.3,
                                          "method": "by hand"}  # the window was in max_softmax
    reloaded = load_bundle(mlp_bundle.path, verify_checksums=True)
    assert reloaded.manifest == changed.manifest and reloaded.manifest["calibration"] == {
        "objective": "x"}
    before = (mlp_bundle.path / "manifest.json").read_text()
    with pytest.raises(InputDataError, match="not a finite number"):
        record_thresholds(reloaded, [math.nan, None], None, "by hand")
    assert (mlp_bundle.path / "manifest.json").read_text() == before
    assert json.loads(before)["exits"][0]["policy"]["threshold"] == 0.3
