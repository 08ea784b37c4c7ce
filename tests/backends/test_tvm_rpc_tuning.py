"""MetaSchedule tuning timed on a device over TVM RPC (a loopback server stands in for a Pi).

No aarch64 device exists here. The end-to-end tests tune the *host* library
against TVM's RPC server on 127.0.0.1, started over SSH through a throwaway
sshd as the profiler's tests do. The rpi4 path is tested up to the device:
candidates are cross-compiled for aarch64 and handed to a stand-in session
that checks what it receives (it cannot run them), and the rpi4 libraries are
then built from the resulting database.

Slow where marked (each under 40 s on this loaded 2-core machine): TVM's RPC
server imports TVM first (5-15 s), and the first MetaSchedule run in a process
imports TVM's tensor intrinsics (3-6 s with eedge.backends.tvm_fast_import).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml
from cli_runner import run_cli
from tvm_helpers import add_tvm_rpc, kernels_scheduled_from_records, tvm_rpc_server

from eedge.errors import TargetError
from eedge.ir.bundle import load_bundle
from eedge.runtime.cascade import Cascade
from eedge.targets import load_target

sys.path.insert(0, str(Path(__file__).parents[1] / "profiling"))
from sshd import fake_pi, free_port  # noqa: E402

tvm = pytest.importorskip("tvm", reason="Apache TVM (eedge[tvm]) is not installed")

from eedge.backends import tvm_rpc_tuning, tvm_tuning  # noqa: E402
from eedge.backends.tvm_compiler import compile_bundle, resolve_target  # noqa: E402

TRIALS = 2  # per stage: enough to write records over RPC, small enough for the suite
ELF_MACHINES = {62: "x86-64", 183: "aarch64"}


def _rpc_yaml(path: Path, port: int, **rpc: object) -> Path:
    """A linux-ssh target whose TVM RPC server runs (or not) at 127.0.0.1:port."""
    path.write_text(yaml.safe_dump({
        "name": "pi-rpc", "kind": "linux-ssh", "python": "python3", "runtime": "onnxruntime",
        "ssh": {"host": "127.0.0.1", "user": "nobody", "key": "/nonexistent"},
        "tvm_rpc": {"host": "127.0.0.1", "port": port, **rpc}}))
    return path


def _elf_machine(data: bytes) -> str:
    assert data[:4] == b"\x7fELF"
    return ELF_MACHINES.get(int.from_bytes(data[18:20], "little"), "other")


def _records(path: Path, library: str) -> list[list[Any]]:
    """The bundle's tuning records for ``library``: [workload, [trace, run_secs, target, args]]."""
    tuning = load_bundle(path).manifest["tvm"][library]["tuning"]
    return [json.loads(line) for line in (path / tuning["records"]).read_text().splitlines()]


def _quiet(_message: str) -> None:
    pass


@pytest.fixture
def rpc_server() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """TVM's RPC server on a free loopback port, in its own process group (to drop it whole)."""
    port = free_port()
    with tvm_rpc_server(port, {"TVM_NUM_THREADS": "2"}) as server:  # a pool to shrink
        yield port, server


def test_tuning_over_rpc_started_over_ssh(capsys, bundle_of, tmp_path: Path,  # type: ignore[no-untyped-def]
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`eedge compile --tune --rpc pi.yaml`: the server is started over SSH, one session
    times every candidate (each uploaded once), the database lands in the bundle under the
    library's name and the compiled libraries are built from it. Slow (see the module)."""
    from eedge.profiling import tvm_rpc

    bundle = bundle_of("mlp").bundle
    connects: list[tuple[str, int]] = []
    uploads: list[str] = []
    real_connect, real_load = tvm_rpc.connect_rpc, tvm_rpc_tuning.load_candidate

    def counted_connect(host: str, port: int) -> tuple[Any, Any]:
        connects.append((host, port))
        return real_connect(host, port)

    def counted_load(session: Any, path: str) -> Any:
        uploads.append(path)
        return real_load(session, path)

    monkeypatch.setattr(tvm_rpc, "connect_rpc", counted_connect)
    monkeypatch.setattr(tvm_rpc_tuning, "load_candidate", counted_load)
    monkeypatch.setenv("EEDGE_PROGRESS", "plain")
    port = free_port()
    with fake_pi(tmp_path / "pi") as pi:
        target = add_tvm_rpc(pi.target_yaml(tmp_path / "pi.yaml"), port)
        # no --target: the device's tvm_rpc.library (host) is the one tuned and compiled
        code, out, err = run_cli(capsys, "compile", str(bundle.path), "--tune", "--trials",
                                 str(TRIALS), "--rpc", str(target))
        assert code == 0, err
        with socket.socket() as s:  # eedge stopped the server it started
            assert s.connect_ex(("127.0.0.1", port)) != 0
    stages = len(bundle.stages)
    assert "starting the TVM RPC server" in err
    assert f"tuning: {TRIALS * stages}/{TRIALS * stages} trials, best kernels" in err
    assert "(tuned)" in err and "tuned: " in out
    assert connects == [("127.0.0.1", port)]  # one session for all stages and candidates
    assert len(uploads) == TRIALS * stages
    manifest = load_bundle(bundle.path).manifest  # verifies every checksum, the database's too
    tuning = manifest["tvm"]["host"]["tuning"]
    assert tuning["trials"] == TRIALS * stages and tuning["record_count"] > 0
    for _workload, (_trace, run_secs, target_json, _args) in _records(bundle.path, "host"):
        assert run_secs and all(0 < float(s) < 1 for s in run_secs)  # timed on the server
        assert target_json["kind"] == "llvm" and target_json["num-cores"] == 1
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    compiled = load_bundle(bundle.path)
    for a, b in zip(Cascade(compiled, runtime="tvm").run_all_exits(x),
                    Cascade(compiled, runtime="onnx").run_all_exits(x)):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_a_dropped_server_is_one_target_error_and_keeps_the_trials(  # type: ignore[no-untyped-def]
        bundle_of, tmp_path: Path, rpc_server: tuple[int, subprocess.Popen[bytes]]) -> None:
    """The server is killed after the first stage's trials: the second stage's first
    candidate finds the session gone; the run ends with one TargetError and the first
    stage's records stay in the bundle. Slow when first in its process (see the module)."""
    bundle = bundle_of("mlp").bundle
    assert len(bundle.stages) >= 2
    port, server = rpc_server
    device = load_target(_rpc_yaml(tmp_path / "pi.yaml", port, library="host"))

    def drop_server(_done: int, _total: int, _best: float | None) -> None:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)

    with pytest.raises(TargetError) as caught:
        tvm_rpc_tuning.tune_bundle_over_rpc(bundle, "host", device, TRIALS, _quiet, drop_server)
    message = str(caught.value)
    assert "\n" not in message and f"127.0.0.1:{port} went away" in message
    tuning = load_bundle(bundle.path).manifest["tvm"]["host"]["tuning"]
    assert tuning["trials"] == TRIALS and tuning["record_count"] > 0


def test_ctrl_c_over_rpc_keeps_the_measured_trials(  # type: ignore[no-untyped-def]
        bundle_of, tmp_path: Path, rpc_server: tuple[int, subprocess.Popen[bytes]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C after the first measured batch: the interrupt propagates, the batch's
    records are in the bundle, and the session closes with the server still serving.
    Candidates were timed on one device thread (the server's pool had two)."""
    bundle = bundle_of("mlp").bundle
    port, server = rpc_server
    device = load_target(_rpc_yaml(tmp_path / "pi.yaml", port, library="host"))
    threads: list[int] = []
    real_load = tvm_rpc_tuning.load_candidate

    def load(session: Any, path: str) -> Any:
        threads.append(int(session.get_function("runtime.NumThreads")()))
        return real_load(session, path)

    monkeypatch.setattr(tvm_rpc_tuning, "load_candidate", load)

    def interrupt(_done: int, _total: int, _best: float | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tvm_rpc_tuning.tune_bundle_over_rpc(bundle, "host", device, TRIALS, _quiet, interrupt)
    tuning = load_bundle(bundle.path).manifest["tvm"]["host"]["tuning"]
    assert 0 < tuning["trials"] < TRIALS * len(bundle.stages)
    assert tuning["record_count"] > 0
    assert server.poll() is None
    assert threads and set(threads) == {1}


class StandInPi:
    """A TVM RPC session for an aarch64 device that is not here.

    It checks what a device would receive (one aarch64 shared object per
    candidate, under a name of its own, deleted once loaded) and runs nothing:
    every candidate "takes" the same placeholder time. Records made with it
    test the plumbing (database, compile), never a speed-up.
    """

    PLACEHOLDER_S = 1e-3

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.received: list[tuple[str, str]] = []  # (remote name, ELF machine)

    def cpu(self, dev_id: int = 0) -> Any:
        return tvm.cpu(dev_id)  # where the runner's argument tensors live; nothing runs here

    def upload(self, path: str, name: str) -> None:
        data = Path(path).read_bytes()
        self.files[name] = data
        self.received.append((name, _elf_machine(data)))

    def load_module(self, name: str) -> Any:
        assert name in self.files, f"{name} was not uploaded"
        placeholder = SimpleNamespace(results=[self.PLACEHOLDER_S])
        return SimpleNamespace(entry_name="main",
                               time_evaluator=lambda *_a, **_k: lambda *_args: placeholder)

    def remove(self, name: str) -> None:
        del self.files[name]

    def get_function(self, _name: str) -> Any:
        return lambda *_args: "/stand-in"  # the liveness probe: always answers


def test_rpi4_tuning_sends_aarch64_candidates_and_the_rpi4_compile_applies_them(  # type: ignore[no-untyped-def]
        bundle_of, tmp_path: Path) -> None:
    """rpi4 candidates are cross-built with aarch64-linux-gnu-gcc and sent to the session;
    `compile --target rpi4` (no tuning) then schedules every kernel that has an rpi4
    record from it. Slow when first in its process (see the module)."""
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("aarch64-linux-gnu-gcc is not installed (make system installs it)")
    bundle = bundle_of("mlp").bundle
    pi = StandInPi()
    tvm_tuning.tune_bundle(bundle, resolve_target("rpi4"), TRIALS, _quiet,
                           lambda _d, _t, _b: None, session=pi)
    stages = len(bundle.stages)
    assert len(pi.received) == TRIALS * stages
    assert {machine for _, machine in pi.received} == {"aarch64"}
    assert len({name for name, _ in pi.received}) == len(pi.received)  # a name each
    assert pi.files == {}  # each deleted once loaded
    records = _records(bundle.path, "rpi4")
    assert records and all(r[1][2]["mtriple"] == "aarch64-linux-gnu"
                           and r[1][2]["mcpu"] == "cortex-a72" for r in records)

    said: list[str] = []
    compiled = compile_bundle(load_bundle(bundle.path), "rpi4", say=said.append)
    assert [m for m in said if m.startswith("compiling")] == \
        [f"compiling {s['name']} with TVM for rpi4 (tuned)" for s in compiled.stages]
    assert not any(name.startswith("tvm-host") for name in compiled.manifest["files"])
    for stage in compiled.stages:
        assert _elf_machine(compiled.file(stage["files"]["tvm_rpi4"]).read_bytes()) == "aarch64"

    # what compile_tuned lowers: each kernel with an rpi4 record is scheduled from it
    with_record = kernels_scheduled_from_records(compiled, "rpi4", tmp_path / "db")
    assert with_record > 0


def test_rpc_option_errors_are_one_line(capsys, bundle_of, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Misused options and unreachable devices fail before any tuning, in one line."""
    path = bundle_of("mlp").bundle.path
    host_device = _rpc_yaml(tmp_path / "host-rpc.yaml", free_port(), library="host")
    cases = [
        (["--rpc", str(host_device)], 2, "add --tune"),
        (["--tune", "--target", "rpi4", "--rpc", str(host_device)], 7, "runs host libraries"),
        (["--tune", "--rpc", "rpi4"], 7, "tvm_rpc"),  # the shipped template names no server
        (["--tune", "--rpc", str(host_device)], 7, "cannot reach the TVM RPC server"),
        (["--tune", "--target", "rpi4"], 2, "add --rpc PI.yaml"),
    ]
    for args, expected, text in cases:
        code, _out, err = run_cli(capsys, "compile", str(path), *args, "--json")  # no progress
        assert code == expected and text in err, (args, code, err)
        assert len(err.strip().splitlines()) == 1, err
    assert "tvm" not in load_bundle(path).manifest  # nothing tuned or compiled
