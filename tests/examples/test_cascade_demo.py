"""`eedge demo --cascade`: the report's cascade numbers are what the kept bundle's own
runtime gives on the kept test images, the policy it calibrated is sound, and the same
cascade as int8 C on qemu-cortex-m4 decides like the Python int8 runtime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from cli_runner import run_cli  # noqa: E402

from eedge.ir.bundle import load_bundle  # noqa: E402
from eedge.policies import running_mean  # noqa: E402
from eedge.runtime.cascade import Cascade  # noqa: E402


def test_cascade_demo_report_matches_the_bundle(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    out = tmp_path / "demo"
    code, stdout, err = run_cli(capsys, "demo", "--cascade", "--epochs", "6", "--out",
                                str(out), "--json")
    assert code == 0, err
    report = json.loads(stdout)
    bundle = load_bundle(out / "bundle")
    assert [m["name"] for m in bundle.manifest["cascade"]["members"]] == \
        ["small", "medium", "large"]
    assert running_mean.running_members(bundle.manifest) == [0, 1, 2]
    assert report["window"]["validation"]["risk"] <= report["target_risk"] + 1e-12
    test = np.load(out / "test.npz")
    result = Cascade(bundle, runtime="onnx").infer(test["x"])
    rows = {r["name"]: r for r in report["results"]["digits + corrupted"]}
    cascade = rows["cascade"]
    accepted = ~result.rejected
    costs = np.array([e["cumulative_macs"] for e in bundle.exits], float)
    assert cascade["coverage"] == pytest.approx(float(accepted.mean()))
    assert cascade["risk"] == pytest.approx(
        float(np.mean(result.predictions[accepted] != test["y"][accepted])))
    assert cascade["expected_macs"] == pytest.approx(float(costs[result.exit_index].mean()))
    assert cascade["accuracy"] == pytest.approx(float(np.mean(result.predictions == test["y"])))
    # cheaper than the largest member, and its best policy covers what the ensemble does
    assert cascade["expected_macs"] < rows["large"]["expected_macs"]
    assert cascade["oracle_coverage"] >= rows["ensemble"]["oracle_coverage"] - 1e-12
    assert report["reached"]["digits + corrupted"] == (
        cascade["oracle_coverage"] >= rows["large"]["oracle_coverage"]
        and cascade["oracle_macs"] < rows["large"]["oracle_macs"])
    assert report["int8_agreement"] > 0.9

    # the demo's own cascade on the device: exit, class and rejection == Python int8
    from eedge.codegen.device_run import run_on_target
    from eedge.targets import load_target

    x = test["x"][:240]
    device = run_on_target(bundle.path, load_target("qemu-cortex-m4"), x)
    python = Cascade(bundle, runtime="int8-reference").infer(x)
    assert device.exit_index.tolist() == python.exit_index.tolist()
    assert device.predictions.tolist() == python.predictions.tolist()
    assert [s.rejected for s in device.run.samples] == python.rejected.tolist()
