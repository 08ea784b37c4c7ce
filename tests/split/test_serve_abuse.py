"""`eedge serve` under abuse (issue 20): each case against the server the CLI starts.

- negative, malformed and absurd ``Content-Length`` values and bodies over the
  limit (declared or chunked) get 4xx without the body being read into memory;
- 1,500 connections that send nothing (and some that send half a request) do
  not keep ``/v2/health/ready`` from answering, and are closed after the idle
  timeout;
- malformed tensors (booleans or floats in shapes, int64 wrap-around, huge
  integers, deep nesting, nested or boolean data, duplicate inputs, wrong
  datatypes and shapes, too many rows, binary sizes that do not add up, random
  byte flips) get 4xx, never 5xx, each within seconds;
- the server's memory (RSS) stays within a bound through all of it;
- SIGTERM answers every request in flight (REST and gRPC), stops accepting and
  exits 0 within a bounded time, also under continuous load.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_serve import (Served, binary_request, model, post, post_binary,  # noqa: E402,F401
                        serve_process)

from eedge.runtime.cascade import Cascade  # noqa: E402

IDLE_S = 3
MEMORY_BOUND_MB = 80


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def address(served: Served) -> tuple[str, int]:
    parsed = urlparse(served.url)
    return parsed.hostname or "127.0.0.1", parsed.port or 80


def raw_exchange(served: Served, head: bytes, body_chunks: int = 0,
                 timeout: float = 15) -> tuple[str, int]:
    """Send ``head``, read the status line the server answers with (before any body),
    then try to push ``body_chunks`` x 1 MiB more. Returns (status line, MiB pushed
    before the server closed the connection)."""
    sock = socket.create_connection(address(served), timeout=timeout)
    try:
        sock.sendall(head)
        status = b""
        deadline = time.monotonic() + timeout
        while b"\r\n" not in status and time.monotonic() < deadline:
            if not readable(sock, deadline - time.monotonic()):
                break
            chunk = sock.recv(4096)
            if not chunk:
                break
            status += chunk
        pushed = 0
        chunk = b"x" * (1 << 20)
        sock.settimeout(5)
        for _ in range(body_chunks):
            try:
                sock.sendall(chunk)
            except OSError:  # closed by the server: what we want
                break
            pushed += 1
        return status.split(b"\r\n")[0].decode(errors="replace"), pushed
    finally:
        sock.close()


def readable(sock: socket.socket, timeout: float) -> bool:
    """select() cannot take descriptors past 1024 (the idle test opens 1,500)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(max(timeout, 0) * 1000))


def status_code(line: str) -> int:
    parts = line.split()
    assert len(parts) >= 2 and parts[0].startswith("HTTP/1."), line
    return int(parts[1])


@pytest.fixture(scope="module")
def served(model):  # type: ignore[no-untyped-def]  # noqa: F811
    with serve_process(model[2].path, "--max-body-mb", "1", "--max-rows", "64",
                       "--idle-timeout", str(IDLE_S), "--max-delay-ms", "2") as s:
        yield s


def _infer_head(served: Served, extra: str) -> bytes:
    return (f"POST /v2/models/{served.name}/infer HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n").encode()


def _good(model) -> dict:  # type: ignore[no-untyped-def]  # noqa: F811
    spec = model[2].manifest["inputs"][0]
    shape = [1] + [int(d) for d in spec["shape"][1:]]
    return {"name": spec["name"], "datatype": "FP32", "shape": shape,
            "data": [0.25] * int(np.prod(shape))}


def _still_serves(model, served: Served) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    code, reply = post(served.infer_url, json.dumps({"inputs": [_good(model)]}).encode())
    assert code == 200 and reply["outputs"][0]["name"] == "predictions", reply


# ---- sizes -------------------------------------------------------------------------------

def test_bad_content_lengths_and_oversized_bodies_get_4xx_unread(model, served) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    pid = served.proc.pid
    before = rss_mb(pid)
    for value in ("-1", "-16777217", "99999999999999999999999999", "1e9", "0x10", "12abc"):
        line, pushed = raw_exchange(served, _infer_head(served, f"Content-Length: {value}\r\n"),
                                    body_chunks=64)
        assert 400 <= status_code(line) < 500, (value, line)
        assert pushed < 64, f"Content-Length {value}: the server kept reading {pushed} MiB"
    # a declared body over the limit: 413 before it is sent, and it is not read
    line, pushed = raw_exchange(served, _infer_head(served, f"Content-Length: {200 << 20}\r\n"),
                                body_chunks=64)
    assert status_code(line) == 413 and pushed < 64, (line, pushed)
    # no declared length (chunked): cut off with 413 once past the limit
    sock = socket.create_connection(address(served), timeout=15)
    try:
        sock.sendall(_infer_head(served, "Transfer-Encoding: chunked\r\n"))
        chunk = b"%x\r\n%s\r\n" % (1 << 16, b" " * (1 << 16))
        answer, sent = b"", 0
        while b"\r\n" not in answer and sent < 64 << 20:
            try:
                sock.sendall(chunk)
            except OSError:
                pass
            sent += 1 << 16
            if readable(sock, 0):
                answer += sock.recv(4096)
                if not answer:
                    break
        if b"\r\n" not in answer:
            answer += sock.recv(4096) if readable(sock, 10) else b""
        assert status_code(answer.split(b"\r\n")[0].decode()) == 413, answer[:200]
        assert sent < 8 << 20, f"the server read {sent >> 20} MiB of a 1 MiB-limited body"
    finally:
        sock.close()
    code, reply = post(served.infer_url, b"{" + b" " * (1 << 20) + b"}")
    assert code == 413 and "--max-body-mb" in reply["error"]
    _still_serves(model, served)
    assert rss_mb(pid) - before < MEMORY_BOUND_MB, (before, rss_mb(pid))


# ---- idle connections -------------------------------------------------------------------

def test_idle_connections_neither_block_health_nor_stay_open(model, served) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    pid = served.proc.pid
    fds_before, rss_before = open_fds(pid), rss_mb(pid)
    idle: list[socket.socket] = []
    try:
        for i in range(1500):
            sock = socket.create_connection(address(served), timeout=30)
            if i % 30 == 0:  # half a request, never finished (slowloris)
                sock.sendall(b"POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\n")
            idle.append(sock)
        start = time.monotonic()
        with urllib.request.urlopen(f"{served.url}/v2/health/ready", timeout=10) as response:
            assert json.loads(response.read()) == {"ready": True}
        took = time.monotonic() - start
        assert took < 2.0, f"/v2/health/ready took {took:.2f} s with 1,500 idle connections"
        _still_serves(model, served)
        # every idle connection is closed by the server after the idle timeout
        deadline = time.monotonic() + IDLE_S + 60
        poller = select.poll()
        by_fd = {sock.fileno(): sock for sock in idle}
        for fd in by_fd:
            poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        open_ones = set(by_fd)
        while open_ones and time.monotonic() < deadline:
            for fd, _event in poller.poll(1000):
                try:
                    data = by_fd[fd].recv(4096)
                except OSError:
                    data = b""
                if not data:
                    open_ones.discard(fd)
                    poller.unregister(fd)
        assert not open_ones, f"{len(open_ones)} idle connections still open after " \
                              f"{IDLE_S + 60} s"
        assert time.monotonic() - start < IDLE_S + 60
    finally:
        for sock in idle:
            sock.close()
    deadline = time.monotonic() + 30
    while open_fds(pid) > fds_before + 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert open_fds(pid) <= fds_before + 20, (fds_before, open_fds(pid))
    assert rss_mb(pid) - rss_before < MEMORY_BOUND_MB, (rss_before, rss_mb(pid))


# ---- malformed tensors ------------------------------------------------------------------

def _binary(good: dict, header: dict, tail: bytes, length: Any = None) -> tuple[bytes, dict]:
    head = json.dumps(header).encode()
    return head + tail, {"Content-Type": "application/octet-stream",
                         "Inference-Header-Content-Length": str(len(head) if length is None
                                                                else length)}


def malformed_cases(model) -> dict[str, tuple[bytes, dict[str, str]]]:  # type: ignore[no-untyped-def]  # noqa: F811
    good = _good(model)
    n = len(good["data"])
    json_h = {"Content-Type": "application/json"}

    def body(**change: Any) -> tuple[bytes, dict]:
        return json.dumps({"inputs": [{**good, **change}]}).encode(), json_h

    raw = np.zeros(n, np.float32).tobytes()
    binary_in = {k: v for k, v in good.items() if k != "data"}
    cases = {
        "bool in shape": body(shape=[True] + good["shape"][1:]),
        "float in shape": body(shape=[1.0] + good["shape"][1:]),
        "string in shape": body(shape=["1"] + good["shape"][1:]),
        "negative dim": body(shape=[-1] + good["shape"][1:]),
        "int64 wrap-around in shape": body(shape=[2 ** 64 + 1] + good["shape"][1:]),
        "huge dim": body(shape=[10 ** 30] + good["shape"][1:]),
        "shape product overflow": body(shape=[2 ** 40] + good["shape"][1:]),
        "huge integer in data": (json.dumps({"inputs": [good]}).replace(
            "0.25", "1" + "0" * 400, 1).encode(), json_h),
        "deep nesting": (b'{"inputs": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", json_h),
        "deep nesting in data": body(data=json.loads("[" * 900 + "1" + "]" * 900)),
        "nested data": body(data=[good["data"]]),
        "booleans in data": body(data=[True] * n),
        "strings in data": body(data=["0.5"] * n),
        "null in data": body(data=[None] * n),
        "duplicate inputs": (json.dumps({"inputs": [good, good]}).encode(), json_h),
        "unknown input": body(name="not_an_input"),
        "wrong datatype": body(datatype="INT8"),
        "unknown datatype": body(datatype="FP64X"),
        "wrong shape": body(shape=good["shape"][:-1] + [good["shape"][-1] + 1]),
        "wrong rank": body(shape=good["shape"] + [1]),
        "too few numbers": body(data=good["data"][1:]),
        "rows over the limit": body(shape=[65] + good["shape"][1:], data=[0.0] * (65 * n)),
        "zero rows": body(shape=[0] + good["shape"][1:], data=[]),
        "no inputs": (b'{"inputs": []}', json_h),
        "inputs not a list": (b'{"inputs": {"a": 1}}', json_h),
        "not an object": (b"[1, 2, 3]", json_h),
        "not json": (b"\xff\xfe garbage", json_h),
        "NaN literal": (json.dumps({"inputs": [{**good, "data": [float("nan")] * n}]})
                        .encode(), json_h),
        "unknown output": (json.dumps({"inputs": [good], "outputs": [{"name": "logits"}]})
                           .encode(), json_h),
        "duplicate output": (json.dumps({"inputs": [good], "outputs": [
            {"name": "predictions"}, {"name": "predictions"}]}).encode(), json_h),
        "binary: size mismatch": _binary(good, {"inputs": [{**binary_in, "parameters": {
            "binary_data_size": len(raw) - 4}}]}, raw[:-4]),
        "binary: negative size": _binary(good, {"inputs": [{**binary_in, "parameters": {
            "binary_data_size": -4}}]}, raw),
        "binary: bool size": _binary(good, {"inputs": [{**binary_in, "parameters": {
            "binary_data_size": True}}]}, raw),
        "binary: bytes left over": _binary(good, {"inputs": [{**binary_in, "parameters": {
            "binary_data_size": len(raw)}}]}, raw + b"1234"),
        "binary: header length negative": _binary(good, {"inputs": [{**binary_in,
            "parameters": {"binary_data_size": len(raw)}}]}, raw, length=-5),
        "binary: header length past the body": _binary(good, {"inputs": [{**binary_in,
            "parameters": {"binary_data_size": len(raw)}}]}, raw, length=10 ** 9),
        "binary: header length not a number": _binary(good, {"inputs": [{**binary_in,
            "parameters": {"binary_data_size": len(raw)}}]}, raw, length="12a"),
        "binary: header cut in the middle": _binary(good, {"inputs": [{**binary_in,
            "parameters": {"binary_data_size": len(raw)}}]}, raw, length=20),
        "binary: no size and no data": _binary(good, {"inputs": [binary_in]}, raw),
        "binary: NaN": _binary(good, {"inputs": [{**binary_in, "parameters": {
            "binary_data_size": len(raw)}}]}, np.full(n, np.nan, np.float32).tobytes()),
    }
    return cases


def test_malformed_tensors_get_4xx_quickly(model, served) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    pid = served.proc.pid
    before = rss_mb(pid)
    for label, (body, headers) in malformed_cases(model).items():
        start = time.monotonic()
        code, reply = post(served.infer_url, body, headers, timeout=30)
        took = time.monotonic() - start
        assert 400 <= code < 500 and reply.get("error"), (label, code, reply)
        assert took < 5, (label, took)
    _still_serves(model, served)
    assert rss_mb(pid) - before < MEMORY_BOUND_MB, (before, rss_mb(pid))


def test_random_byte_flips_never_get_5xx(model, served) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    good = _good(model)
    good["shape"][0] = 2
    good["data"] = good["data"] * 2
    text = json.dumps({"inputs": [good]}).encode()
    array = np.full([2, *good["shape"][1:]], 0.25, np.float32)
    binary, headers = binary_request({good["name"]: array})
    rng = np.random.default_rng(20)
    codes = []
    for i in range(150):
        source, head = (text, {"Content-Type": "application/json"}) if i % 2 else \
            (binary, headers)
        mutated = bytearray(source)
        for _ in range(int(rng.integers(1, 4))):
            # JSON: anywhere; binary: mostly in the JSON header
            limit = len(source) if i % 2 else int(headers["Inference-Header-Content-Length"])
            mutated[int(rng.integers(limit))] = int(rng.integers(256))
        if i % 2:
            code, reply = post(served.infer_url, bytes(mutated), head, timeout=30)
        else:  # a binary answer when the flips left the request valid
            code, reply = post_binary(served.infer_url, bytes(mutated), head)
        assert code < 500, (i, code, reply)
        codes.append(code)
    assert any(400 <= c < 500 for c in codes)
    _still_serves(model, served)


# ---- SIGTERM ----------------------------------------------------------------------------

def test_sigterm_answers_every_request_in_flight(model) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """16 REST (binary and JSON) and 4 gRPC requests wait in the batcher (1.5 s
    window) when SIGTERM arrives: every one is answered correctly, after the
    signal, and the process exits 0."""
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    tail = model[2]
    spec = tail.manifest["inputs"][0]
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal((1, *[int(d) for d in spec["shape"][1:]]))
              .astype(np.float32) for _ in range(20)]
    expected = [int(Cascade(tail).infer({spec["name"]: a}, raw=True).predictions[0])
                for a in arrays]
    with serve_process(tail.path, "--max-batch", "1000", "--max-delay-ms", "1500") as served:
        results: list[Any] = [None] * len(arrays)
        answered_at = [0.0] * len(arrays)
        sent = threading.Semaphore(0)

        def rest(i: int) -> None:
            if i % 2:
                body, headers = binary_request({spec["name"]: arrays[i]})
            else:
                body = json.dumps({"inputs": [{"name": spec["name"], "datatype": "FP32",
                                               "shape": list(arrays[i].shape),
                                               "data": arrays[i].reshape(-1).tolist()}]}).encode()
                headers = {"Content-Type": "application/json"}
            request = urllib.request.Request(served.infer_url, data=body, headers=headers)
            sent.release()
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    raw = response.read()
                    length = response.headers.get("Inference-Header-Content-Length")
                    if length:
                        header = json.loads(raw[:int(length)])
                        assert header["outputs"][0]["name"] == "predictions"
                        results[i] = int(np.frombuffer(raw[int(length):int(length) + 8],
                                                       "<i8")[0])
                    else:
                        results[i] = json.loads(raw)["outputs"][0]["data"][0]
            except Exception as exc:  # noqa: BLE001 - recorded as lost
                results[i] = f"lost: {exc!r}"
            answered_at[i] = time.monotonic()

        def grpc_call(i: int) -> None:
            request = pb.ModelInferRequest(model_name=served.name, inputs=[
                pb.ModelInferRequest.InferInputTensor(name=spec["name"], datatype="FP32",
                                                      shape=list(arrays[i].shape))],
                raw_input_contents=[arrays[i].tobytes()])
            with grpc.insecure_channel(served.grpc) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                grpc.channel_ready_future(channel).result(timeout=30)
                sent.release()
                try:
                    reply = stub.ModelInfer(request, timeout=60)
                    results[i] = int(np.frombuffer(reply.raw_output_contents[0], "<i8")[0])
                except grpc.RpcError as exc:
                    results[i] = f"lost: {exc.code()} {exc.details()}"
            answered_at[i] = time.monotonic()

        threads = [threading.Thread(target=rest if i < 16 else grpc_call, args=(i,))
                   for i in range(len(arrays))]
        for t in threads:
            t.start()
        for _ in threads:
            assert sent.acquire(timeout=60)
        time.sleep(0.5)  # the requests travel to the server; they wait 1.5 s to be batched
        signalled = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(90)
        code = served.proc.wait(60)
        exited = time.monotonic()
        out = served.proc.stdout.read().decode()
    assert results == expected, results
    assert min(answered_at) > signalled, "the requests were answered before SIGTERM"
    assert code == 0 and "stopped" in out, (code, out)
    assert exited - signalled < 30


def test_sigterm_under_load_exits_promptly_without_wrong_answers(model) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """8 clients send requests (a new connection each) while SIGTERM arrives: every
    answer is right, none is a 5xx, the only failures are connections the stopping
    server no longer accepts, and it exits 0 within a bound."""
    tail = model[2]
    spec = tail.manifest["inputs"][0]
    array = np.full((2, *[int(d) for d in spec["shape"][1:]]), 0.5, np.float32)
    expected = Cascade(tail).infer({spec["name"]: array}, raw=True).predictions.tolist()
    body, headers = binary_request({spec["name"]: array})
    outcomes: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    with serve_process(tail.path, "--max-delay-ms", "5") as served:
        def client() -> None:
            while not stop.is_set():
                try:
                    code, outputs = post_binary(served.infer_url, body, headers)
                    outcome = "ok" if code == 200 and outputs["predictions"].tolist() == \
                        expected else f"wrong {code}"
                except urllib.error.URLError as exc:
                    reason = exc.reason
                    outcome = "refused" if isinstance(reason, ConnectionRefusedError) else \
                        f"reset {reason!r}"
                    if isinstance(reason, ConnectionRefusedError):
                        stop.set()
                except (ConnectionError, OSError) as exc:
                    outcome = f"reset {exc!r}"
                with lock:
                    outcomes.append(outcome)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while outcomes.count("ok") < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        signalled = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        code = served.proc.wait(60)
        exited = time.monotonic()
        stop.set()
        for t in threads:
            t.join(60)
    assert code == 0 and exited - signalled < 30
    assert outcomes.count("ok") >= 200
    assert not [o for o in outcomes if o.startswith("wrong")], outcomes
    # connections the kernel queued but the stopping server never accepted are reset;
    # a request the server accepted is answered (test above): say how many, bounded
    resets = [o for o in outcomes if o.startswith("reset")]
    assert len(resets) <= 8, resets
