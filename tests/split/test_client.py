"""The split client against real servers on 127.0.0.1: decisions, bytes, errors.

- ``eedge serve`` (KServe's model server, in process and as the CLI): decisions
  equal the unsplit cascade's, with float32 (FP32) and int8 (INT8 + scale and
  zero point) hand-offs, one request or one row per request;
- bytes on the wire per sample equal the planner's figure and stay within 10 %
  + a fixed header of the hand-off's tensor bytes (the assertion that fails if
  the overhead grows);
- malformed binary bodies are answered 4xx with a message, and the client
  turns a refusal into one TargetError line;
- a generic KServe v2 server hosting the tail as one ONNX model (what Triton
  does with the exported repository) returns logits; the client applies the
  tail's thresholds and reaches the same decisions, binary or JSON.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from serve_helpers import split_model  # noqa: E402
from zoo import example_input  # noqa: E402

from eedge.errors import TargetError  # noqa: E402
from eedge.runtime.cascade import Cascade, make_session  # noqa: E402
from eedge.split.bundles import export_halves, tail_onnx  # noqa: E402
from eedge.split.client import Client, wire_report  # noqa: E402
from eedge.split.encoding import (HEADER_LENGTH, WireTensor, encode_request,  # noqa: E402
                                  infer_path)
from eedge.split.planner import wire_cost  # noqa: E402

kserve = pytest.importorskip("kserve")
httpx = pytest.importorskip("httpx")

# A request's fixed part (request line, 4 headers, the JSON header naming one cut tensor
# with its quantization and the two outputs asked for) is about 450 bytes; the budget
# leaves room for longer names, not for a format that grows with the data.
FIXED_HEADER_BUDGET = 512
OVERHEAD = 1.10


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The residual zoo model with median thresholds, int8 too, and its halves."""
    return split_model(tmp_path_factory.mktemp("client"))


@pytest.fixture(scope="module", params=["onnx", "int8-reference"])
def served(request: pytest.FixtureRequest, model):  # type: ignore[no-untyped-def]
    """`eedge serve`'s KServe server in process (the runtime sets the hand-off dtype)."""
    from eedge.split.server import make_server

    runtime = request.param
    srv = make_server(model[2].path, port=0, runtime=runtime, max_batch=8,
                      max_delay_ms=1).start()
    request.addfinalizer(srv.stop)
    return runtime, srv


def name_of(tail: Any) -> str:
    return tail.manifest["model"]["name"]


@pytest.mark.parametrize("rows_per_request", [None, 1])
def test_decisions_equal_the_unsplit_cascade(model, served, rows_per_request) -> None:  # type: ignore[no-untyped-def]
    bundle, head, tail = model
    runtime, srv = served
    x = example_input(seed=5, batch=60 if rows_per_request is None else 12)
    with Client(head, srv.url, name_of(tail), runtime=runtime,
                rows_per_request=rows_per_request) as client:
        assert client.specs[0].datatype == ("INT8" if runtime == "int8-reference" else "FP32")
        split = client.infer(x)
        report = wire_report(client, split)
    whole = Cascade(bundle, runtime=runtime).infer(x)
    assert np.array_equal(split.predictions, whole.predictions)
    assert np.array_equal(split.exit_index, whole.exit_index)
    assert 0 < split.sent_rows < len(x)
    assert report["requests"] == (1 if rows_per_request is None else split.sent_rows)
    assert report["measured_bytes"] == report["planned_bytes"]


def test_bytes_per_sample_match_the_planner(model, served) -> None:  # type: ignore[no-untyped-def]
    """Measured bytes per hand-off: exactly the planner's figure, and within 10 % + a
    fixed header of the tensor bytes, for one row per request and for batches."""
    bundle, head, tail = model
    runtime, srv = served
    dtype = "int8" if runtime == "int8-reference" else "float32"
    x = example_input(seed=6, batch=80)
    for rows in (1, 4, None):
        with Client(head, srv.url, name_of(tail), runtime=runtime,
                    rows_per_request=rows) as client:
            result = client.infer(x if rows is None else x[:16])
            report = wire_report(client, result)
            host = client.host
        n = result.sent_rows
        tensor = report["tensor_bytes_per_sample"]
        assert tensor == 8 * 8 * 8 * (1 if dtype == "int8" else 4)
        per_sample = report["measured_bytes_per_sample"]
        requests = len(result.request_rows)
        assert per_sample <= OVERHEAD * tensor + FIXED_HEADER_BUDGET * requests / n, report
        assert per_sample == report["planned_bytes_per_sample"]
        if rows is not None and n % rows == 0:  # `split plan` on the unsplit bundle
            planned = wire_cost(bundle, 0, rows, dtype, name_of(tail), host)
            assert planned.per_sample == pytest.approx(per_sample)


def test_binary_sends_a_fraction_of_json(model, served) -> None:  # type: ignore[no-untyped-def]
    bundle, head, tail = model
    runtime, srv = served
    x = example_input(seed=7, batch=40)
    sent = {}
    for binary in (True, False):
        with Client(head, srv.url, name_of(tail), runtime=runtime, binary=binary) as client:
            result = client.infer(x)
        sent[binary] = result
    assert np.array_equal(sent[True].predictions, sent[False].predictions)
    # JSON spells every number in decimal (about 3x the raw float32 bytes; 4x+ for int8)
    assert sent[True].sent_bytes * 2.5 < sent[False].sent_bytes


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    response = httpx.post(url, content=body, headers=headers, timeout=30)
    try:
        reply = json.loads(response.content)
    except ValueError:
        reply = {}
    return response.status_code, reply


def _other_kind(spec: Any, rows: int) -> tuple[bytes, dict[str, str]]:
    """A well-formed request in the datatype the tail does not take (INT8 <-> FP32)."""
    if spec.datatype == "INT8":
        other = WireTensor(spec.name, np.zeros((rows, *spec.row_shape), np.float32))
    else:
        other = WireTensor(spec.name, np.zeros((rows, *spec.row_shape), np.int8), 0.1, 0)
    payload, n = encode_request([other], ["predictions"])
    return payload, {HEADER_LENGTH: str(n), "Content-Type": "application/octet-stream"}


def test_malformed_binary_bodies_get_4xx(model, served) -> None:  # type: ignore[no-untyped-def]
    _, head, tail = model
    runtime, srv = served
    client = Client(head, srv.url, name_of(tail), runtime=runtime)
    spec = client.specs[0]
    client.close()
    rows = 2
    array = (np.zeros((rows, *spec.row_shape), np.int8) if spec.datatype == "INT8"
             else np.zeros((rows, *spec.row_shape), np.float32))
    good, n = encode_request([WireTensor(spec.name, array, spec.scale, spec.zero_point)],
                             ["predictions", "exit_index"])
    assert n is not None
    header = json.loads(good[:n])
    tensor = good[n:]

    def body(changed: dict, data: bytes = tensor) -> tuple[bytes, dict[str, str]]:
        text = json.dumps(changed).encode()
        return text + data, {HEADER_LENGTH: str(len(text)),
                             "Content-Type": "application/octet-stream"}

    def edit(path: str, value: Any) -> dict:
        changed = json.loads(json.dumps(header))
        changed["inputs"][0]["parameters" if path != "shape" else "shape"] = value
        return changed

    params = header["inputs"][0]["parameters"]
    binary = {HEADER_LENGTH: str(n), "Content-Type": "application/octet-stream"}
    cases: dict[str, tuple[bytes, dict[str, str]]] = {
        "header length past the body": (good, {**binary, HEADER_LENGTH: str(len(good) + 5)}),
        "header length not a number": (good, {**binary, HEADER_LENGTH: "12x"}),
        "negative header length": (good, {**binary, HEADER_LENGTH: "-1"}),
        "header length cuts the JSON": (good, {**binary, HEADER_LENGTH: str(n - 3)}),
        "tensor bytes missing": (good[:-1], binary),
        "bytes after the tensor": (good + b"\0\0", binary),
        "no header length": (good, {"Content-Type": "application/octet-stream"}),
        "size against shape": body(edit("parameters", {**params,
                                                       "binary_data_size": len(tensor) - 1}),
                                   tensor[:-1]),
        "bool in shape": body(edit("shape", [True, *spec.row_shape])),
        "rows against bytes": body(edit("shape", [rows + 1, *spec.row_shape])),
        "datatype of the other runtime": _other_kind(spec, rows),
    }
    if spec.datatype == "INT8":
        cases["another scale"] = body(edit("parameters", {**params, "eedge_scale":
                                                          params["eedge_scale"] * 2}))
        cases["another zero point"] = body(edit("parameters", {**params,
                                                               "eedge_zero_point": 3}))
    else:
        nan = np.full(array.shape, np.nan, np.float32).tobytes()
        cases["NaN hand-off"] = body(header, nan)
    url = f"{srv.url}{infer_path(name_of(tail))}"
    for what, (payload, headers) in cases.items():
        code, reply = _post(url, payload, headers)
        assert 400 <= code < 500 and reply.get("error"), (what, code, reply)
    code, reply = _post(url, good, binary)  # the server still answers well-formed ones
    assert code == 200, reply


def test_a_refused_handoff_is_one_clear_error(model, served) -> None:  # type: ignore[no-untyped-def]
    """A head quantized differently from the served tail: the server's 400 reaches the
    caller as one TargetError naming the tensor."""
    from dataclasses import replace

    _, head, tail = model
    runtime, srv = served
    if runtime != "int8-reference":
        pytest.skip("float32 hand-offs carry no quantization")
    with Client(head, srv.url, name_of(tail), runtime=runtime) as client:
        client.specs = [replace(s, scale=s.scale * 1.5) for s in client.specs]
        with pytest.raises(TargetError, match=r"answered 400: .*quantized with scale"):
            client.infer(example_input(seed=5, batch=30))


def test_head_and_tail_of_different_kinds_are_refused_before_sending(model, served) -> None:  # type: ignore[no-untyped-def]
    _, head, tail = model
    runtime, srv = served
    other = "onnx" if runtime == "int8-reference" else "int8-reference"
    with pytest.raises(TargetError, match="runtimes of the same kind"):
        Client(head, srv.url, name_of(tail), runtime=other)


def test_eedge_serve_cli_end_to_end(model) -> None:  # type: ignore[no-untyped-def]
    """`eedge serve TAIL --runtime int8-reference` as users start it; int8 on the wire."""
    bundle, head, tail = model
    proc = subprocess.Popen([sys.executable, "-m", "eedge.cli.main", "serve", str(tail.path),
                             "--port", "0", "--no-grpc", "--runtime", "int8-reference"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "serving" in line, proc.stderr.read() if proc.stderr else ""
        url = line.split(" at ")[1].split("/v2")[0]
        x = example_input(seed=8, batch=50)
        with Client(head, url, name_of(tail), runtime="int8-reference") as client:
            split = client.infer(x)
            report = wire_report(client, split)
        whole = Cascade(bundle, runtime="int8-reference").infer(x)
        assert np.array_equal(split.predictions, whole.predictions)
        assert np.array_equal(split.exit_index, whole.exit_index)
        assert report["measured_bytes"] == report["planned_bytes"]
        assert report["tensor_bytes_per_sample"] == 512
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


class OnnxTail(kserve.Model):  # type: ignore[misc]
    """What Triton's ONNX Runtime backend does with the exported repository: the tail as
    one ONNX model, v2 tensors in, the exits' logits out."""

    def __init__(self, name: str, onnx_path: Path) -> None:
        super().__init__(name)
        self.session = make_session(onnx_path, 1)
        self.ready = True

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": i.name, "datatype": "FP32", "shape": [-1, *i.shape[1:]]}
                for i in self.session.get_inputs()]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": o.name, "datatype": "FP32", "shape": [-1, *o.shape[1:]]}
                for o in self.session.get_outputs()]

    async def predict(self, payload: Any, headers: Any = None,
                      response_headers: Any = None) -> Any:
        from kserve.protocol.infer_type import InferOutput, InferResponse

        feeds = {i.name: i.as_numpy().astype(np.float32) for i in payload.inputs}
        names = [o.name for o in self.session.get_outputs()]
        results = self.session.run(None, feeds)
        outputs = [InferOutput(n, list(r.shape), "FP32", data=np.ascontiguousarray(r))
                   for n, r in zip(names, results)]
        return InferResponse(payload.id or "", self.name, outputs,
                             use_binary_outputs=payload.use_binary_outputs,
                             requested_outputs=payload.request_outputs)


def serve_generic(model: Any) -> tuple[str, Any]:
    """KServe's own REST data plane for one model (platform "", as KServe reports it),
    on 127.0.0.1 in a thread; returns the URL and a stop function."""
    import uvicorn
    from fastapi import FastAPI
    from kserve.errors import InvalidInput, invalid_input_handler
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.v2_endpoints import register_v2_endpoints

    repository = ModelRepository()
    repository.update(model)
    app = FastAPI()
    register_v2_endpoints(app, DataPlane(repository), ModelRepositoryExtension(repository))
    app.add_exception_handler(InvalidInput, invalid_input_handler)
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for _ in range(600):  # readiness poll, at most ~60 s on a loaded machine
        if server.started:
            break
        thread.join(0.1)
    assert server.started, "the generic KServe server did not start"

    def stop() -> None:
        server.should_exit = True
        thread.join(30)
        sock.close()

    return url, stop


@pytest.mark.parametrize("binary", [True, False])
def test_generic_v2_server_with_logits(model, tmp_path: Path, binary: bool) -> None:  # type: ignore[no-untyped-def]
    bundle, head, tail = model
    # the model.onnx `split export --triton` writes (its config.pbtxt is checked against
    # Triton's protobuf in test_serve.py)
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(tail_onnx(tail))
    url, stop = serve_generic(OnnxTail("tail", onnx_path))
    try:
        with pytest.raises(TargetError, match="tail_policies"):
            Client(head, url, "tail")
        policies = [e["policy"] for e in tail.exits]
        with Client(head, url, "tail", tail_policies=policies, binary=binary) as client:
            assert not client.decides and client.outputs == [
                o.name for o in make_session(onnx_path, 1).get_outputs()]
            x = example_input(seed=9, batch=40)
            split = client.infer(x)
            report = wire_report(client, split)
        whole = Cascade(bundle).infer(x)
        assert np.array_equal(split.predictions, whole.predictions)
        assert np.array_equal(split.exit_index, whole.exit_index)
        if binary:
            assert report["measured_bytes"] == report["planned_bytes"]
        with pytest.raises(TargetError, match="runtimes of the same kind"):
            Client(head, url, "tail", tail_policies=policies, runtime="int8-reference")
    finally:
        stop()


@pytest.mark.slow
def test_mobilenet_like_cut_bytes(tmp_path: Path) -> None:
    """A MobileNetV2-like head (32x32 input, cut after the first inverted block: an 8x8x24 int8
    hand-off of 1,536 bytes) against `eedge serve`: bytes per hand-off equal `split
    plan`'s figure and stay within 10 % + a fixed header; decisions equal the local
    head + tail (the transport adds nothing)."""
    import onnx
    import torch
    from torch import nn

    from eedge.export import export_onnx
    from eedge.frontends.torch_frontend import torch_to_onnx
    from eedge.split.server import make_server

    def inverted(i: int, o: int, stride: int) -> nn.Module:
        h = 4 * i
        return nn.Sequential(nn.Conv2d(i, h, 1), nn.ReLU6(),
                             nn.Conv2d(h, h, 3, stride, 1, groups=h), nn.ReLU6(),
                             nn.Conv2d(h, o, 1))

    def exit_head(c: int) -> nn.Module:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))

    class MobileNetV2Like(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU6())
            self.b1 = inverted(16, 24, 2)
            self.b2 = nn.Sequential(inverted(24, 48, 2), nn.ReLU6(), inverted(48, 48, 1))
            self.e1, self.e2 = exit_head(24), exit_head(48)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            h = self.b1(self.stem(x))
            return self.e1(h), self.e2(self.b2(h))

    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((96, 3, 32, 32)).astype(np.float32)
    onnx.save(torch_to_onnx(MobileNetV2Like().eval(), x[:2]), tmp_path / "m.onnx")
    bundle = export_onnx(tmp_path / "m.onnx", tmp_path / "bundle", int8=True,
                         calibration=x[:64]).bundle
    head, tail = export_halves(bundle, 0, tmp_path / "split", int8=True, calibration=x[:64])
    local = Cascade(head, runtime="int8-reference").infer(x[:24])
    remote = Cascade(tail, runtime="int8-reference").infer(local.handoff, raw=True)
    srv = make_server(tail.path, port=0, runtime="int8-reference").start()
    try:
        for rows in (1, None):
            with Client(head, srv.url, name_of(tail), runtime="int8-reference",
                        rows_per_request=rows) as client:
                split = client.infer(x[:24])
                report = wire_report(client, split)
                planned = wire_cost(bundle, 0, rows or split.sent_rows, "int8", name_of(tail),
                                    client.host)
            assert np.array_equal(split.predictions[local.pending], remote.predictions)
            assert report["tensor_bytes_per_sample"] == planned.row_bytes == 8 * 8 * 24
            assert report["measured_bytes_per_sample"] == pytest.approx(planned.per_sample)
            requests = len(split.request_rows)
            assert report["measured_bytes_per_sample"] <= (
                OVERHEAD * 1536 + FIXED_HEADER_BUDGET * requests / split.sent_rows)
    finally:
        srv.stop()
