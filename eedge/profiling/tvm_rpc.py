"""Per-stage latency of TVM-compiled stages on a device, over TVM RPC.

The device runs TVM's RPC server (`python -m tvm.exec.rpc_server --host
0.0.0.0 --port 9090`); the target YAML names it under ``tvm_rpc``. Each
stage's library (built by `eedge compile --backend tvm --target <library>`)
is uploaded, loaded into a Relax VM on the device, fed the stage's real
inputs for one sample (hand-offs computed locally with ONNX Runtime) and
timed with TVM's own ``time_evaluator``, which measures on the device and so
excludes the network round trip. With ``start_over_ssh: true`` eedge starts
the server itself through the target's SSH login and stops it afterwards.
"""

from __future__ import annotations

import shlex
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

from eedge.errors import BundleError, TargetError
from eedge.ir.bundle import Bundle
from eedge.profiling.drivers import Progress, StageProfile, StageProfiles, stage_feeds
from eedge.profiling.stats import summarize
from eedge.runtime.cascade import Cascade
from eedge.targets import Target


def connect_rpc(host: str, port: int) -> tuple[Any, Any]:
    from eedge.backends.tvm_compiler import import_tvm

    tvm = import_tvm()
    try:
        return tvm.rpc.connect(host, port, session_timeout=0), tvm
    except Exception as exc:  # TVM wraps socket errors in its own types
        raise TargetError(f"cannot reach the TVM RPC server at {host}:{port} "
                          f"({str(exc).splitlines()[0][:120]}); start it on the device with "
                          f"`python -m tvm.exec.rpc_server --host 0.0.0.0 --port {port}`") \
            from None


@contextmanager
def rpc_server_over_ssh(target: Target, port: int, say: Progress) -> Iterator[None]:
    """Start TVM's RPC server on the device over SSH for the duration of the block."""
    from eedge.profiling.ssh import connect, run

    client = connect(target)
    log = f".eedge-tvm-rpc-{port}.log"  # in the SSH login's home directory
    try:
        say(f"starting the TVM RPC server on {target.name} over SSH")
        # its own session, so stopping it stops the listener process TVM forks too
        command = (f"setsid nohup {shlex.quote(target.get('python'))} -m tvm.exec.rpc_server "
                   f"--host 0.0.0.0 --port {port} --port-end {port + 1} > {log} 2>&1 "
                   "< /dev/null & echo $!")
        code, out, err = run(client, command, timeout=30)
        if code != 0 or not out.strip().isdigit():
            raise TargetError(f"{target.name}: cannot start the TVM RPC server: {err.strip()}")
        pid = int(out.strip())
        try:
            _wait_for_port(target.get("tvm_rpc")["host"], port, client, pid, log, target.name)
            yield
        finally:
            run(client, f"kill -- -{pid} 2>/dev/null; for i in $(seq 50); do "
                        f"kill -0 -- -{pid} 2>/dev/null || break; sleep 0.1; done; "
                        f"rm -f {log}", timeout=30)
    finally:
        client.close()


def _wait_for_port(host: str, port: int, client: Any, pid: int, log: str, name: str) -> None:
    from eedge.profiling.ssh import run

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((host, port)) == 0:
                return
        code, _, _ = run(client, f"kill -0 {pid}", timeout=30)
        if code != 0:
            _, tail, _ = run(client, f"tail -c 400 {log}", timeout=30)
            raise TargetError(f"{name}: the TVM RPC server exited (is apache-tvm installed "
                              f"for the device's python?): {tail.strip()[-200:]}")
        time.sleep(0.3)
    raise TargetError(f"{name}: the TVM RPC server did not open {host}:{port} within 30 s")


def profile_tvm_rpc(bundle: Bundle, target: Target, x: np.ndarray, repeats: int,
                    say: Progress) -> StageProfiles:
    rpc = target.get("tvm_rpc")
    library = rpc.get("library", "rpi4")
    fmt = f"tvm_{library}"
    if any(fmt not in s["files"] for s in bundle.stages):
        raise BundleError(f"{bundle.path} has no TVM libraries for {library}: run `eedge "
                          f"compile {bundle.path} --backend tvm --target {library}`")
    feeds = stage_feeds(Cascade(bundle, runtime="onnx"), x)
    server = rpc_server_over_ssh(target, int(rpc["port"]), say) \
        if rpc.get("start_over_ssh") else nullcontext()
    with server:
        stages, tvm = _time_stages(bundle, fmt, feeds, rpc, repeats, say)
    env = {"tvm": tvm.__version__, "library": library, "rpc": f"{rpc['host']}:{rpc['port']}",
           "timing": f"TVM time_evaluator on the device, {repeats} repeats of "
                     f"{int(rpc.get('number', 20))} runs"}
    return StageProfiles(target.name, target.kind, "ms", "tvm", stages, env)


def _time_stages(bundle: Bundle, fmt: str, feeds: list[list[np.ndarray]], rpc: dict[str, Any],
                 repeats: int, say: Progress) -> tuple[list[StageProfile], Any]:
    say(f"connecting to the TVM RPC server at {rpc['host']}:{rpc['port']}")
    remote, tvm = connect_rpc(rpc["host"], int(rpc["port"]))
    device = remote.cpu()
    number = int(rpc.get("number", 20))
    stages = []
    for stage, inputs in zip(bundle.stages, feeds):
        name = stage["files"][fmt]
        say(f"uploading and timing {name}")
        remote.upload(str(bundle.file(name)))
        vm = tvm.relax.VirtualMachine(remote.load_module(name), device)
        args = [tvm.runtime.tensor(np.ascontiguousarray(a), device) for a in inputs]
        timer = vm.time_evaluator("main", device, number=number, repeat=repeats)
        times = [float(t) * 1e3 for t in timer(*args).results]  # mean of `number` runs each
        stats = summarize(times)
        stages.append(StageProfile(stage["index"], stage["name"], stage["macs"], stats["p50"],
                                   stats))
    return stages, tvm
