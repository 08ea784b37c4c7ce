"""MetaSchedule tuning: the database lives in the bundle, is reused, and tuned stages equal ORT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_runner import run_cli
from tvm_helpers import kernels_scheduled_from_records

from eedge.errors import BundleError, ToolchainError
from eedge.ir.bundle import load_bundle
from eedge.runtime.cascade import Cascade

tvm = pytest.importorskip("tvm", reason="Apache TVM (eedge[tvm]) is not installed")

from eedge.backends.tvm_compiler import compile_bundle  # noqa: E402
from eedge.backends.tvm_tuning import database_names  # noqa: E402

TRIALS = 4  # per stage: enough to write records, small enough for the suite


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """The digits demo's three-stage bundle (tiny convolutions) and test inputs."""
    from eedge.examples.digits import load_digits_splits
    from eedge.examples.digits_model import build_model
    from eedge.export import export_torch

    data = load_digits_splits(seed=0)
    path = tmp_path_factory.mktemp("tune") / "digits"
    export_torch(build_model(), data.x_val[:2], path)
    return path, data.x_test[:8]


@pytest.fixture(scope="module")
def tuned(digits: tuple[Path, np.ndarray], tmp_path_factory: pytest.TempPathFactory,
          ) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("tuned") / "bundle"
    shutil.copytree(digits[0], path)
    bundle = compile_bundle(load_bundle(path), "host", trials=TRIALS)
    return path, {"tuning": bundle.manifest["tvm"]["host"]["tuning"]}


def test_database_is_stored_with_checksums(tuned: tuple[Path, dict[str, Any]],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path, report = tuned
    manifest = load_bundle(path).manifest  # verifies every checksum
    tuning = manifest["tvm"]["host"]["tuning"]
    assert report["tuning"] == tuning
    assert (path / "stage0.tvm-host.so").is_file()
    assert tuning["trials"] == 3 * TRIALS and tuning["record_count"] > 0
    for name in database_names("host"):
        assert name in manifest["files"]
    records = (path / tuning["records"]).read_text().splitlines()
    assert len(records) == tuning["record_count"]
    assert all(isinstance(json.loads(line), list) for line in records)
    code, out, err = run_cli(capsys, "inspect", str(path))
    assert code == 0, err
    assert "checksums match" in out


def test_tuned_stages_equal_onnx_runtime(tuned: tuple[Path, dict[str, Any]],
                                         digits: tuple[Path, np.ndarray]) -> None:
    bundle = load_bundle(tuned[0])
    tvm_cascade, ort_cascade = Cascade(bundle, runtime="tvm"), Cascade(bundle, runtime="onnx")
    for row in range(len(digits[1])):  # tuned libraries are compiled at batch 1
        x = digits[1][row:row + 1]
        for a, b in zip(tvm_cascade.run_all_exits(x), ort_cascade.run_all_exits(x)):
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_every_kernel_with_a_record_is_scheduled_from_it(tuned: tuple[Path, dict[str, Any]],
                                                       tmp_path: Path) -> None:
    """A tuned kernel must reach the library: TVM's compile_relax re-fused the module,
    which changed the kernels' hashes, and silently compiled them unscheduled."""
    with_record = kernels_scheduled_from_records(load_bundle(tuned[0]), "host", tmp_path)
    assert with_record > 0


def test_tuned_stages_take_larger_batches_row_by_row(tuned: tuple[Path, dict[str, Any]],
                                                      digits: tuple[Path, np.ndarray]) -> None:
    """Tuned libraries are compiled at batch 1; a batch of 8 still runs (row by row)."""
    bundle = load_bundle(tuned[0])
    tvm_cascade, ort_cascade = Cascade(bundle, runtime="tvm"), Cascade(bundle, runtime="onnx")
    for a, b in zip(tvm_cascade.run_all_exits(digits[1]), ort_cascade.run_all_exits(digits[1])):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
    decided = tvm_cascade.infer(digits[1])
    np.testing.assert_array_equal(decided.exit_index >= 0, True)


def test_second_compile_reuses_the_database(tuned: tuple[Path, dict[str, Any]],
                                            tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "again"
    shutil.copytree(tuned[0], path)
    records = path / database_names("host")[1]
    before = records.read_bytes()
    code, out, err = run_cli(capsys, "compile", str(path), "--backend", "tvm", "--json")
    assert code == 0, err
    assert "tuning:" not in err  # no trial measured
    assert records.read_bytes() == before
    assert json.loads(out)["tuning"] == tuned[1]["tuning"]
    bundle = load_bundle(path)
    x = np.zeros((1, 1, 8, 8), np.float32)
    for a, b in zip(Cascade(load_bundle(path), runtime="tvm").run_all_exits(x),
                    Cascade(bundle, runtime="onnx").run_all_exits(x)):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_interrupt_keeps_measured_trials(digits: tuple[Path, np.ndarray],
                                         tmp_path: Path) -> None:
    path = tmp_path / "interrupted"
    shutil.copytree(digits[0], path)

    def stop(done: int, _total: int, _best: float | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compile_bundle(load_bundle(path), "host", trials=8, report=stop)
    tuning = load_bundle(path).manifest["tvm"]["host"]["tuning"]
    assert 0 < tuning["trials"] < 3 * 8
    assert tuning["record_count"] > 0
    assert not any(p.name.endswith(".partial") for p in path.iterdir())


def test_host_tuning_targets_this_cpu_and_the_manifest_says_which(
        tuned: tuple[Path, dict[str, Any]]) -> None:
    """Plain "llvm" is a generic x86-64 (SSE2): tuned kernels need the CPU named to use
    its vector units. A cross target keeps its own CPU."""
    from eedge.backends import tvm_tuning
    from eedge.backends.tvm_compiler import TVM_TARGETS

    cpu = tvm_tuning.host_cpu()
    host = tvm_tuning.tuning_target(TVM_TARGETS["host"])
    assert int(host.attrs["num-cores"]) == 1
    assert host.attrs.get("mcpu") == cpu
    assert tuned[1]["tuning"]["cpu"] == (cpu or "")
    pi = tvm_tuning.tuning_target(TVM_TARGETS["rpi4"])
    assert pi.attrs["mcpu"] == "cortex-a72" and pi.attrs["mtriple"] == "aarch64-linux-gnu"


def test_a_saved_database_is_added_to_another_bundle(tuned: tuple[Path, dict[str, Any]],
                                                     digits: tuple[Path, np.ndarray],
                                                     tmp_path: Path) -> None:
    """make bench re-uses a database across runs: same stages, other weights' files."""
    from eedge.backends import tvm_tuning

    saved = tmp_path / "saved"
    tvm_tuning.save_database(load_bundle(tuned[0]), "host", saved)
    path = tmp_path / "fresh"
    shutil.copytree(digits[0], path)
    bundle = tvm_tuning.add_database(load_bundle(path), "host", saved, 7)
    tuning = load_bundle(path).manifest["tvm"]["host"]["tuning"]
    assert tuning["trials"] == 7
    assert tuning["record_count"] == tuned[1]["tuning"]["record_count"]
    compile_bundle(bundle, "host")
    x = digits[1][:1]
    for a, b in zip(Cascade(load_bundle(path), runtime="tvm").run_all_exits(x),
                    Cascade(load_bundle(path), runtime="onnx").run_all_exits(x)):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
    with pytest.raises(BundleError) as caught:
        tvm_tuning.add_database(load_bundle(path), "host", tmp_path / "nothing", 1)
    assert "\n" not in str(caught.value)


def test_every_kernel_of_a_stage_gets_a_round_of_trials() -> None:
    """16 trials in rounds of 8 reached 2 of a stage's 3 kernels; the third stayed
    unscheduled (4.6x ONNX Runtime's time on that stage)."""
    from eedge.backends.tvm_tuning import TRIALS_PER_ITER, trials_per_round

    assert trials_per_round(16, 3) * 3 <= 16 and trials_per_round(16, 3) >= 1
    assert trials_per_round(480, 3) == TRIALS_PER_ITER
    assert trials_per_round(2, 5) == 1  # fewer trials than kernels: one at a time
    assert trials_per_round(4, 0) == 4


def test_stage_budgets_follow_the_work_and_add_up() -> None:
    """Equal budgets starved the residual model's last stage (two convolutions)."""
    from eedge.backends.tvm_tuning import TRIALS_PER_ITER, stage_budgets

    conv, pool = 1.08e7, 7.4e4
    budgets = stage_budgets([[4.1e6, pool], [conv, pool], [conv, conv, pool]], 48)
    assert sum(budgets) == 3 * 48
    assert budgets[0] < budgets[1] < budgets[2]
    assert min(budgets) >= 2 * TRIALS_PER_ITER  # a round for each of a stage's kernels
    assert stage_budgets([[1e3, 1e2], [1e3], [2e3]], 4) == [4, 4, 4]  # rounds take it all
    assert stage_budgets([[], [1.0]], 10) == [0, 20]  # nothing to tune: budget moves on


def test_pooling_kernels_tune_without_tvm_warnings(digits: tuple[Path, np.ndarray],
                                                  tmp_path: Path,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    """TVM has no CPU rule for TOPI's pool blocks and printed a C++ warning per task
    into the CLI's progress output; the digits' first stage has an average pool."""
    from eedge.backends import tvm_tuning
    from eedge.backends.tvm_compiler import resolve_target

    bundle = load_bundle(digits[0])
    stage = bundle.stages[0]
    target = tvm_tuning.tuning_target(resolve_target("host"))
    stats = tvm_tuning.tune_stage(bundle.file(stage["files"]["onnx"]), target, tmp_path, 3,
                                  lambda _d, _t, _b: None)
    assert stats.trials >= 3
    assert "Unknown schedule rule" not in capfd.readouterr().err


def test_tampered_database_is_refused(tuned: tuple[Path, dict[str, Any]],
                                      tmp_path: Path) -> None:
    path = tmp_path / "tampered"
    shutil.copytree(tuned[0], path)
    with (path / database_names("host")[1]).open("a") as out:
        out.write("[]\n")
    with pytest.raises(BundleError) as caught:
        load_bundle(path)
    assert "\n" not in str(caught.value)


def test_tuning_for_the_pi_needs_rpc(digits: tuple[Path, np.ndarray], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("aarch64-linux-gnu-gcc is not installed (make system installs it)")
    path = tmp_path / "pi"
    shutil.copytree(digits[0], path)
    with pytest.raises(ToolchainError):
        compile_bundle(load_bundle(path), "rpi4", trials=4)
    code, _out, err = run_cli(capsys, "compile", str(path), "--target", "rpi4", "--tune")
    assert code != 0
    assert "RPC" in err and len(err.strip().splitlines()) == 1


def test_libraries_compiled_for_another_cpu_are_refused(tuned: tuple[Path, dict[str, Any]],
                                                        tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    """Tuned host libraries use this CPU's vector units: on an older CPU they would die
    with an illegal instruction, so a bundle moved to another CPU is refused by name."""
    from eedge.backends import tvm_tuning
    from eedge.ir.bundle import write_manifest

    cpu = tvm_tuning.host_cpu()
    if cpu is None:
        pytest.skip("LLVM cannot name this machine's CPU")
    manifest = load_bundle(tuned[0]).manifest
    assert manifest["tvm"]["host"]["cpu"] == cpu
    Cascade(load_bundle(tuned[0]), runtime="tvm")  # this CPU: loads
    path = tmp_path / "moved"
    shutil.copytree(tuned[0], path)
    moved = json.loads(json.dumps(manifest))
    moved["tvm"]["host"]["cpu"] = "not-" + cpu
    write_manifest(path, moved)
    with pytest.raises(BundleError, match=f"compiled for CPU not-{cpu}.*eedge compile"):
        Cascade(load_bundle(path), runtime="tvm")
    code, _, err = run_cli(capsys, "profile", str(path), "--target", "host", "--runtime", "tvm")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "not-" + cpu in err
    Cascade(load_bundle(path), runtime="onnx")  # the other runtimes are untouched


def test_compile_names_the_cpu_of_tuned_host_libraries(tuned: tuple[Path, dict[str, Any]],
                                                       tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    from eedge.backends import tvm_tuning

    path = tmp_path / "again"
    shutil.copytree(tuned[0], path)
    code, out, err = run_cli(capsys, "compile", str(path), "--backend", "tvm")
    assert code == 0, err
    cpu = tvm_tuning.host_cpu()
    assert (f"for CPU {cpu} (tuned host libraries)" in " ".join(out.split())) == bool(cpu)
