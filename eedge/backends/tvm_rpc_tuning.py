"""MetaSchedule tuning of a bundle's TVM stages timed on a device, over one TVM RPC session.

The device is the profiler's: a target YAML whose ``tvm_rpc`` names the TVM
RPC server (``host``, ``port``, ``library``: which TVM target the device runs,
``start_over_ssh``: eedge starts the server through the YAML's SSH login and
stops it afterwards). One session is opened for the whole run: connecting
costs a TCP handshake and a server-side process per session, and TVM's stock
RPC runner pays both for every candidate.

Candidates are built here (cross-linked with the target's ``cc``, e.g.
``aarch64-linux-gnu-gcc`` for the Pi), uploaded under a name of their own,
loaded, deleted from the device's work directory (the mapping stays) and
timed there with ``time_evaluator``, which excludes the network round trip.
A server that goes away (stopped, crashed by a candidate, device off the
network) ends the run with one TargetError; the trials measured before it
are kept in the bundle, like after Ctrl-C.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from eedge.errors import TargetError
from eedge.targets import Target

DEFAULT_LIBRARY = "rpi4"  # what `tvm_rpc.library` means when left out (as for the profiler)
# TVM's thread-pool mode "threads share all cores": sets the worker count, no pinning
# (lists cannot cross RPC, so the cores are left to the device)
SHARE_ALL_CORES = -3
_candidate_numbers = itertools.count()


class SessionLost(TargetError):
    """The RPC session stopped answering in the middle of tuning."""


def rpc_settings(device: Target) -> dict[str, Any]:
    """The ``tvm_rpc`` block of a device's target YAML (validated by the target schema)."""
    rpc = device.get("tvm_rpc")
    if device.kind != "linux-ssh" or not rpc:
        raise TargetError(f"{device.path}: tuning over RPC needs a linux-ssh target with "
                          "`tvm_rpc: {host: DEVICE, port: 9090, library: rpi4}` (add "
                          "`start_over_ssh: true` to let eedge start the server)")
    return dict(rpc)


def rpc_library(device: Target) -> str:
    """The TVM target (``host``/``rpi4``) whose libraries the device's server runs."""
    return str(rpc_settings(device).get("library", DEFAULT_LIBRARY))


@contextmanager
def tuning_session(device: Target, say: Callable[[str], None]) -> Iterator[Any]:
    """One RPC session to the device for the whole tuning run.

    The server is started over SSH first when the YAML asks for it, and stopped
    when the block ends. A SessionLost raised in the block becomes a TargetError
    naming the server.
    """
    from eedge.profiling.tvm_rpc import connect_rpc, rpc_server_over_ssh

    rpc = rpc_settings(device)
    host, port = str(rpc["host"]), int(rpc["port"])
    server = rpc_server_over_ssh(device, port, say) if rpc.get("start_over_ssh") \
        else nullcontext()
    with server:
        say(f"connecting to the TVM RPC server at {host}:{port}")
        session, _tvm = connect_rpc(host, port)
        one_thread(session, f"{host}:{port}")
        try:
            yield session
        except SessionLost as exc:
            raise SessionLost(f"{device.name}: the TVM RPC server at {host}:{port} went away "
                              f"while tuning ({exc}); the trials measured before are kept in "
                              "the bundle, run the command again to continue") from None


def one_thread(session: Any, where: str) -> None:
    """Time on one core of the device, as the tuning target says ("num-cores": 1).

    The session's thread pool otherwise has a worker per core, and candidates
    with parallel loops would be timed on all of them while tuned for one (the
    local runner sets one thread the same way).
    """
    try:
        session.get_function("runtime.config_threadpool")(SHARE_ALL_CORES, 1)
    except Exception as exc:  # TVM raises its own error types
        raise TargetError(f"the TVM RPC server at {where} cannot set its thread pool "
                          f"({str(exc).splitlines()[0][:120]}); is it TVM 0.27?") from None


def load_candidate(session: Any, artifact_path: str) -> Any:
    """Upload a built candidate under a name of its own, load it, delete the remote file.

    Why a name of its own: the builder names every candidate ``candidate.so``;
    uploading one over the shared object still mapped for the previous
    candidate crashed TVM's RPC server (SIGSEGV in the session process), and
    with the file intact dlopen would have returned the previous candidate's
    library, timing the wrong code. Deleting after loading keeps the device's
    work directory from filling up over a long run.
    """
    name = f"eedge-candidate-{next(_candidate_numbers)}.so"
    session.upload(artifact_path, name)
    try:
        return session.load_module(name)
    finally:
        session.remove(name)


def session_alive(session: Any) -> bool:
    """Whether the session still answers (one small remote call)."""
    try:
        session.get_function("tvm.rpc.server.workpath")("")
    except Exception:  # TVM raises its own error types for a closed socket
        return False
    return True


def check_session(session: Any, detail: str) -> None:
    """Raise SessionLost when the session no longer answers; ``detail``: the failure seen."""
    if not session_alive(session):
        raise SessionLost(detail.splitlines()[0][:160] if detail else "no answer")


def tune_bundle_over_rpc(bundle: Any, library: str, device: Target, trials: int,
                         say: Callable[[str], None],
                         report: Callable[[int, int, float | None], None]) -> Any:
    """Tune every stage for ``library`` (``host``/``rpi4``) with candidates timed on ``device``.

    The database is stored in the bundle under ``library``'s name, as for local
    tuning, so ``eedge compile --target LIBRARY`` builds from it afterwards.
    """
    from eedge.backends import tvm_tuning
    from eedge.backends.tvm_compiler import resolve_target

    served = rpc_library(device)
    if served != library:
        raise TargetError(f"{device.path}: its TVM RPC server runs {served} libraries "
                          f"(tvm_rpc.library), not {library}; tune with --target {served} or "
                          "name another device")
    target = resolve_target(library)
    with tuning_session(device, say) as session:
        return tvm_tuning.tune_bundle(bundle, target, trials, say, report, session=session)
