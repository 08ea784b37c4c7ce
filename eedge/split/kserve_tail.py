"""The tail as a KServe model: ``eedge serve`` runs it on KServe's ``ModelServer``.

``KServeTail`` is a ``kserve.Model``: v2 metadata (inputs with names, shapes,
datatypes and INT8 quantization; outputs ``predictions``, ``exit_index`` in the
whole model's exit numbering, ``probabilities``), readiness, and ``predict`` on
``kserve.InferRequest`` -- plain v2 JSON tensors, the binary tensor data extension
(``Inference-Header-Content-Length``; KServe's ``InferRequest.from_bytes`` splits
the body) and gRPC ``raw_input_contents``. Concurrent requests are merged by an
asyncio batcher inside the model (KServe's Python server has none): up to
``max_batch`` rows or ``max_delay_ms`` of waiting, then one cascade run on a
worker thread while the event loop keeps accepting.

``TailServer`` is KServe's ``ModelServer`` (its registry, data plane, REST
endpoints, exception handlers and gRPC servicer) with what a server facing
untrusted clients needs, configured on uvicorn rather than written by hand:
  - it binds the address it is given (KServe binds 0.0.0.0 / [::]);
  - ``BodyLimits``, a small ASGI middleware: bodies over ``max_body_bytes`` get
    413 before they are read (a declared length that is not a non-negative
    integer gets 400 -- uvicorn's parser already refuses negative ones), bodies
    that trickle in are cut off (408), and infer bodies are checked before
    KServe's decoder sees them (JSON that orjson cannot read: deep nesting,
    NaN literals, integers past 64 bits; shapes with booleans or floats, which
    pydantic would coerce; binary headers whose sizes do not add up), so they
    get 400 instead of KServe's 500;
  - an idle timeout on the HTTP protocol: a connection that has not completed a
    request's headers within ``idle_timeout_s`` is closed (uvicorn's
    keep-alive timer only starts after a first response, so idle sockets would
    otherwise stay open forever);
  - SIGTERM/SIGINT: stop accepting, answer every request already accepted
    (REST and gRPC), exit within ``grace_s``; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from eedge.errors import InputDataError
from eedge.split.batching import BatchQueue
from eedge.split.encoding import is_v2_shape
from eedge.split.server import OUTPUTS, V2_TYPES, RequestError, TailModel

try:  # an optional extra: `pip install eedge[serve]`
    import kserve
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from grpc import aio as grpc_aio
    from kserve.errors import InvalidInput
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
    from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
    from kserve.protocol.grpc.servicer import InferenceServicer
    from kserve.protocol.infer_type import (InferInput, InferOutput, InferRequest,
                                            InferResponse, RequestedOutput)
    from kserve.protocol.rest.server import RESTServer
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise InputDataError(f"serving needs KServe ({exc.name} is missing): "
                         "pip install 'eedge[serve]'") from None

BINARY_HEADER = "inference-header-content-length"
MAX_INPUTS = 64
# bodies declared over the limit but at most 4x it (and this) are read and dropped before
# the 413, so the client (still sending) sees the answer instead of a reset connection
DRAIN_LIMIT = 64 << 20
SHUTDOWN_GRACE_S = 0.5     # after SIGTERM, for a request already sent on an idle connection
DATATYPE_BYTES = {"BOOL": 1, "INT8": 1, "UINT8": 1, "INT16": 2, "UINT16": 2, "FP16": 2,
                  "INT32": 4, "UINT32": 4, "FP32": 4, "INT64": 8, "UINT64": 8, "FP64": 8}


# ---- the model ---------------------------------------------------------------------------

class Batcher(BatchQueue):
    """Merges concurrent requests (on the server's event loop) into one cascade run."""

    def __init__(self, run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
                 max_batch: int, max_delay_ms: float) -> None:
        super().__init__(max_batch, max_delay_ms)  # batches: cascade runs so far
        self.run = run
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="eedge-tail")

    async def _serve(self) -> None:
        assert self._loop is not None and self._wakeup is not None
        loop, wakeup = self._loop, self._wakeup
        while True:
            batch = await self._gather(loop, wakeup)
            await self._run(loop, batch)

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[Any]) -> None:
        await self._compute(
            batch, lambda merged: loop.run_in_executor(self._executor, self.run, merged))

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _grpc_parameters(parameters: Any) -> dict[str, Any]:
    """gRPC InferParameters as plain values. The v2 proto has no floating-point
    parameter, so ``eedge_scale`` travels as a decimal ``string_param``."""
    values = {}
    for key, value in parameters.items():
        field = value.WhichOneof("parameter_choice") if hasattr(value, "WhichOneof") else None
        values[key] = getattr(value, field) if field else value
    scale = values.get("eedge_scale")
    if isinstance(scale, str):
        with contextlib.suppress(ValueError):
            values["eedge_scale"] = float(scale)
    return values


def _request_tensors(request: Any) -> list[tuple[Any, Any, Any, Any, Any]]:
    """(name, datatype, shape, data, parameters) per input: raw bytes (gRPC
    raw_input_contents) or the flat list KServe decoded from JSON or binary REST."""
    tensors = []
    for item in request.inputs:
        raw = getattr(item, "_raw_data", None)
        data = raw if raw is not None else item.data
        params = item.parameters
        if params is not None and (request.from_grpc or not isinstance(params, dict)):
            params = _grpc_parameters(params)
        tensors.append((item.name, item.datatype, item.shape, data, params))
    return tensors


class KServeTail(kserve.Model):
    """A tail bundle as a KServe v2 model (REST, binary extension, gRPC)."""

    def __init__(self, tail: TailModel, max_batch: int = 32, max_delay_ms: float = 2.0,
                 max_rows: int = 256) -> None:
        super().__init__(tail.name)
        self.tail, self.max_rows = tail, max_rows
        self.batcher = Batcher(tail.run, max_batch, max_delay_ms)
        self.ready = False

    def load(self) -> bool:
        self.ready = True
        return self.ready

    def get_input_types(self) -> list[dict[str, Any]]:
        return self.tail.input_types()

    def get_output_types(self) -> list[dict[str, Any]]:
        return self.tail.output_types()

    def check(self, request: Any) -> tuple[dict[str, np.ndarray], int]:
        """Input arrays and rows of a request, or ``InvalidInput`` (400 / gRPC
        INVALID_ARGUMENT) naming the problem."""
        if not isinstance(request, InferRequest):
            raise InvalidInput("send a v2 inference request (POST /v2/models/"
                               f"{self.name}/infer with 'inputs')")
        wanted = [o.name for o in request.request_outputs or []]
        unknown = sorted(set(wanted) - set(OUTPUTS))
        if unknown or len(set(wanted)) != len(wanted):
            raise InvalidInput(f"outputs {unknown or wanted}: ask for each of {list(OUTPUTS)} "
                               "at most once")
        try:
            return self.tail.check_request(_request_tensors(request), self.max_rows)
        except RequestError as exc:
            raise InvalidInput(str(exc)) from None

    async def predict(self, payload: Any, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> InferResponse:
        arrays, _rows = self.check(payload)
        outputs = await self.batcher.submit(arrays, _rows)
        overflow = ~np.isfinite(outputs["probabilities"]).all(axis=-1)
        if overflow.any():
            raise InvalidInput(f"row {int(np.argmax(overflow))}: the model's outputs overflow "
                               "for these inputs (not finite); send inputs scaled as in "
                               "training")
        infer_outputs = []
        for name in OUTPUTS:
            array = np.ascontiguousarray(outputs[name])
            output = InferOutput(name, list(array.shape),
                                 "FP32" if name == "probabilities" else "INT64", data=array)
            if payload.from_grpc:  # raw_output_contents (KServe's to_grpc cannot take arrays
                output.set_data_from_numpy(array, binary_data=True)  # when inputs were raw)
            infer_outputs.append(output)
        return InferResponse(response_id=payload.id or "", model_name=self.name,
                             infer_outputs=infer_outputs, from_grpc=payload.from_grpc,
                             use_binary_outputs=payload.use_binary_outputs,
                             requested_outputs=payload.request_outputs)

    def stop(self) -> None:
        self.batcher.close()


def build_model(tail: Path | str, runtime: str | None = None, name: str | None = None,
                max_batch: int = 32, max_delay_ms: float = 2.0,
                max_rows: int = 256) -> KServeTail:
    """The KServe model for a tail bundle, loaded and ready (``eedge serve`` and the
    Ray Serve deployment build it the same way)."""
    if max_batch < 1 or not (max_delay_ms >= 0 and math.isfinite(max_delay_ms)) or \
            max_rows < 1:
        raise InputDataError("--max-batch and the row limit must be at least 1, "
                             "--max-delay-ms a finite number >= 0")
    model = KServeTail(TailModel.load(Path(tail), runtime, name), max_batch, max_delay_ms,
                       max_rows)
    model.load()
    return model


# ---- request limits (ASGI) ----------------------------------------------------------------

def _json_error(status: HTTPStatus, message: str, close: bool) -> tuple[int, list, bytes]:
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    return int(status), headers, body


def check_infer_body(body: bytes, header_length: str | None) -> str | None:
    """What KServe's REST decoder would choke on (500) or silently coerce, as one
    line for a 400; None if the body is a well-formed v2 request."""
    if header_length is not None:
        if not header_length.isdigit() or not 0 < int(header_length) <= len(body):
            return (f"{BINARY_HEADER} must be the byte length of the JSON header "
                    f"(1 to {len(body)}); got {header_length[:20]!r}")
        json_part, binary = body[:int(header_length)], len(body) - int(header_length)
    else:
        json_part, binary = body, 0
    try:
        request = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        return f"body is not valid JSON (NaN/Infinity, nesting and number size are " \
               f"limited): {exc}"
    if not isinstance(request, dict):
        return "the body must be a JSON object with an 'inputs' list"
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not 0 < len(inputs) <= MAX_INPUTS:
        return f"request needs an 'inputs' list of 1 to {MAX_INPUTS} tensors"
    for key, kind in (("id", str), ("parameters", dict), ("outputs", list)):
        if key in request and request[key] is not None and not isinstance(request[key], kind):
            return f"'{key}' must be a {kind.__name__}"
    for output in request.get("outputs") or []:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str) or \
                not isinstance(output.get("parameters") or {}, dict):
            return "each requested output must be an object with a 'name'"
    declared = 0
    for item in inputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or \
                not isinstance(item.get("datatype"), str):
            return "each input must be an object with a 'name' and a 'datatype'"
        name, shape = item["name"], item.get("shape")
        if not is_v2_shape(shape):
            return (f"input {name!r}: 'shape' must be a list of non-negative integers; "
                    f"got {str(shape)[:80]}")
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            return f"input {name!r}: 'parameters' must be an object"
        size = params.get("binary_data_size")
        if "data" in item:
            if not isinstance(item["data"], list):
                return f"input {name!r}: 'data' must be a list"
            if size is not None:
                return f"input {name!r} has both 'data' and binary_data_size"
            continue
        if header_length is None or size is None:
            return f"input {name!r} has no 'data' (nor binary_data_size with " \
                   f"the {BINARY_HEADER} header)"
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            return f"input {name!r}: binary_data_size must be a non-negative integer"
        itemsize = DATATYPE_BYTES.get(item["datatype"])
        if itemsize is not None and size != math.prod(shape) * itemsize:
            return (f"input {name!r}: binary_data_size {size} does not match shape {shape} "
                    f"of {item['datatype']} ({math.prod(shape) * itemsize} bytes)")
        declared += size
    if header_length is not None and declared != binary:
        return f"the binary inputs declare {declared} bytes but {binary} follow the " \
               "JSON header"
    return None


class BodyLimits:
    """ASGI middleware: size limit (413, the body dropped unstored), read timeout (408),
    and a strict look at infer bodies before KServe decodes them (400)."""

    def __init__(self, app: Any, max_body_bytes: int, read_timeout_s: float,
                 body_deadline_s: float) -> None:
        self.app, self.max_body = app, max_body_bytes
        self.drain_limit = min(DRAIN_LIMIT, 4 * max_body_bytes)
        self.read_timeout, self.body_deadline = read_timeout_s, body_deadline_s

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        declared = headers.get("content-length")
        if declared is not None and not declared.strip().isdigit():
            await self._answer(send, *_json_error(
                HTTPStatus.BAD_REQUEST, f"Content-Length must be a non-negative integer; got "
                                        f"{declared[:20]!r}", close=True))
            return
        if declared is not None and int(declared) > self.max_body:
            if int(declared) <= self.drain_limit:
                # read and drop the body first: closing while the client still sends
                # would reset the connection and the client would never see the 413
                await self._drain(receive, int(declared))
            await self._answer(send, *_json_error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {int(declared)} bytes exceeds the {self.max_body}-byte limit "
                "(eedge serve --max-body-mb); send fewer rows per request", close=True))
            return
        chunks, size = [], 0
        deadline = time.monotonic() + self.body_deadline
        while True:
            timeout = min(self.read_timeout, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(receive(), max(timeout, 0.001))
            except TimeoutError:
                await self._answer(send, *_json_error(
                    HTTPStatus.REQUEST_TIMEOUT, "the request body arrived too slowly",
                    close=True))
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await self._answer(send, *_json_error(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"body exceeds the {self.max_body}-byte limit (eedge serve "
                    "--max-body-mb); send fewer rows per request", close=True))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/infer"):
            problem = check_infer_body(body, headers.get(BINARY_HEADER))
            if problem is not None:
                await self._answer(send, *_json_error(HTTPStatus.BAD_REQUEST, problem,
                                                      close=False))
                return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _drain(self, receive: Callable[[], Awaitable[dict]], declared: int) -> None:
        """Discard up to ``declared`` bytes of body, within the same time limits as a body
        that is kept (memory stays bounded: nothing is stored)."""
        size, deadline = 0, time.monotonic() + self.body_deadline
        while size < declared:
            timeout = min(self.read_timeout, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(receive(), max(timeout, 0.001))
            except TimeoutError:
                return
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    @staticmethod
    async def _answer(send: Callable[[dict], Awaitable[None]], status: int, headers: list,
                      body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def idle_timeout_protocol(idle_timeout_s: float) -> type:
    """uvicorn's httptools protocol, closing connections that do not complete a
    request's headers within ``idle_timeout_s`` (from connecting, or from the
    previous response)."""

    class IdleTimeoutProtocol(HttpToolsProtocol):  # type: ignore[misc]
        _idle: asyncio.TimerHandle | None = None
        _shutting_down = False

        def _arm(self) -> None:
            self._disarm()
            self._idle = self.loop.call_later(idle_timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None

        def _expire(self) -> None:
            self._idle = None
            if (self.cycle is None or self.cycle.response_complete) and \
                    not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # headers and body go out in two writes: without TCP_NODELAY (uvloop does not
            # set it on sockets accepted from a listener it was handed) the second waits
            # for the client's delayed ACK, 40 ms per request
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()
            if self._shutting_down:  # answer it, then close
                self.cycle.keep_alive = False

        def shutdown(self) -> None:
            """Graceful stop: a connection between requests may already have the next
            one on its way (accepted, not yet parsed); it gets a moment to arrive and
            is answered instead of being reset."""
            self._shutting_down = True
            if self.cycle is None or self.cycle.response_complete:
                self._disarm()
                self._idle = self.loop.call_later(SHUTDOWN_GRACE_S, self._expire)
            else:
                self.cycle.keep_alive = False

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and (self.cycle is None or
                                                    self.cycle.response_complete):
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return IdleTimeoutProtocol


# ---- the server ---------------------------------------------------------------------------

class EedgeDataPlane(DataPlane):  # type: ignore[misc]
    """KServe's data plane; model metadata says the platform is eedge (clients use
    it to know the server returns decisions, not logits)."""

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        metadata = await super().model_metadata(model_name)
        return {**metadata, "platform": "eedge", "versions": ["1"]}

    def decode_inference_request(self, body: Any, headers: dict[str, str],
                                 model_name: str) -> Any:
        """KServe's binary-extension decoder, except that binary inputs stay bytes.
        ``InferRequest.from_bytes`` turns every element into a Python number (36,864
        of them for one 16x48x48 hand-off), which cost more than the tail's compute:
        59 % of the server's time in the load test. ``_request_tensors`` reads the raw
        bytes with numpy; ``BodyLimits`` already checked the header and that the binary
        sizes add up to the body."""
        length = headers.get(BINARY_HEADER) if isinstance(body, bytes) else None
        if length is None:
            return super().decode_inference_request(body, headers, model_name)
        start = int(length)
        try:
            request = orjson.loads(body[:start])
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"Unrecognized request format: {exc}") from None
        inputs = []
        for item in request["inputs"]:
            parameters = item.get("parameters")
            tensor = InferInput(name=item["name"], shape=item["shape"],
                                datatype=item["datatype"], parameters=parameters)
            if item.get("data") is not None:
                tensor.data = item["data"]
            else:
                end = start + int(parameters["binary_data_size"])
                tensor._raw_data = body[start:end]
                start = end
            inputs.append(tensor)
        outputs = [RequestedOutput(name=o["name"], parameters=o.get("parameters"))
                   for o in request.get("outputs") or []] or None
        return InferRequest(model_name=model_name, infer_inputs=inputs,
                            request_id=request.get("id"), parameters=request.get("parameters"),
                            request_outputs=outputs)


async def _invalid_input(_request: Any, exc: Exception) -> JSONResponse:
    """KServe's handler logs a traceback per refused request; one line is enough."""
    return JSONResponse(status_code=HTTPStatus.BAD_REQUEST, content={"error": str(exc)})


class _RESTServer(RESTServer):  # type: ignore[misc]
    """KServe's REST server on its own FastAPI app (KServe's is a module global),
    bound where asked, with the limits above and no per-request logging."""

    def __init__(self, server: "TailServer", sock: socket.socket) -> None:
        super().__init__("kserve.model_server:app", server.dataplane,
                         server.model_repository_extension, 0, grace_period=server.grace_s)
        self.sock = sock
        options = server.options
        app = FastAPI(title="eedge serve", docs_url=None, redoc_url=None)
        self._register_endpoints(app)
        self._add_exception_handlers(app)
        app.add_exception_handler(InvalidInput, _invalid_input)  # 400 without a traceback
        self.app = app
        self.config = uvicorn.Config(
            BodyLimits(app, options.max_body_bytes, options.idle_timeout_s,
                       options.body_deadline_s),
            log_config=None, access_log=False, lifespan="off",
            http=idle_timeout_protocol(options.idle_timeout_s),
            timeout_keep_alive=max(1, int(options.idle_timeout_s)),
            timeout_graceful_shutdown=int(server.grace_s), backlog=4096)
        self._server = _QuietSignalsServer(self.config)

    async def start(self) -> None:
        await self._server.serve(sockets=[self.sock])


class _QuietSignalsServer(uvicorn.Server):  # type: ignore[misc]
    """TailServer handles the signals (and stops gRPC too)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int | None = None            # None: no gRPC; 0: a free port
    max_body_bytes: int = 16 << 20
    idle_timeout_s: float = 10.0             # to complete a request's headers / each body read
    body_deadline_s: float = 60.0            # to send a whole body
    grace_s: float = 30.0                    # to answer what was accepted after SIGTERM
    grpc_threads: int = 4


class TailServer(kserve.ModelServer):  # type: ignore[misc]
    """KServe's ``ModelServer`` serving one ``KServeTail`` over REST (and gRPC)."""

    def __init__(self, model: KServeTail, options: ServeOptions) -> None:
        super().__init__(http_port=options.port, grpc_port=options.grpc_port or 0,
                         enable_grpc=options.grpc_port is not None,
                         enable_latency_logging=False, grace_period=int(options.grace_s))
        self.dataplane = EedgeDataPlane(model_registry=self.registered_models)
        self.model, self.options, self.grace_s = model, options, options.grace_s
        self.batcher = model.batcher
        self.sock = self._bind(options.host, options.port)
        self.port = self.sock.getsockname()[1]
        self.grpc_port: int | None = None
        self._rest: _RESTServer | None = None
        self._grpc: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stopping = False
        self._error: BaseException | None = None

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            sock = socket.socket(info[0], socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(info[4])
            sock.listen(4096)
        except OSError as exc:
            raise InputDataError(f"cannot listen on {host}:{port}: {exc}") from exc
        sock.setblocking(False)
        return sock

    @property
    def url(self) -> str:
        host = self.options.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    @property
    def grpc_address(self) -> str | None:
        return None if self.grpc_port is None else f"{self.options.host}:{self.grpc_port}"

    async def _start_grpc(self) -> None:
        options = [("grpc.max_send_message_length", self.options.max_body_bytes),
                   ("grpc.max_receive_message_length", self.options.max_body_bytes)]
        server = grpc_aio.server(ThreadPoolExecutor(self.options.grpc_threads),
                                 interceptors=(ExceptionToStatusInterceptor(),),
                                 options=options)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(self.dataplane, self.model_repository_extension), server)
        host = self.options.host
        address = f"[{host}]" if ":" in host else host
        try:
            self.grpc_port = server.add_insecure_port(f"{address}:{self.options.grpc_port}")
        except RuntimeError as exc:
            raise InputDataError(f"cannot listen for gRPC on {host}:"
                                 f"{self.options.grpc_port}: {exc}") from exc
        await server.start()
        self._grpc = server

    async def serve_async(self, on_ready: Callable[[], None] | None = None) -> None:
        """Serve until ``request_stop``; then answer what was accepted and return."""
        self._loop = asyncio.get_running_loop()
        self._register_and_check_atleast_one_model_is_ready([self.model])
        if self.enable_grpc:
            await self._start_grpc()
        self._rest = _RESTServer(self, self.sock)
        rest = asyncio.create_task(self._rest.start())
        while not self._rest._server.started and not rest.done():
            await asyncio.sleep(0.01)
        if on_ready is not None and not rest.done():
            on_ready()
        self._started.set()
        try:
            await rest
        finally:
            if self._grpc is not None:
                await self._grpc.stop(grace=self.grace_s)
            self.model.stop()

    def request_stop(self) -> None:
        """Graceful stop (call on the server's loop): a second call forces it."""
        if self._rest is None:
            return
        if self._stopping:
            self._rest._server.force_exit = True
            return
        self._stopping = True
        self._rest._server.should_exit = True
        if self._grpc is not None:  # stop taking gRPC calls now, finish the running ones
            asyncio.get_running_loop().create_task(self._grpc.stop(grace=self.grace_s))

    def serve_forever(self, on_ready: Callable[[], None] | None = None) -> None:
        """The CLI: serve on this (main) thread until SIGTERM or SIGINT."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            await self.serve_async(on_ready)

        asyncio.run(main())

    # background thread (tests, benchmarks, notebooks) --------------------------------------

    def start(self, models: Any = None) -> "TailServer":
        def run() -> None:
            try:
                asyncio.run(self.serve_async())
            except BaseException as exc:  # noqa: BLE001 - reported by start()
                self._error = exc
                self._started.set()

        self._thread = threading.Thread(target=run, name="eedge-serve", daemon=True)
        self._thread.start()
        self._started.wait(120)
        if self._error is not None:
            raise self._error
        return self

    def stop(self, sig: int | None = None) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.request_stop)
            self._thread.join(self.grace_s + 30)
        with contextlib.suppress(OSError):
            self.sock.close()


def serve_main(model: KServeTail, options: ServeOptions) -> None:
    """``eedge serve``: print where it listens (one line, stdout), serve, say stopped."""
    server = TailServer(model, options)

    def ready() -> None:
        grpc = f"gRPC {server.grpc_address}; " if server.grpc_address else ""
        print(f"serving {model.name} at {server.url}/v2/models/{model.name} ({grpc}max batch "
              f"{model.batcher.max_batch}, {model.batcher.max_delay * 1e3:g} ms)", flush=True)

    server.serve_forever(ready)
    print("stopped", flush=True)
    sys.stdout.flush()
