"""Test helpers shared by the TVM tests (profiling over RPC, tuning locally and over RPC).

A plain module, not a conftest: a second conftest would shadow tests/conftest.py,
which test modules import by name."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml


@contextmanager
def tvm_rpc_server(port: int, env: dict[str, str] | None = None
                   ) -> Iterator[subprocess.Popen[bytes]]:
    """TVM's RPC server on 127.0.0.1:``port`` for the block, in its own process group so
    that stopping it stops the popen_worker it forks too."""
    server = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_server", "--host",
                               "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + 120  # importing TVM takes long on a loaded machine
        while time.monotonic() < deadline and server.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the TVM RPC server did not start")
        yield server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)


def add_tvm_rpc(target_yaml: Path, port: int, **extra: Any) -> Path:
    """Append a ``tvm_rpc`` block (loopback server, host library, started over SSH) to a
    fake Pi's target YAML; ``extra`` adds settings such as ``number``."""
    settings = {"host": "127.0.0.1", "port": port, "library": "host", **extra,
                "start_over_ssh": True}
    with target_yaml.open("a") as out:
        out.write(yaml.safe_dump({"tvm_rpc": settings}, sort_keys=False))
    return target_yaml


def kernels_scheduled_from_records(bundle: Any, target_name: str, workdir: Path) -> int:
    """Assert every kernel of every stage that has a record in the bundle's tuning
    database for ``target_name`` is scheduled from it; returns how many had one."""
    from eedge.backends import tvm_tuning
    from eedge.backends.tvm_compiler import resolve_target

    target = tvm_tuning.tuning_target(resolve_target(target_name))
    workdir.mkdir(parents=True, exist_ok=True)
    tvm_tuning._copy_database(bundle, target_name, workdir)
    database, ms = tvm_tuning.open_database(workdir), tvm_tuning.import_ms()
    with_record = 0
    for stage in bundle.stages:
        onnx_path = bundle.file(stage["files"]["onnx"])
        scheduled = tvm_tuning.apply_database(onnx_path, target, workdir)
        prepared = tvm_tuning.prepare_module(onnx_path, target, tvm_tuning.TUNED_BATCH)
        for task in ms.relax_integration.extract_tasks(prepared, target):
            if database.query_tuning_record(task.dispatched[0], target,
                                            task.task_name) is not None:
                with_record += 1
                attrs = scheduled[task.task_name].attrs
                assert attrs is not None and attrs.get("tirx.is_scheduled"), task.task_name
    return with_record
