"""The hand-off wire format (KServe v2 binary tensor data extension), without a model.

The encoder's bodies are parsed by KServe's own ``InferRequest.from_bytes``;
answers KServe's ``InferResponse.to_rest`` writes are read by the client's
decoder; the bytes the client counts are the bytes a socket receives, and
equal the planner's formula.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from eedge.errors import InputDataError, TargetError
from eedge.split.encoding import (HEADER_LENGTH, TensorSpec, WireTensor, decode_response,
                                  encode_request, infer_path, json_header, request_bytes,
                                  request_head, request_headers)

kserve = pytest.importorskip("kserve")
from kserve.protocol.infer_type import (InferOutput, InferRequest,  # noqa: E402
                                        InferResponse, RequestedOutput)

OUTPUTS = ["predictions", "exit_index"]


def int8_tensor(rows: int = 3, seed: int = 0) -> WireTensor:
    rng = np.random.default_rng(seed)
    return WireTensor("block0/relu:0", rng.integers(-128, 128, (rows, 4, 4, 8), dtype=np.int8),
                      0.00977779645472765, -128)


def float_tensor(rows: int = 3, seed: int = 1) -> WireTensor:
    rng = np.random.default_rng(seed)
    return WireTensor("skip", rng.standard_normal((rows, 16)).astype(np.float32))


def kserve_parse(body: bytes, json_length: int) -> InferRequest:
    return InferRequest.from_bytes(body, json_length, "tail")


@pytest.mark.parametrize("tensors", [[int8_tensor()], [float_tensor()],
                                     [int8_tensor(), float_tensor()]],
                         ids=["int8", "float32", "int8+float32"])
def test_kserve_parses_what_the_client_sends(tensors: list[WireTensor]) -> None:
    body, json_length = encode_request(tensors, OUTPUTS)
    assert json_length is not None
    parsed = kserve_parse(body, json_length)
    assert [i.name for i in parsed.inputs] == [t.name for t in tensors]
    for item, t in zip(parsed.inputs, tensors):
        array = item.as_numpy()
        assert array.dtype == t.array.dtype and np.array_equal(array, t.array)
        if t.array.dtype == np.int8:
            assert item.datatype == "INT8"
            assert item.parameters["eedge_scale"] == t.scale  # the manifest's number, exactly
            assert item.parameters["eedge_zero_point"] == t.zero_point
        else:
            assert item.datatype == "FP32" and "eedge_scale" not in (item.parameters or {})
    assert [o.name for o in parsed.request_outputs] == OUTPUTS
    assert all(o.binary_data for o in parsed.request_outputs)
    # the JSON header is compact and the tensor bytes follow it, nothing else
    assert b" " not in body[:json_length]
    assert len(body) - json_length == sum(t.array.nbytes for t in tensors)


def test_plain_json_requests_parse_too() -> None:
    tensors = [int8_tensor(2), float_tensor(2)]
    body, json_length = encode_request(tensors, OUTPUTS, binary=False)
    assert json_length is None
    parsed = InferRequest.from_bytes(body, len(body), "tail")
    for item, t in zip(parsed.inputs, tensors):
        assert np.array_equal(item.as_numpy(), t.array)
    assert "binary_data" not in body.decode()


def test_encoder_refuses_what_cannot_travel() -> None:
    with pytest.raises(InputDataError, match="only int8 and float32"):
        encode_request([WireTensor("x", np.zeros((1, 2), np.float64))], OUTPUTS)
    with pytest.raises(InputDataError, match="row count"):
        encode_request([int8_tensor(2), float_tensor(3)], OUTPUTS)
    with pytest.raises(InputDataError, match="scale and zero point"):
        encode_request([WireTensor("q", np.zeros((1, 2), np.int8))], OUTPUTS)
    with pytest.raises(InputDataError, match="NaN"):
        encode_request([WireTensor("f", np.array([[1.0, np.nan]], np.float32))], OUTPUTS)
    with pytest.raises(InputDataError, match="at least one"):
        encode_request([], OUTPUTS)


def test_planner_formula_counts_the_encoded_request() -> None:
    """request_bytes (what the planner uses) == request_head + body, for any row count."""
    for rows in (1, 9, 10, 99, 100, 1000):
        tensors = [int8_tensor(rows), float_tensor(rows)]
        specs = [TensorSpec(t.name, t.array.shape[1:], "INT8" if t.array.dtype == np.int8
                            else "FP32", t.scale, t.zero_point) for t in tensors]
        body, json_length = encode_request(tensors, OUTPUTS)
        head = request_head("10.0.0.7:8000", infer_path("tail"), len(body), json_length)
        assert request_bytes(specs, rows, OUTPUTS, "tail", "10.0.0.7:8000") == \
            len(head) + len(body)
        assert json_header(specs, rows, OUTPUTS) == body[:json_length]


class Recorder:
    """A raw HTTP/1.1 server on 127.0.0.1 that records every byte it receives per
    connection and answers each request with a canned response (keep-alive)."""

    def __init__(self, answer: bytes, close_after: bool = False) -> None:
        self.answer, self.close_after = answer, close_after
        self.received: list[bytes] = []      # one entry per request
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        buffer = b""
        with conn:
            while not self.stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(rest) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    rest += chunk
                self.received.append(head + b"\r\n\r\n" + rest[:length])
                buffer = rest[length:]
                conn.sendall(self.answer)
                if self.close_after:
                    return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(timeout=5)


def http_answer(body: bytes, headers: dict[str, str] | None = None, status: str = "200 OK",
                close: bool = False) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"content-length: {len(body)}",
             "content-type: application/json",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if close:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def kserve_answer(rows: int, binary: bool, requested: bool = True) -> tuple[bytes, dict]:
    """A response exactly as KServe's REST data plane writes it."""
    outputs = [InferOutput("predictions", [rows], "INT64", data=np.arange(rows, dtype=np.int64)),
               InferOutput("exit_index", [rows], "INT64", data=np.full(rows, 2, np.int64)),
               InferOutput("probabilities", [rows, 3], "FP32",
                           data=np.full((rows, 3), 1 / 3, np.float32))]
    wanted = [RequestedOutput(n, {"binary_data": binary}) for n in OUTPUTS] if requested \
        else None
    response = InferResponse("id", "tail", outputs, use_binary_outputs=binary,
                             requested_outputs=wanted)
    content, json_length = response.to_rest()
    if json_length is None:
        return json.dumps(content).encode(), {}
    return content, {HEADER_LENGTH: str(json_length)}


@pytest.mark.parametrize("binary, requested", [(True, True), (False, True), (True, False),
                                               (False, False)])
def test_decoder_reads_kserve_answers(binary: bool, requested: bool) -> None:
    body, headers = kserve_answer(4, binary, requested)
    length = headers.get(HEADER_LENGTH)
    outputs = decode_response(body, None if length is None else int(length))
    assert outputs["predictions"].tolist() == [0, 1, 2, 3]
    assert outputs["exit_index"].tolist() == [2] * 4
    assert ("probabilities" in outputs) == (not requested)


def test_decoder_refuses_malformed_answers() -> None:
    body, headers = kserve_answer(4, True)
    n = int(headers[HEADER_LENGTH])
    header = json.loads(body[:n])

    def with_header(changed: dict, tail: bytes | None = None) -> tuple[bytes, int]:
        text = json.dumps(changed).encode()
        return text + (body[n:] if tail is None else tail), len(text)

    wrong_size = json.loads(json.dumps(header))
    wrong_size["outputs"][0]["parameters"]["binary_data_size"] = 31
    wrong_type = json.loads(json.dumps(header))
    wrong_type["outputs"][0]["datatype"] = "INT128"
    bad_shape = json.loads(json.dumps(header))
    bad_shape["outputs"][0]["shape"] = [True]
    twice = json.loads(json.dumps(header))
    twice["outputs"][1]["name"] = "predictions"
    cases = {
        "length beyond the body": (body, len(body) + 1),
        "zero length": (body, 0),
        "truncated tensor bytes": (body[:-1], n),
        "trailing bytes": (body + b"\0", n),
        "JSON cut short": (body, n - 1),
        "size against shape": with_header(wrong_size),
        "unknown datatype": with_header(wrong_type),
        "bool in shape": with_header(bad_shape),
        "duplicate output": with_header(twice),
        "no outputs": with_header({"outputs": []}, b""),
    }
    for what, (payload, length) in cases.items():
        with pytest.raises(TargetError, match="malformed"):
            decode_response(payload, length)
            pytest.fail(what)
    with pytest.raises(TargetError, match="malformed"):  # binary output in a JSON-only answer
        decode_response(body[:n], None)
    with pytest.raises(TargetError, match="malformed"):
        decode_response(b'{"outputs":[{"name":"p","shape":[2],"datatype":"INT64",'
                        b'"data":[1,2,3]}]}', None)


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """An int8 head bundle of the residual zoo model, cut after stage 0."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1]))
    import onnx
    from conftest import exported_onnx
    from zoo import example_input

    from eedge.export import export_onnx
    from eedge.split.bundles import export_halves

    root = tmp_path_factory.mktemp("wire")
    onnx.save(exported_onnx("residual"), root / "m.onnx")
    calib = example_input(seed=1, batch=32)
    bundle = export_onnx(root / "m.onnx", root / "bundle", int8=True,
                         calibration=calib).bundle
    head, _ = export_halves(bundle, 0, root / "split", int8=True, calibration=calib)
    return bundle, head


def metadata_answer() -> bytes:
    meta = {"name": "model_tail", "platform": "", "inputs": [],
            "outputs": [{"name": n, "datatype": "INT64", "shape": [-1]} for n in OUTPUTS]}
    return http_answer(json.dumps(meta).encode())


def test_counted_bytes_are_the_bytes_a_socket_receives(head) -> None:  # type: ignore[no-untyped-def]
    """The client's count of every request (line, headers, body) equals what arrives, equals
    the planner's formula; one kept-alive connection carries them all."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from zoo import example_input

    from eedge.split.client import Client, wire_report
    from eedge.split.planner import wire_cost

    bundle, head_bundle = head
    answers = {rows: kserve_answer(rows, True) for rows in range(1, 65)}
    recorder = Recorder(metadata_answer())
    try:
        name = f"{bundle.manifest['model']['name']}_tail"  # what `split export` names it
        client = Client(head_bundle, recorder.url, name, runtime="int8-reference",
                        rows_per_request=1)
        x = example_input(seed=3, batch=48)
        local = client.cascade.infer(x)
        rows = int(local.pending.size)
        assert rows > 2
        # the server answers each request with that many decisions
        body, headers = answers[1]
        recorder.answer = http_answer(body, headers)
        result = client.infer(x)
        posts = recorder.received[1:]
        assert len(posts) == rows == result.sent_rows
        assert result.sent_bytes == sum(len(p) for p in posts)
        report = wire_report(client, result)
        assert report["measured_bytes"] == report["planned_bytes"] == result.sent_bytes
        # `split plan`'s figure for this cut, on the bundle before the split
        planned = wire_cost(bundle, 0, host=client.host)
        assert planned.per_sample == report["measured_bytes_per_sample"]
        assert planned.row_bytes == 8 * 8 * 8  # int8 on the wire, one byte per element
        first = posts[0]
        assert first.startswith(f"POST /v2/models/{name}/infer HTTP/1.1\r\n".encode())
        assert b"application/octet-stream" in first and b"Inference-Header-Content-Length" \
            in first
        for dropped in (b"user-agent", b"accept", b"connection"):
            assert dropped not in first.lower().split(b"\r\n\r\n")[0].replace(
                b"content-type", b"")
        assert recorder.connections == 1
        client.close()
    finally:
        recorder.close()


@pytest.mark.parametrize("announced", [True, False], ids=["connection-close", "silent"])
def test_client_reconnects_when_the_server_closes_kept_alive_connections(head, announced) -> None:  # type: ignore[no-untyped-def]
    """The server closes every connection after one answer, saying so or not (an idle
    timeout): every hand-off still arrives, each on a new connection."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from zoo import example_input

    from eedge.split.client import Client

    _, head_bundle = head
    recorder = Recorder(metadata_answer(), close_after=True)
    try:
        with Client(head_bundle, recorder.url, "model_tail", runtime="int8-reference",
                    rows_per_request=1) as client:
            body, headers = kserve_answer(1, True)
            recorder.answer = http_answer(body, headers, close=announced)
            result = client.infer(example_input(seed=3, batch=24))
            assert result.sent_rows >= 2 and len(recorder.received) == result.sent_rows + 1
            assert recorder.connections == len(recorder.received)
    finally:
        recorder.close()


def test_client_errors_name_the_problem(head) -> None:  # type: ignore[no-untyped-def]
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from zoo import example_input

    from eedge.split.client import Client

    _, head_bundle = head
    x = example_input(seed=3, batch=24)
    recorder = Recorder(metadata_answer())
    try:
        client = Client(head_bundle, recorder.url, "model_tail", runtime="int8-reference")
        recorder.answer = http_answer(b'{"error": "input \'relu\': eedge_scale 0.5 differs"}',
                                      status="400 Bad Request")
        with pytest.raises(TargetError, match=r"answered 400: input 'relu': eedge_scale"):
            client.infer(x)
        body, headers = kserve_answer(1, True)  # one decision for many rows
        recorder.answer = http_answer(body, headers)
        with pytest.raises(TargetError, match="malformed"):
            client.infer(x)
        recorder.answer = http_answer(b"{}", {HEADER_LENGTH: "lots"})
        with pytest.raises(TargetError, match="malformed"):
            client.infer(x)
        client.close()
    finally:
        recorder.close()
    with pytest.raises(TargetError, match="cannot reach"):
        Client(head_bundle, recorder.url, "model_tail", timeout_s=2)
    with pytest.raises(InputDataError, match="rows_per_request"):
        Client(head_bundle, recorder.url, "model_tail", rows_per_request=0)
    for url in ("localhost:8000", "ftp://host:21", "http://"):
        with pytest.raises(TargetError, match="bad tail server URL"):
            Client(head_bundle, url, "model_tail")


def test_request_headers_are_minimal() -> None:
    assert request_headers(None) == {"Content-Type": "application/json"}
    assert list(request_headers(12)) == ["Content-Type", HEADER_LENGTH]
