"""QUTE: early-view assistance, the ensemble in Python and C, and the monitor."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))

from eedge.codegen.device_run import run_on_target  # noqa: E402
from eedge.codegen.model_source import load_codegen_model  # noqa: E402
from eedge.errors import InputDataError  # noqa: E402
from eedge.examples.corruptions import KINDS, corrupt, corrupted_suite  # noqa: E402
from eedge.examples.qute_demo import (compare, disagreement, export_qute,  # noqa: E402
                                      member_diagnostics, monitor_rates, train_models)
from eedge.policies.monitor import IntegerMonitor, Monitor, calibrate_rho  # noqa: E402
from eedge.runtime.cascade import Cascade  # noqa: E402
from eedge.targets import load_target  # noqa: E402
from eedge.train.qute import _linear  # noqa: E402


@pytest.fixture(scope="module")
def models():  # type: ignore[no-untyped-def]
    return train_models(seed=0, epochs=8)


@pytest.fixture(scope="module")
def bundle(models, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return export_qute(models, tmp_path_factory.mktemp("qute") / "bundle")


def test_early_view_heads_share_the_early_exits_weights(models) -> None:  # type: ignore[no-untyped-def]
    q = models.qute
    for i, head in enumerate(q.ev_heads):
        assert torch.equal(_linear(head).weight, _linear(q.base.exit_heads[i]).weight)
    assert q.ensemble_members == [2, 3, 4]
    assert 0 < models.extra_parameters < 0.15
    outputs = q(torch.zeros(2, 1, 8, 8))
    assert len(outputs) == 5 and all(o.shape == (2, 10) for o in outputs)


def test_float_ensemble_is_the_mean_of_member_softmaxes(models, bundle) -> None:  # type: ignore[no-untyped-def]
    from eedge.policies.criteria import softmax

    x = models.data.x_test[:50]
    cascade = Cascade(bundle)
    result = cascade.infer(x)
    logits = cascade.run_all_exits(x)
    mean = np.mean([softmax(logits[k]) for k in (2, 3, 4)], axis=0)
    assert np.array_equal(result.predictions, mean.argmax(axis=1))
    np.testing.assert_allclose(result.confidence, mean.max(axis=1), rtol=1e-5)
    assert (result.exit_index == 4).all()


def test_c_ensemble_and_monitor_equal_python_int8(models, bundle) -> None:  # type: ignore[no-untyped-def]
    x = np.concatenate([models.data.x_test[:120], corrupt(models.data.x_test[:120], "blur", 5)])
    run = run_on_target(load_codegen_model(bundle.path), load_target("host"), x)
    python = Cascade(bundle, runtime="int8-reference").infer(x)
    monitor = bundle.manifest["ensemble"]["monitor"]
    flags = IntegerMonitor(monitor["window"], monitor["rho"], 3).run(python.confidence_q)
    assert np.array_equal(run.predictions, python.predictions)
    assert np.array_equal([s.confidence for s in run.run.samples], python.confidence_q)
    assert np.array_equal([s.monitor_flag for s in run.run.samples], flags)
    assert any(flags[150:]), "heavy blur should trip the monitor"
    # the same on an emulated Cortex-M4, across the clean -> blurred boundary
    on_m4 = run_on_target(load_codegen_model(bundle.path), load_target("qemu-cortex-m4"),
                          x[90:150])
    shifted = IntegerMonitor(monitor["window"], monitor["rho"], 3).run(
        python.confidence_q[90:150])
    assert np.array_equal(on_m4.predictions, python.predictions[90:150])
    assert np.array_equal([s.confidence for s in on_m4.run.samples], python.confidence_q[90:150])
    assert np.array_equal([s.monitor_flag for s in on_m4.run.samples], shifted) and any(shifted)


def test_monitor_calibration_and_rates(models, bundle) -> None:  # type: ignore[no-untyped-def]
    rates = monitor_rates(bundle, models.data)
    assert rates.false_alarm <= 0.1
    assert max(rates.detection.values()) > 0.5
    rho = calibrate_rho(np.ones(40) * 0.9, 8)
    assert rho == pytest.approx(0.9)
    m = Monitor(4, 0.5)
    # windows of 4: ... [.9 .9 .1 .1] has mean 0.5 (not below), [.9 .1 .1 .1] 0.3 (below)
    assert [m.update(v) for v in (0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1)] == [
        False, False, False, False, False, False, True]
    with pytest.raises(InputDataError):
        calibrate_rho(np.ones(3), 8)


def test_comparison_table_and_corruptions(models) -> None:  # type: ignore[no-untyped-def]
    table = compare(models)
    assert set(table) == {"clean"} | {f"{k}-3" for k in KINDS}
    for row in table.values():
        assert set(row) == {"BASE", "EE", "QUTE"}
        assert all(0 <= r["ece"] <= 1 and r["nll"] >= 0 for r in row.values())
    suite = corrupted_suite(models.data.x_test[:4])
    assert all(v.shape == (4, 1, 8, 8) and v.min() >= 0 and v.max() <= 1 for v in suite.values())
    assert np.array_equal(corrupt(models.data.x_test[:4], "noise", 2, seed=1),
                          corrupt(models.data.x_test[:4], "noise", 2, seed=1))


def test_bad_ensembles_are_rejected(tmp_path: Path) -> None:
    from eedge.export import ensemble_section

    with pytest.raises(InputDataError, match="last ones"):
        ensemble_section([0, 2], 3)
    with pytest.raises(InputDataError, match="at least two"):
        ensemble_section([2], 3)


def test_monitor_command_calibrates_checks_and_writes(capsys, models, bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json
    import shutil

    from cli_runner import run_cli

    from eedge.ir.bundle import load_bundle

    copy, clean, blur = tmp_path / "bundle", tmp_path / "clean.npz", tmp_path / "blur.npz"
    shutil.copytree(bundle.path, copy)
    np.savez(clean, x=models.data.x_val)
    np.savez(blur, x=corrupt(models.data.x_test, "blur", 5))
    before = (copy / "manifest.json").read_bytes()
    code, out, err = run_cli(capsys, "monitor", str(copy), "--data", str(clean), "--window", "16",
                             "--check", str(blur), "--dry-run", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (copy / "manifest.json").read_bytes() == before
    assert report["runtime"] == "int8-reference" and report["window"] == 16
    assert report["flagged"][str(clean)] <= 0.05 and report["flagged"][str(blur)] > 0.5
    code, out, err = run_cli(capsys, "monitor", str(copy), "--data", str(clean), "--window", "16",
                             "--false-alarm", "0.02")
    assert code == 0, err
    monitor = load_bundle(copy).manifest["ensemble"]["monitor"]
    assert monitor["window"] == 16 and monitor["false_alarm_target"] == 0.02
    assert monitor["rho"] >= report["rho"]  # a larger false-alarm quantile
    code, _, err = run_cli(capsys, "monitor", str(copy), "--data", str(clean),
                           "--window", "100000")
    assert code == 5 and "at least --window 100000" in err and "\n" not in err.strip()


def test_float_monitor_and_bundles_without_ensemble(models, bundle, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from eedge.export import export_torch
    from eedge.policies.monitor import EnsembleStream

    stream = EnsembleStream(bundle, runtime="onnx")
    rho = stream.choose_rho(stream.infer(models.data.x_val), 16, 0.01)
    monitor = {"window": 16, "rho": rho}
    assert stream.flagged_share(stream.infer(models.data.x_test), monitor) <= 0.05
    assert stream.flagged_share(stream.infer(corrupt(models.data.x_test, "blur", 5)),
                                monitor) > 0.5
    plain = export_torch(models.base, models.data.x_val[:2], tmp_path / "plain").bundle
    with pytest.raises(InputDataError, match="no exit ensemble"):
        EnsembleStream(plain)
    with pytest.raises(InputDataError, match="strictly between"):
        stream.choose_rho(stream.infer(models.data.x_val), 16, 1.5)


def test_member_disagreement_and_diagnostics(models) -> None:  # type: ignore[no-untyped-def]
    a = np.eye(3)[[0, 1, 2, 0]]
    b = np.eye(3)[[0, 1, 1, 1]]
    assert disagreement([a, a]) == 0.0
    assert disagreement([a, b]) == 0.5
    assert disagreement([a, b, b]) == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    diagnostics = member_diagnostics(models)
    assert set(diagnostics) == {"clean"} | {f"{k}-3" for k in KINDS}
    for row in diagnostics.values():
        assert all(0.0 <= v <= 1.0 for v in row.values())
    assert diagnostics["clean"]["EE_disagreement"] < diagnostics["blur-3"]["EE_disagreement"]
