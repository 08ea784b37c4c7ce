"""The tail on Ray Serve replicas (`eedge serve --replicas N`, `--write-ray-config`).

One local Ray instance (2 CPUs) for the module, started and shut down here:
  - 2 replicas behind eedge's KServe server answer concurrent REST requests
    (binary and JSON) exactly as the single-process server does, with the unsplit
    cascade's decisions, both replicas doing work; malformed requests still get 400;
  - `eedge serve --replicas 2 --ray-address ADDR` as a process joins that instance
    as an existing cluster (int8 hand-offs on the int8 reference runtime), answers
    the same, and on SIGTERM says stopped, exits 0 and removes its application;
  - the Ray Serve config `--write-ray-config` writes parses as Ray Serve's schema and,
    deployed the way `serve run` does (import path + args), serves v2 REST through
    Ray Serve's HTTP proxy with the same answers and 4xx.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

import serve_helpers  # noqa: E402
from serve_helpers import Served, binary_request, serve_process, split_model  # noqa: E402
from zoo import example_input  # noqa: E402

from eedge.runtime.cascade import Cascade  # noqa: E402

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")


# ---- HTTP helpers (the v2 binary extension written from the protocol) ---------------------

STARTUP_S = 180
post = partial(serve_helpers.post, timeout=60)
get = partial(serve_helpers.get, timeout=60)
post_binary = partial(serve_helpers.post_binary, timeout=60)


def int8_params(head: Any, runtime: str) -> dict[str, dict]:
    quant = {t["name"]: t.get("quant") for io in Cascade(head, runtime=runtime).io
             for t in io["outputs"]}
    return {n: {"eedge_scale": q["scale"][0], "eedge_zero_point": q["zero_point"][0]}
            for n, q in quant.items() if q}


def _serve_process(tail: Path, *args: str) -> AbstractContextManager[Served]:
    """`eedge serve TAIL --port 0 --no-grpc ARGS` until the block ends (then SIGTERM, and
    SIGKILL if it has not exited within 90 s)."""
    return serve_process(tail, *args, grpc=False, startup_s=STARTUP_S, stop_s=90,
                         log_prefix="serve-ray")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The residual zoo model (median thresholds, int8 stages too) and its halves."""
    return split_model(tmp_path_factory.mktemp("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[dict[str, Any]]:
    """A local Ray instance (2 CPUs) with Serve's HTTP proxy on a free loopback port."""
    from eedge.split.ray_tail import start_ray

    assert start_ray(None, num_cpus=2)
    port = _free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield {"address": ray.get_runtime_context().gcs_address, "http_port": port}
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def _requests(model, runtime: str, n: int = 40):  # type: ignore[no-untyped-def]
    """n hand-off requests (1-3 rows each) from the head, and the unsplit decisions."""
    bundle, head, _ = model
    x = example_input(seed=7, batch=120)
    local = Cascade(head, runtime=runtime).infer(x)
    whole = Cascade(bundle, runtime=runtime).infer(x)
    assert 30 < local.pending.size < len(x)
    rng = np.random.default_rng(3)
    picks = [rng.choice(local.pending.size, int(rng.integers(1, 4)), replace=False)
             for _ in range(n)]
    requests = [{k: v[p] for k, v in local.handoff.items()} for p in picks]
    expected = [(whole.predictions[local.pending[p]], whole.exit_index[local.pending[p]])
                for p in picks]
    return requests, expected


def _send_all(url: str, requests: list[dict[str, np.ndarray]], binary: bool,
              params: dict[str, dict] | None = None, threads: int = 8) -> list[Any]:
    """The requests from ``threads`` concurrent clients; outputs per request."""
    replies: list[Any] = [None] * len(requests)

    def one(i: int) -> None:
        arrays = requests[i]
        if binary:
            body, headers = binary_request(arrays, params)
            status, out = post_binary(url, body, headers)
        else:
            kinds = {np.dtype(np.float32): "FP32", np.dtype(np.int8): "INT8"}
            inputs = [{"name": k, "datatype": kinds[a.dtype], "shape": list(a.shape),
                       "data": a.reshape(-1).tolist(),
                       **({"parameters": params[k]} if params and k in params else {})}
                      for k, a in arrays.items()]
            status, reply = post(url, json.dumps({"inputs": inputs}).encode())
            out = reply if status != 200 else {
                o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in reply["outputs"]}
        replies[i] = (status, out)

    def worker(k: int) -> None:
        for i in range(k, len(requests), threads):
            one(i)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(300)
    return replies


def _assert_same(replies: list[Any], reference: list[Any], expected: list[Any]) -> None:
    for i, ((status, out), (ref_status, ref), (pred, exits)) in enumerate(
            zip(replies, reference, expected)):
        assert status == ref_status == 200, (i, status, out)
        for name in ("predictions", "exit_index", "probabilities"):
            assert np.array_equal(np.asarray(out[name]), np.asarray(ref[name])), (i, name)
        assert np.array_equal(out["predictions"], pred) and np.array_equal(out["exit_index"],
                                                                           exits), i


def _malformed(model) -> list[dict[str, np.ndarray]]:  # type: ignore[no-untyped-def]
    spec = Cascade(model[2]).raw_input_specs()[0]
    shape = [int(d) for d in spec["shape"][1:]]
    return [{spec["name"]: np.zeros([1, *shape[:-1], shape[-1] + 1], np.float32)},
            {spec["name"]: np.full([1, *shape], np.nan, np.float32)},
            {"not_a_cut_tensor": np.zeros([1, *shape], np.float32)}]


def test_two_replicas_answer_like_the_single_process_server(model, ray_instance) -> None:  # type: ignore[no-untyped-def]
    from eedge.split.kserve_tail import ServeOptions, TailServer, build_model
    from eedge.split.ray_tail import build_ray_model, deploy_replicas, replica_info

    tail = model[2].path
    requests, expected = _requests(model, "onnx")
    handle = deploy_replicas(tail, 2, "onnx", max_batch=8, max_delay_ms=5,
                             app_name="eedge-test-replicas")
    single = TailServer(build_model(tail, "onnx", max_batch=8, max_delay_ms=5),
                        ServeOptions(port=0, grpc_port=None)).start()
    scaled = TailServer(build_ray_model(tail, 2, "onnx", max_batch=8, max_delay_ms=5,
                                        handle=handle),
                        ServeOptions(port=0, grpc_port=None)).start()
    try:
        name = single.model.name
        status, meta = get(f"{scaled.url}/v2/models/{name}")
        assert status == 200 and meta == get(f"{single.url}/v2/models/{name}")[1]
        assert meta["platform"] == "eedge"
        for binary in (True, False):
            reference = _send_all(f"{single.url}/v2/models/{name}/infer", requests, binary)
            replies = _send_all(f"{scaled.url}/v2/models/{name}/infer", requests, binary)
            _assert_same(replies, reference, expected)
        bad = _malformed(model)
        for (status, out), (ref_status, ref) in zip(
                _send_all(f"{scaled.url}/v2/models/{name}/infer", bad, True, threads=1),
                _send_all(f"{single.url}/v2/models/{name}/infer", bad, True, threads=1)):
            assert status == ref_status == 400 and out == ref, (out, ref)
        replicas = replica_info(handle, 2)
        assert len(replicas) == 2, replicas
        assert all(r["batches"] > 0 for r in replicas), replicas  # both did work
        # batches merged concurrent requests: fewer cascade runs than requests
        assert sum(r["batches"] for r in replicas) < 2 * len(requests)
    finally:
        scaled.stop()
        single.stop()
        serve.delete("eedge-test-replicas")


def test_cli_replicas_on_an_existing_cluster(model, ray_instance) -> None:  # type: ignore[no-untyped-def]
    """`eedge serve --replicas 2 --ray-address` (int8 hand-offs, int8 reference runtime)."""
    _, head, tail = model
    runtime = "int8-reference"
    requests, expected = _requests(model, runtime, n=16)
    params = int8_params(head, runtime)
    assert requests[0][next(iter(requests[0]))].dtype == np.int8
    with _serve_process(tail.path, "--runtime", runtime, "--replicas", "2", "--ray-address",
                        ray_instance["address"]) as served:
        replies = _send_all(served.infer_url, requests, True, params, threads=4)
        for i, ((status, out), (pred, exits)) in enumerate(zip(replies, expected)):
            assert status == 200, (i, out)
            assert np.array_equal(out["predictions"], pred), i
            assert np.array_equal(out["exit_index"], exits), i
        wrong_scale = {n: {**p, "eedge_scale": p["eedge_scale"] * 2} for n, p in params.items()}
        [(status, out)] = _send_all(served.infer_url, requests[:1], True, wrong_scale, 1)
        assert status == 400 and "scale" in out["error"], out
        assert "eedge-tail" in serve.status().applications
        served.proc.send_signal(signal.SIGTERM)
        rest, _ = served.proc.communicate(timeout=90)
        assert served.proc.returncode == 0 and b"stopped" in rest
    deadline = time.monotonic() + 60
    while "eedge-tail" in serve.status().applications and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "eedge-tail" not in serve.status().applications


def test_written_ray_config_deploys_and_serves(model, ray_instance, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import yaml
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.schema import ServeDeploySchema
    from ray._common.utils import import_attr

    tail = model[2].path
    path = tmp_path / "serve.yaml"
    done = subprocess.run([sys.executable, "-m", "eedge.cli.main", "serve", str(tail),
                           "--replicas", "2", "--max-batch", "8", "--port", "8123", "--max-body-mb", "1",
                           "--write-ray-config", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    config = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text())) \
        if hasattr(ServeDeploySchema, "model_validate") else \
        ServeDeploySchema.parse_obj(yaml.safe_load(path.read_text()))
    [app] = config.applications
    assert app.import_path == "eedge.split.ray_tail:app_builder"
    assert Path(app.args["tail"]) == Path(tail).resolve() and app.args["replicas"] == 2
    assert app.args["max_body_mb"] == 1
    assert config.http_options.port == 8123
    # what `serve run serve.yaml` does with it (on this instance's proxy port)
    built = call_user_app_builder_with_args_if_necessary(import_attr(app.import_path), app.args)
    serve.run(built, name=app.name, route_prefix="/eedge")
    try:
        url = f"http://127.0.0.1:{ray_instance['http_port']}/eedge"
        name = model[2].manifest["model"]["name"]
        status, meta = get(f"{url}/v2/models/{name}")
        assert status == 200 and meta["platform"] == "eedge", meta
        requests, expected = _requests(model, "onnx", n=12)
        replies = _send_all(f"{url}/v2/models/{name}/infer", requests, True, threads=4)
        for i, ((status, out), (pred, exits)) in enumerate(zip(replies, expected)):
            assert status == 200, (i, out)
            assert np.array_equal(out["predictions"], pred) and \
                np.array_equal(out["exit_index"], exits), i
        for status, out in _send_all(f"{url}/v2/models/{name}/infer", _malformed(model), True,
                                     threads=1):
            assert status == 400 and out.get("error"), out
        status, out = post(f"{url}/v2/models/{name}/infer", b"{" + b" " * (1 << 20) + b"}")
        assert status == 413 and "--max-body-mb" in out["error"], (status, out)
    finally:
        serve.delete(app.name)


def test_readme_inference_service_runs_eedge_serve_on_the_mounted_tail() -> None:
    """The KServe InferenceService the README shows parses, and its container command is
    `eedge serve` with real options on the directory KServe's storage initializer fills."""
    import re
    import shlex

    import click
    import yaml

    from eedge.cli.split_cmd import serve as serve_cmd

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    blocks = [b for b in re.findall(r"^```text\n(.*?)^```", readme, flags=re.S | re.M)
              if "kind: InferenceService" in b]
    assert len(blocks) == 1
    service = yaml.safe_load(blocks[0])
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    [container] = service["spec"]["predictor"]["containers"]
    assert container["name"] == "kserve-container"
    command = container["command"]
    assert command[:2] == ["eedge", "serve"]
    with click.Context(serve_cmd) as ctx:  # options and values as `eedge serve` parses them
        params = serve_cmd.make_context("serve", list(command[2:]), parent=ctx).params
    assert str(params["tail"]) == "/mnt/models"  # where KServe's storage initializer copies
    assert params["host"] == "0.0.0.0"
    ports = [p["containerPort"] for p in container["ports"]]
    assert ports == [params["port"]] and params["no_grpc"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["STORAGE_URI"].endswith("/tail")
    # the Ray commands shown next to it use real options too
    ray_lines = [line for b in re.findall(r"^```text\n(.*?)^```", readme, flags=re.S | re.M)
                 for line in b.splitlines() if line.startswith("eedge serve")]
    assert any("--ray-address" in line for line in ray_lines)
    for line in ray_lines:
        words = shlex.split(line.split("&&")[0], comments=True)
        with click.Context(serve_cmd) as ctx:
            serve_cmd.make_context("serve", words[2:], parent=ctx)


def test_bad_ray_options_fail_with_one_clear_line(model) -> None:  # type: ignore[no-untyped-def]
    tail = str(model[2].path)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    cases = {("--replicas", "2", "--ray-address", closed): "cannot reach the Ray cluster",
             ("--ray-address", closed): "--ray-address needs --replicas",
             ("--replicas", "0"): "--replicas"}
    for args, message in cases.items():
        done = subprocess.run([sys.executable, "-m", "eedge.cli.main", "serve", tail, "--port",
                               "0", "--no-grpc", *args], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode != 0 and message in done.stderr, (args, done.stderr[-500:])
        assert "Traceback" not in done.stderr
