"""Profiling TVM-compiled stages over TVM RPC, against a server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cli_runner import run_cli
from sshd import fake_pi, free_port
from tvm_helpers import add_tvm_rpc, tvm_rpc_server

pytest.importorskip("tvm", reason="Apache TVM (eedge[tvm]) is not installed")

from eedge.backends.tvm_compiler import compile_bundle  # noqa: E402


@pytest.fixture(scope="module")
def rpc_port() -> Iterator[int]:
    port = free_port()
    with tvm_rpc_server(port):
        yield port


def target_yaml(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "pi-rpc.yaml"
    path.write_text(yaml.safe_dump({
        "name": "pi-rpc", "kind": "linux-ssh", "python": "python3", "runtime": "onnxruntime",
        "ssh": {"host": "127.0.0.1", "user": "nobody", "key": "/nonexistent"},
        "tvm_rpc": {"host": "127.0.0.1", "port": port, "library": "host", "number": 5}}))
    return path


def test_profile_over_tvm_rpc(capsys, bundle_of, rpc_port: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = compile_bundle(bundle_of("residual").bundle, "host")
    code, out, err = run_cli(capsys, "profile", str(bundle.path), "--target",
                             str(target_yaml(tmp_path, rpc_port)), "--runtime", "tvm", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["runtime"] == "tvm" and report["unit"] == "ms"
    assert len(report["stages"]) == len(bundle.stages)
    assert all(0 < s["value"] < 1000 for s in report["stages"])


def test_rpc_errors_are_clear(capsys, bundle_of, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = bundle_of("mlp").bundle
    target = target_yaml(tmp_path, free_port())
    code, _, err = run_cli(capsys, "profile", str(bundle.path), "--target", str(target),
                           "--runtime", "tvm")
    assert code == 4 and "eedge compile" in err  # no libraries yet
    compile_bundle(bundle, "host")
    code, _, err = run_cli(capsys, "profile", str(bundle.path), "--target", str(target),
                           "--runtime", "tvm")
    assert code == 7 and "cannot reach the TVM RPC server" in err


def test_rpc_server_started_over_ssh(capsys, bundle_of, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = compile_bundle(bundle_of("depthwise").bundle, "host")
    port = free_port()
    with fake_pi(tmp_path / "pi") as pi:
        target = add_tvm_rpc(pi.target_yaml(tmp_path / "pi.yaml"), port, number=5)
        code, out, err = run_cli(capsys, "profile", str(bundle.path), "--target", str(target),
                                 "--runtime", "tvm", "--json")
        assert code == 0, err
        assert len(json.loads(out)["stages"]) == len(bundle.stages)
        with socket.socket() as s:  # eedge stopped the server it started
            assert s.connect_ex(("127.0.0.1", port)) != 0
