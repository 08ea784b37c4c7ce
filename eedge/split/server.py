"""``eedge serve``: a tail bundle behind the KServe v2 / Open Inference Protocol.

Endpoints: GET /v2/health/live, /v2/health/ready, /v2/models/{name} (metadata),
/v2/models/{name}/ready; POST /v2/models/{name}/infer with v2 JSON tensors
(the cut tensors, batch first) or one BYTES input ``eedge_handoff`` carrying
the base64 hand-off encoding. The reply has ``predictions``, ``exit_index``
(the model's exit numbering) and ``probabilities``.

Requests are merged by a dynamic batcher (up to ``max_batch`` rows or
``max_delay_ms`` of waiting) before the tail cascade runs once for all of
them. Malformed requests get 4xx with a message; bodies over the size limit
get 413; SIGTERM stops accepting, answers what is queued, and exits.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import EedgeError, InputDataError
from eedge.ir.bundle import load_bundle
from eedge.runtime.cascade import Cascade
from eedge.split.encoding import decode
from eedge.strict_json import dumps

V2_TYPES = {"FP32": np.float32, "INT8": np.int8, "INT64": np.int64}
DRAIN_LIMIT = 64 << 20  # refused bodies up to this size are read so the client gets a 413
NUMPY_TO_V2 = {np.dtype(np.float32): "FP32", np.dtype(np.int8): "INT8",
               np.dtype(np.int64): "INT64"}


def _refuse_nonfinite(name: str, array: np.ndarray) -> None:
    """400 for NaN/inf, checked in the model's dtype (FP32 1e39 arrives as inf)."""
    if array.dtype.kind != "f":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.argmax(bad.reshape(len(array), -1).any(axis=1))) if array.ndim else 0
        raise RequestError(HTTPStatus.BAD_REQUEST,
                           f"input {name!r}: row {row} holds NaN or infinity (in "
                           f"{array.dtype}); send finite numbers")


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class TailModel:
    """The tail cascade plus what the protocol needs to describe and check it."""

    name: str
    cascade: Cascade
    exit_offset: int                       # index of the tail's first exit in the model
    inputs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, bundle_dir: Path, runtime: str | None = None,
             name: str | None = None) -> "TailModel":
        bundle = load_bundle(bundle_dir)
        split = bundle.manifest.get("split") or {}
        if split.get("role") != "tail":
            raise InputDataError(f"{bundle_dir} is not a tail bundle; make one with "
                                 "`eedge split export BUNDLE --after CUT`")
        # inputs are checked per request in parse(); outputs per request in the handler,
        # so one request's overflow does not fail the others batched with it
        cascade = Cascade(bundle, runtime=runtime, check_finite=False)
        offset = int(split.get("head_exits", 0))
        return cls(name or bundle.manifest["model"]["name"], cascade, offset,
                   cascade.raw_input_specs())

    def metadata(self) -> dict[str, Any]:
        def tensor(spec: dict[str, Any]) -> dict[str, Any]:
            return {"name": spec["name"], "datatype": NUMPY_TO_V2[np.dtype(spec["dtype"])],
                    "shape": [-1] + [int(d) for d in spec["shape"][1:]]}
        classes = self.cascade.exits[-1]["num_classes"]
        return {"name": self.name, "versions": ["1"], "platform": "eedge",
                "runtime": self.cascade.runtime, "inputs": [tensor(s) for s in self.inputs],
                "outputs": [{"name": "predictions", "datatype": "INT64", "shape": [-1]},
                            {"name": "exit_index", "datatype": "INT64", "shape": [-1]},
                            {"name": "probabilities", "datatype": "FP32",
                             "shape": [-1, classes]}]}

    def parse(self, body: dict[str, Any], max_rows: int) -> tuple[dict[str, np.ndarray], int]:
        """v2 JSON request -> input arrays (strictly checked)."""
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not inputs:
            raise RequestError(HTTPStatus.BAD_REQUEST, "request needs a non-empty 'inputs' list")
        expected = {s["name"]: s for s in self.inputs}
        if len(inputs) == 1 and isinstance(inputs[0], dict) and \
                inputs[0].get("name") == "eedge_handoff":
            data = inputs[0].get("data")
            if inputs[0].get("datatype") != "BYTES" or not isinstance(data, list) or \
                    len(data) != 1 or not isinstance(data[0], str):
                raise RequestError(HTTPStatus.BAD_REQUEST, "eedge_handoff must be one BYTES "
                                   "element (base64)")
            try:
                payload = base64.b64decode(data[0], validate=True)
                tensors = decode(payload, expected)
            except (ValueError, EedgeError) as exc:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"bad hand-off: {exc}") from None
            arrays = {name: t.array for name, t in tensors.items()}
        else:
            arrays = {}
            for item in inputs:
                if not isinstance(item, dict):
                    raise RequestError(HTTPStatus.BAD_REQUEST, "each input must be an object")
                name = item.get("name")
                if name not in expected:
                    raise RequestError(HTTPStatus.BAD_REQUEST,
                                       f"unknown input {name!r}; expected {sorted(expected)}")
                spec = expected[name]
                want = NUMPY_TO_V2[np.dtype(spec["dtype"])]
                if item.get("datatype") != want:
                    raise RequestError(HTTPStatus.BAD_REQUEST,
                                       f"input {name!r} must have datatype {want}")
                shape = item.get("shape")
                if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0
                                                          for d in shape):
                    raise RequestError(HTTPStatus.BAD_REQUEST, f"input {name!r}: bad shape")
                if shape[1:] != [int(d) for d in spec["shape"][1:]]:
                    raise RequestError(HTTPStatus.BAD_REQUEST,
                                       f"input {name!r} has shape {shape}; expected "
                                       f"[N, {', '.join(str(d) for d in spec['shape'][1:])}]")
                data = item.get("data")
                if not isinstance(data, list) or len(data) != int(np.prod(shape)):
                    raise RequestError(HTTPStatus.BAD_REQUEST,
                                       f"input {name!r}: data must hold {int(np.prod(shape))} "
                                       "numbers")
                try:
                    array = np.asarray(data, dtype=np.float64)
                except (TypeError, ValueError, OverflowError):
                    raise RequestError(HTTPStatus.BAD_REQUEST,
                                       f"input {name!r}: data must be numbers") from None
                if want == "INT8" and (np.any(array != np.round(array)) or
                                       np.any(np.abs(array + 0.5) > 128)):
                    raise RequestError(HTTPStatus.BAD_REQUEST,
                                       f"input {name!r}: INT8 data out of range")
                with np.errstate(over="ignore", invalid="ignore"):
                    arrays[name] = array.astype(V2_TYPES[want]).reshape(shape)
            if set(arrays) != set(expected):
                raise RequestError(HTTPStatus.BAD_REQUEST,
                                   f"missing inputs: {sorted(set(expected) - set(arrays))}")
        for name, array in arrays.items():
            _refuse_nonfinite(name, array)
        rows = {a.shape[0] for a in arrays.values()}
        if len(rows) != 1 or 0 in rows:
            raise RequestError(HTTPStatus.BAD_REQUEST, "inputs disagree on the batch size")
        n = rows.pop()
        if n > max_rows:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"{n} rows exceed the limit of {max_rows} per request")
        return arrays, n

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The tail cascade on checked inputs; rows whose float logits overflow get
        probabilities that are not finite, which the handler refuses per request."""
        result = self.cascade.infer(arrays, raw=True)
        return {"predictions": result.predictions,
                "exit_index": result.exit_index + self.exit_offset,
                "probabilities": result.probabilities.astype(np.float32)}


class Batcher:
    """Merges concurrent requests into batches for one cascade call."""

    def __init__(self, model: TailModel, max_batch: int, max_delay_ms: float) -> None:
        self.model, self.max_batch, self.max_delay = model, max_batch, max_delay_ms / 1e3
        self.requests: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="eedge-batcher", daemon=True)
        self.batches = 0
        self.thread.start()

    def submit(self, arrays: dict[str, np.ndarray], rows: int) -> Future:
        future: Future = Future()
        self.requests.put((arrays, rows, future))
        return future

    def stop(self) -> None:
        self.requests.put(None)
        self.thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            first = self.requests.get()
            if first is None:
                return
            batch = [first]
            rows = first[1]
            deadline = time.monotonic() + self.max_delay
            stop = False
            while rows < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self.requests.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
                rows += item[1]
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[Any]) -> None:
        names = list(batch[0][0])
        merged = {n: np.concatenate([b[0][n] for b in batch]) for n in names}
        try:
            outputs = self.model.run(merged)
        except Exception as exc:  # every waiting request learns about the failure
            for _, _, future in batch:
                future.set_exception(exc)
            return
        self.batches += 1
        start = 0
        for _, rows, future in batch:
            future.set_result({k: v[start:start + rows] for k, v in outputs.items()})
            start += rows


def make_handler(model: TailModel, batcher: Batcher, max_body: int, max_rows: int,
                 timeout_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "eedge"

        def log_message(self, *_args: Any) -> None:  # quiet: no per-request log lines
            pass

        def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            data = dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _discard(self, length: int) -> None:
            """Read (and drop) a refused body, up to a cap, so the client sees the 413
            instead of a broken pipe while it is still sending."""
            left = min(length, DRAIN_LIMIT)
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)

        def _model_path(self, parts: list[str]) -> bool:
            return len(parts) >= 3 and parts[:2] == ["v2", "models"] and parts[2] == model.name

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if parts in (["v2", "health", "live"], ["v2", "health", "ready"]):
                self._send(HTTPStatus.OK, {"live": True, "ready": True})
            elif parts == ["v2"]:
                self._send(HTTPStatus.OK, {"name": "eedge", "extensions": []})
            elif self._model_path(parts) and len(parts) == 3:
                self._send(HTTPStatus.OK, model.metadata())
            elif self._model_path(parts) and parts[3:] == ["ready"]:
                self._send(HTTPStatus.OK, {"name": model.name, "ready": True})
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            try:
                if not (self._model_path(parts) and parts[3:] == ["infer"]):
                    raise RequestError(HTTPStatus.NOT_FOUND,
                                       f"no such endpoint {self.path}; POST "
                                       f"/v2/models/{model.name}/infer")
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required") \
                        from None
                if length > max_body:
                    self.close_connection = True
                    self._discard(length)
                    raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                       f"body of {length} bytes exceeds {max_body}")
                raw = self.rfile.read(length)
                if len(raw) != length:
                    raise RequestError(HTTPStatus.BAD_REQUEST, "body shorter than its length")
                try:
                    body = json.loads(raw)
                except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                    raise RequestError(HTTPStatus.BAD_REQUEST, f"body is not JSON: {exc}") \
                        from None
                arrays, rows = model.parse(body, max_rows)
                outputs = batcher.submit(arrays, rows).result(timeout=timeout_s)
                overflow = ~np.isfinite(outputs["probabilities"]).all(axis=-1)
                if overflow.any():
                    raise RequestError(HTTPStatus.BAD_REQUEST,
                                       f"row {int(np.argmax(overflow))}: the model's outputs "
                                       "overflow for these inputs (not finite); send inputs "
                                       "scaled as in training")
            except RequestError as exc:
                self._send(exc.status, {"error": str(exc)})
                return
            except Exception as exc:
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"inference failed: "
                                                                       f"{exc}"})
                return
            response = {"model_name": model.name, "id": body.get("id", "")
                        if isinstance(body, dict) else "", "outputs": [
                            {"name": k, "datatype": NUMPY_TO_V2[v.dtype], "shape": list(v.shape),
                             "data": v.reshape(-1).tolist()} for k, v in outputs.items()]}
            self._send(HTTPStatus.OK, response)

    return Handler


@dataclass
class Server:
    httpd: ThreadingHTTPServer
    batcher: Batcher
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "Server":
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, answer what is queued, release the port."""
        self.httpd.shutdown()
        self.batcher.stop()
        self.httpd.server_close()


def make_server(bundle_dir: Path, host: str = "127.0.0.1", port: int = 8000,
                runtime: str | None = None, max_batch: int = 32, max_delay_ms: float = 2.0,
                max_body_bytes: int = 16 << 20, max_rows: int = 256,
                name: str | None = None) -> Server:
    model = TailModel.load(bundle_dir, runtime, name)
    batcher = Batcher(model, max_batch, max_delay_ms)
    handler = make_handler(model, batcher, max_body_bytes, max_rows, timeout_s=60)
    class HTTPServer(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # the default 5 drops SYNs under concurrent clients (1 s stalls)

    try:
        httpd = HTTPServer((host, port), handler)
    except OSError as exc:
        batcher.stop()
        raise InputDataError(f"cannot listen on {host}:{port}: {exc}") from exc
    return Server(httpd, batcher)
