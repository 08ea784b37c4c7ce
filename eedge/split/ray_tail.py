"""The tail scaled out on Ray Serve: ``eedge serve TAIL --replicas N``.

KServe's model server hosts Ray Serve deployments (``kserve.ray.RayModel``: the
data plane awaits a ``DeploymentHandle``). eedge does the same with its own
``KServeTail``: the front process is ``eedge serve``'s server (KServe's
``ModelServer`` with eedge's limits, REST and gRPC v2, graceful SIGTERM) and its
model checks each request exactly as the single-process server does, merges the
checked requests into batches (``--max-batch`` rows, ``--max-delay-ms``) and sends
each batch to ``TailReplica``, a Ray Serve deployment with N replicas, keeping up to
two batches in flight per replica. Each replica loads the tail cascade once and
merges the calls it holds at once with ``@serve.batch`` into one cascade run.
Replies, errors and metadata are the single-process server's.

The bundle travels to the replicas through Ray's object store (its files as
bytes), so a cluster (``--ray-address``) needs eedge installed on its nodes but
not the bundle on a shared disk.

``app_builder`` is the same thing as a Ray Serve application (``serve run`` /
``serve deploy`` of the config ``write_ray_config`` writes): an ingress
deployment with KServe's v2 REST endpoints (behind eedge's request limits) on
Ray Serve's HTTP proxy, in front of the ``TailReplica`` deployment.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import InputDataError
from eedge.split.batching import BatchQueue

try:  # the optional extra `pip install eedge[serve]`
    import ray
    from ray import serve
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise InputDataError(f"--replicas needs Ray Serve ({exc.name} is missing): "
                         "pip install 'eedge[serve]'") from None

APP_NAME = "eedge-tail"
DEFAULT_MAX_ONGOING = 64   # requests a replica holds at once (batches form among them)


# ---- the replicas ---------------------------------------------------------------------------

def pack_bundle(path: Path | str) -> dict[str, bytes]:
    """A bundle directory as {relative path: bytes} (to ship it to Ray workers)."""
    root = Path(path)
    if not (root / "manifest.json").is_file():
        raise InputDataError(f"{root} is not a bundle (no manifest.json); make a tail with "
                             "`eedge split export BUNDLE --after CUT --out DIR`")
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def _unpack_bundle(files: dict[str, bytes]) -> Path:
    root = Path(tempfile.mkdtemp(prefix="eedge-tail-"))
    for rel, data in files.items():
        target = (root / rel).resolve()
        if root.resolve() not in target.parents:
            raise InputDataError(f"bundle file {rel!r} escapes the bundle directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


@serve.deployment(name="TailReplica", max_ongoing_requests=DEFAULT_MAX_ONGOING)
class TailReplica:
    """One replica: the tail cascade, fed by ``@serve.batch`` (checked arrays in,
    the cascade's outputs out; requests are checked by the front)."""

    def __init__(self, bundle: dict[str, bytes] | str, runtime: str | None = None,
                 max_batch: int = 32, max_delay_ms: float = 2.0) -> None:
        from eedge.split.server import TailModel

        path = _unpack_bundle(bundle) if isinstance(bundle, dict) else Path(bundle)
        self.tail = TailModel.load(path, runtime)
        self.run_batch.set_max_batch_size(max_batch)
        self.run_batch.set_batch_wait_timeout_s(max_delay_ms / 1e3)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="eedge-replica")
        self.batches = 0

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def run_batch(self, items: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        names = list(items[0])
        merged = {n: np.concatenate([item[n] for item in items]) for n in names}
        loop = asyncio.get_running_loop()
        outputs = await loop.run_in_executor(self.executor, self.tail.run, merged)
        self.batches += 1
        replies, start = [], 0
        for item in items:
            rows = len(item[names[0]])
            replies.append({k: v[start:start + rows] for k, v in outputs.items()})
            start += rows
        return replies

    async def __call__(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return await self.run_batch(arrays)

    def info(self) -> dict[str, Any]:
        """Which process answers and how many cascade runs it made (tests, benchmarks)."""
        return {"pid": os.getpid(), "batches": self.batches}


class RayDispatch(BatchQueue):
    """Stands in for ``KServeTail``'s in-process batcher: checked requests are merged on
    the front (up to ``max_batch`` rows or ``max_delay_ms``, as in-process) and each
    merged batch is one call to a replica, with up to two calls in flight per replica
    (requests arriving meanwhile form the next batch): one Ray call per batch, not per
    request, and every replica busy."""

    task_name = "eedge-ray-dispatch"

    def __init__(self, handle: Any, max_batch: int, max_delay_ms: float, replicas: int) -> None:
        super().__init__(max_batch, max_delay_ms)  # batches: calls to the replicas
        self.handle, self.replicas = handle, replicas
        self._slots: asyncio.Semaphore | None = None
        self._calls: set[asyncio.Task] = set()

    def _on_start(self) -> None:
        self._slots = asyncio.Semaphore(2 * self.replicas)

    async def _serve(self) -> None:
        assert self._loop is not None and self._wakeup is not None and self._slots is not None
        loop, wakeup, slots = self._loop, self._wakeup, self._slots
        while True:
            # all replicas busy: requests keep gathering while it waits for a slot
            batch = await self._gather(loop, wakeup, ready=slots.acquire)
            call = loop.create_task(self._call(batch))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def _call(self, batch: list[Any]) -> None:
        assert self._slots is not None
        try:
            await self._compute(batch, self.handle.remote)
        finally:
            self._slots.release()

    def close(self) -> None:
        pass


def replica_options(replicas: int, per_replica: float | None = None) -> dict[str, Any]:
    """Ray Serve options for N replicas: ``per_replica`` CPUs each, by default one
    when the cluster has them, else an equal share (N replicas fit on a small machine)."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise InputDataError(f"--replicas must be at least 1, got {replicas!r}")
    if per_replica is None:
        per_replica = min(1.0, float(ray.cluster_resources().get("CPU", 1.0)) / replicas)
    return {"num_replicas": replicas,
            "ray_actor_options": {"num_cpus": round(float(per_replica), 3)},
            "max_ongoing_requests": DEFAULT_MAX_ONGOING}


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """A HOST:PORT cluster address must accept a connection (Ray itself retries for
    minutes); other forms (``auto``, ``ray://...``) are left to Ray."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "/" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise InputDataError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); "
                             "give the head node's GCS address (`ray start --head` prints it) "
                             "or drop --ray-address for a local instance") from None


def start_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to a cluster at ``address`` or start a local instance; True if we
    started it (and so stop it)."""
    if ray.is_initialized():
        return False
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise InputDataError(f"cannot connect to the Ray cluster at {address}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else exc}; start one "
                                 "with `ray start --head` or drop --ray-address") from None
        return False
    ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    return True


def deploy_replicas(tail: Path | str, replicas: int, runtime: str | None = None,
                    max_batch: int = 32, max_delay_ms: float = 2.0,
                    app_name: str = APP_NAME) -> Any:
    """Deploy N ``TailReplica``s (Ray must be initialized; Ray's own HTTP proxy is
    not started) and return the deployment handle."""
    serve.start(http_options={"location": "NoServer"})
    app = TailReplica.options(**replica_options(replicas)).bind(
        pack_bundle(tail), runtime, max_batch, max_delay_ms)
    return serve.run(app, name=app_name, route_prefix=None)


def build_ray_model(tail: Path | str, replicas: int, runtime: str | None = None,
                    name: str | None = None, max_batch: int = 32, max_delay_ms: float = 2.0,
                    max_rows: int = 256, handle: Any = None) -> Any:
    """``eedge serve``'s KServe model, computing on the replicas behind ``handle``
    (deployed here when not given)."""
    from eedge.split.kserve_tail import build_model

    model = build_model(tail, runtime=runtime, name=name, max_batch=max_batch,
                        max_delay_ms=max_delay_ms, max_rows=max_rows)
    model.batcher.close()  # the in-process batcher's thread pool is not used
    if handle is None:
        handle = deploy_replicas(tail, replicas, runtime, max_batch, max_delay_ms)
    model.batcher = RayDispatch(handle, max_batch, max_delay_ms, replicas)
    return model


def replica_info(handle: Any, replicas: int, calls: int = 400) -> list[dict[str, Any]]:
    """``info()`` of the replicas (distinct pids), asked in rounds of 8 concurrent calls
    until ``replicas`` answered or ``calls`` were made (the router picks who answers)."""
    seen: dict[int, dict[str, Any]] = {}
    for _ in range(0, calls, 8):
        for response in [handle.info.remote() for _ in range(8)]:
            info = response.result(timeout_s=60)
            seen[info["pid"]] = info
        if len(seen) >= replicas:
            break
    return list(seen.values())


def serve_with_replicas(tail: Path, replicas: int, ray_address: str | None,
                        runtime: str | None, max_batch: int, max_delay_ms: float,
                        max_rows: int, options: Any) -> None:
    """``eedge serve TAIL --replicas N [--ray-address ADDR]``."""
    from eedge.split.kserve_tail import serve_main

    started = start_ray(ray_address)
    try:
        model = build_ray_model(tail, replicas, runtime, max_batch=max_batch,
                                max_delay_ms=max_delay_ms, max_rows=max_rows)
        where = ray_address or f"a local Ray instance ({ray.cluster_resources().get('CPU', 0):g} " \
                               "CPUs)"
        print(f"tail on {replicas} Ray Serve replica{'s' * (replicas > 1)} on {where}",
              file=sys.stderr, flush=True)  # stdout's first line stays `serving ... at URL`
        serve_main(model, options)
    finally:
        try:
            if started:  # ours: stop Serve and Ray (the replicas go with them)
                serve.shutdown()
            else:  # a cluster: remove our application, leave the rest running
                serve.delete(APP_NAME, _blocking=False)
        finally:
            if started:
                ray.shutdown()


# ---- the same as a Ray Serve application (config files) -------------------------------------

def _ingress_app(model: Any, max_body_bytes: int, idle_timeout_s: float) -> Any:
    """A FastAPI app with KServe's v2 REST endpoints for ``model``, behind eedge's
    body limits (what ``eedge serve``'s REST server runs)."""
    from fastapi import FastAPI
    from kserve.errors import InvalidInput
    from kserve.model_repository import ModelRepository
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.server import RESTServer

    from eedge.split.kserve_tail import BodyLimits, EedgeDataPlane, _invalid_input

    repository = ModelRepository()
    repository.update(model)
    rest = RESTServer.__new__(RESTServer)  # only its endpoint and handler registration
    rest.dataplane = EedgeDataPlane(model_registry=repository)
    rest.model_repository_extension = ModelRepositoryExtension(model_registry=repository)
    app = FastAPI(title="eedge serve (Ray Serve)", docs_url=None, redoc_url=None)
    rest._register_endpoints(app)
    rest._add_exception_handlers(app)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_middleware(BodyLimits, max_body_bytes=max_body_bytes,
                       read_timeout_s=idle_timeout_s, body_deadline_s=60.0)
    return app


@serve.deployment(name="TailIngress", max_ongoing_requests=256,
                  ray_actor_options={"num_cpus": 0})
@serve.ingress()
class TailIngress:
    """Ray Serve's HTTP proxy -> KServe v2 REST (checked as by ``eedge serve``) ->
    the ``TailReplica`` deployment."""

    def __init__(self, replicas_handle: Any, tail: str, runtime: str | None, max_batch: int,
                 max_delay_ms: float, max_rows: int, max_body_bytes: int,
                 idle_timeout_s: float, replicas: int) -> None:
        self.model = build_ray_model(tail, replicas, runtime, max_batch=max_batch,
                                     max_delay_ms=max_delay_ms, max_rows=max_rows,
                                     handle=replicas_handle)
        self.limits = (max_body_bytes, idle_timeout_s)

    def __serve_build_asgi_app__(self) -> Any:
        return _ingress_app(self.model, *self.limits)


def app_builder(args: dict[str, Any]) -> Any:
    """Ray Serve application builder (``import_path: eedge.split.ray_tail:app_builder``).

    args: ``tail`` (bundle directory, readable where the ingress runs), ``replicas``,
    ``runtime``, ``max_batch``, ``max_delay_ms``, ``max_rows``, ``max_body_mb``,
    ``idle_timeout_s``, ``replica_cpus`` (CPUs reserved per replica; default one, or
    an equal share of a smaller cluster)."""
    known = {"tail", "replicas", "runtime", "max_batch", "max_delay_ms", "max_rows",
             "max_body_mb", "idle_timeout_s", "replica_cpus"}
    unknown = sorted(set(args) - known)
    if unknown or "tail" not in args:
        raise InputDataError(f"Ray Serve args: unknown {unknown}; 'tail' is required "
                             f"(known: {sorted(known)})")
    tail = str(args["tail"])
    replicas = int(args.get("replicas", 1))
    runtime = args.get("runtime")
    max_batch, delay = int(args.get("max_batch", 32)), float(args.get("max_delay_ms", 2.0))
    cpus = args.get("replica_cpus")
    options = replica_options(replicas, None if cpus is None else float(cpus))
    replicas_app = TailReplica.options(**options).bind(pack_bundle(tail), runtime, max_batch,
                                                       delay)
    return TailIngress.bind(replicas_app, tail, runtime, max_batch, delay,
                            int(args.get("max_rows", 256)),
                            int(float(args.get("max_body_mb", 16.0)) * (1 << 20)),
                            float(args.get("idle_timeout_s", 10.0)), replicas)


def ray_config(tail: Path | str, replicas: int, runtime: str | None = None,
               max_batch: int = 32, max_delay_ms: float = 2.0, max_rows: int = 256,
               max_body_mb: float = 16.0, host: str = "0.0.0.0", port: int = 8000,
               name: str = APP_NAME) -> dict[str, Any]:
    """A Ray Serve config (``serve deploy`` / ``serve run``) for the tail."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise InputDataError(f"--replicas must be at least 1, got {replicas!r}")
    pack_bundle(tail)  # a bundle directory, or a clear error now rather than on the cluster
    args: dict[str, Any] = {"tail": str(Path(tail).resolve()), "replicas": replicas,
                            "max_batch": max_batch, "max_delay_ms": max_delay_ms,
                            "max_rows": max_rows, "max_body_mb": max_body_mb}
    if runtime:
        args["runtime"] = runtime
    return {"proxy_location": "HeadOnly",
            "http_options": {"host": host, "port": port},
            "applications": [{"name": name, "route_prefix": "/",
                              "import_path": "eedge.split.ray_tail:app_builder",
                              "args": args}]}


def write_ray_config(path: Path, config: dict[str, Any]) -> Path:
    import yaml

    path.write_text("# Ray Serve config written by `eedge serve --write-ray-config`:\n"
                    "#   serve deploy THIS_FILE   (a running cluster)   or   serve run "
                    "THIS_FILE\n# `tail` must be readable on the node running the ingress.\n"
                    + yaml.safe_dump(config, sort_keys=False))
    return path
