"""eedge profile end to end: host, QEMU and an SSH device (a local sshd stand-in)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "codegen"))
sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

from int8_bundles import int8_bundle  # noqa: E402
from sshd import fake_pi  # noqa: E402
from zoo import example_input  # noqa: E402

from cli_runner import run_cli as cli  # noqa: E402
from eedge.errors import TargetError  # noqa: E402
from eedge.profiling.drivers import profile_qemu  # noqa: E402
from eedge.profiling.ssh import profile_ssh  # noqa: E402
from eedge.profiling.stats import expected_latency, reach_probabilities  # noqa: E402
from eedge.targets import load_target  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return int8_bundle("sequential", tmp_path_factory.mktemp("profile"))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "data.npz"
    np.savez(path, x=example_input(seed=21, batch=40), y=np.arange(40) % 5)
    return path


def test_expected_latency_arithmetic() -> None:
    assert reach_probabilities([0.5, 0.3, 0.2], [0, 1, 2], 3) == pytest.approx([1.0, 0.5, 0.2])
    result = expected_latency([1.0, 2.0, 4.0], [0.5, 0.3, 0.2], [0, 1, 2])
    assert result["expected"] == pytest.approx(1.0 + 0.5 * 2 + 0.2 * 4)
    assert result["no_exit"] == 7.0


def test_host_profile_cli(capsys, bundle, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report_file, plot_file = tmp_path / "r.json", tmp_path / "p.png"
    code, out, err = cli(capsys, "profile", str(bundle.path), "--target", "host", "--data",
                         str(data), "--repeats", "30", "--warmup", "3", "--batch", "4",
                         "--report", str(report_file), "--plot", str(plot_file))
    assert code == 0, err
    assert "expected with exits" in out and "p99" in out
    assert "predicted / measured" in out and "cascade overhead" in out
    report = json.loads(report_file.read_text())
    check_end_to_end(report, samples=40, batch=4)
    assert report["unit"] == "ms" and report["environment"]["threads"] == 1
    assert all(s["stats"]["runs"] == 30 and s["value"] > 0 for s in report["stages"])
    assert report["expected"]["expected"] <= report["no_exit"]
    assert abs(sum(report["exit_statistics"]["exit_rates"]) - 1) < 1e-9
    assert plot_file.read_bytes()[:4] == b"\x89PNG"


def check_end_to_end(report: dict, samples: int, batch: int) -> None:
    """The cascade ran on every sample; predicted and measured stand side by side."""
    e2e = report["end_to_end"]
    assert e2e["samples"] == samples and e2e["batch1"]["runs"] == samples * e2e["rounds"]
    assert abs(sum(e2e["exit_rates"]) - 1) < 1e-9
    for key in ("batch1", f"batch{batch}"):
        for side in ("predicted", "measured"):
            stats = e2e[key][side]
            assert 0 < stats["p50"] <= stats["p90"] <= stats["p99"] and stats["mean"] > 0
        assert set(e2e[key]["ratio"]) == {"mean", "p50", "p90", "p99"}
    overhead = e2e["overhead"]
    assert overhead["overhead_ms"] > 0 and overhead["overhead_per_stage_us"] > 0
    # the prediction is the stages plus the measured overhead, not the stages alone
    assert e2e["batch1"]["predicted"]["mean"] == pytest.approx(
        overhead["stages_ms"] + overhead["overhead_ms"])


def test_runtime_comparison_cli(capsys, bundle) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli(capsys, "profile", str(bundle.path), "--runtime", "onnx,int8",
                         "--repeats", "12", "--warmup", "2", "--json")
    assert code == 0, err
    check_comparison(json.loads(out), ["onnx", "int8"], 12)
    code, out, err = cli(capsys, "profile", str(bundle.path), "--runtime", "onnx,int8",
                         "--repeats", "6", "--warmup", "1")
    assert code == 0, err
    assert "fastest" in out
    code, _, err = cli(capsys, "profile", str(bundle.path), "--runtime", "onnx,bogus")
    assert code == 5 and "unknown runtime bogus" in err
    code, _, err = cli(capsys, "profile", str(bundle.path), "--runtime", "onnx,int8-tflm")
    assert code == 5 and "reference engine" in err
    code, _, err = cli(capsys, "profile", str(bundle.path), "--runtime", "onnx,tvm")
    assert code != 0 and "tvm" in err


def check_comparison(report: dict, runtimes: list, runs: int) -> None:
    assert report["runtimes"] == runtimes and report["runs"] == {n: runs for n in runtimes}
    for stage in report["stages"]:
        p50 = stage["p50_ms"]
        assert set(p50) == set(runtimes) and min(p50.values()) > 0
        assert stage["fastest"] == min(p50, key=p50.get)
    assert report["fastest_per_stage_total_p50_ms"] == pytest.approx(
        sum(min(s["p50_ms"].values()) for s in report["stages"]))
    assert report["fastest_overall"] in runtimes


def test_qemu_profile_cli(capsys, bundle, data) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli(capsys, "profile", str(bundle.path), "--target", "qemu-cortex-m4",
                         "--data", str(data), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["unit"] == "instructions"
    assert report["expected"]["expected"] < report["no_exit"]
    assert report["expected_ms_estimate"] > 0


def test_qemu_profile_is_exact_and_repeatable(bundle) -> None:  # type: ignore[no-untyped-def]
    target = load_target("qemu-cortex-m4")
    x = example_input(seed=3, batch=1)
    first = profile_qemu(bundle, target, x, lambda _m: None)
    second = profile_qemu(bundle, target, x, lambda _m: None)
    assert [s.value for s in first.stages] == [s.value for s in second.stages]
    assert all(s.value > 0 and s.estimates["ms"] > 0 for s in first.stages)
    assert "estimate" in first.environment["estimate_basis"]


def test_ssh_profile_against_a_local_sshd(capsys, bundle, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with fake_pi(tmp_path / "pi") as pi:
        target_file = pi.target_yaml(tmp_path / "pi.yaml")
        code, out, err = cli(capsys, "profile", str(bundle.path), "--target", str(target_file),
                             "--data", str(data), "--repeats", "20", "--warmup", "2", "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["kind"] == "linux-ssh" and report["unit"] == "ms"
        assert report["environment"]["onnxruntime"]
        # the runner compiled the batch-1 C helper on the device (it has cc and headers)
        assert report["environment"]["batch1_path"] == "compiled"
        assert len(report["stages"]) == 3 and all(s["stats"]["runs"] == 20
                                                  for s in report["stages"])
        check_end_to_end(report, samples=40, batch=1)
        # int8 stages on the device run in LiteRT with XNNPACK, end to end too
        code, out, err = cli(capsys, "profile", str(bundle.path), "--target", str(target_file),
                             "--data", str(data), "--runtime", "int8", "--batch", "4",
                             "--repeats", "10", "--warmup", "1", "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["environment"]["xnnpack"] is True and report["environment"]["runtime"] == "int8"
        check_end_to_end(report, samples=40, batch=4)
        code, out, err = cli(capsys, "profile", str(bundle.path), "--target", str(target_file),
                             "--runtime", "onnx,int8", "--repeats", "10", "--warmup", "1",
                             "--json")
        assert code == 0, err
        check_comparison(json.loads(out), ["onnx", "int8"], 10)
        x = example_input(seed=1, batch=1)
        # the device's python lacks onnxruntime (no site-packages): a clear error
        bare_python = tmp_path / "python-without-packages"
        bare_python.write_text(f"#!/bin/sh\nexec {sys.executable} -S -E \"$@\"\n")
        bare_python.chmod(0o755)
        bare = load_target(pi.target_yaml(tmp_path / "bare.yaml", python=str(bare_python)))
        with pytest.raises(TargetError, match="cannot import numpy and onnxruntime"):
            profile_ssh(bundle, bare, x, None, 1, 1, 2, lambda _m: None)
        # a key the device does not accept
        other = tmp_path / "other_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                       check=True)
        wrong = load_target(pi.target_yaml(tmp_path / "wrong.yaml", key=str(other)))
        with pytest.raises(TargetError, match="rejected the key"):
            profile_ssh(bundle, wrong, x, None, 1, 1, 2, lambda _m: None)
        # an unknown host key (host-key checking stays on)
        empty = tmp_path / "empty_known_hosts"
        empty.write_text("")
        unknown = load_target(pi.target_yaml(tmp_path / "unknown.yaml", known_hosts=str(empty)))
        with pytest.raises(TargetError, match="host key not in"):
            profile_ssh(bundle, unknown, x, None, 1, 1, 2, lambda _m: None)
    # sshd has stopped: the port is closed
    gone = load_target(tmp_path / "pi.yaml")
    with pytest.raises(TargetError, match="cannot reach"):
        profile_ssh(bundle, gone, x, None, 1, 1, 2, lambda _m: None)


def test_profile_errors(capsys, bundle, data) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli(capsys, "profile", str(bundle.path), "--target", "stm32f767")
    assert code in (7, 8) and ("flash" in err or "serial" in err)  # no board here
    code, _, err = cli(capsys, "profile", str(bundle.path), "--exit-rates", "0.5,0.5")
    assert code == 5 and "needs 3 comma-separated values" in err
    code, _, err = cli(capsys, "profile", str(bundle.path), "--exit-rates", "0.5,0.3,0.2",
                       "--data", str(data))
    assert code == 5
