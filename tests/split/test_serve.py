"""Split end to end against `eedge serve` (KServe's model server) started as a process.

Head on the device runtime -> REST (v2 binary extension and plain v2 JSON) or
gRPC v2 (raw_input_contents) -> the same decisions as the unsplit cascade, for a
float and an int8 tail. Also: metadata and readiness, malformed requests get 4xx
(REST) and INVALID_ARGUMENT (gRPC), the dynamic batcher merges concurrent
requests without mixing their answers, and the Triton repository parses against
Triton's model-config protobuf and, served the way Triton's ONNX backend would
(logits out), gives the client the same decisions.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from serve_helpers import (V2, Served, binary_request, get, post,  # noqa: E402,F401
                           post_binary, serve_process, split_model)
from zoo import example_input  # noqa: E402

from eedge.errors import InputDataError  # noqa: E402
from eedge.runtime.cascade import Cascade, make_session  # noqa: E402
from eedge.split.bundles import export_triton, validate_triton_config  # noqa: E402
from eedge.split.client import Client  # noqa: E402
from eedge.split.encoding import HandoffTensor, encode  # noqa: E402
from eedge.split.server import make_server  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The residual zoo model with median thresholds, int8 too, and its halves."""
    return split_model(tmp_path_factory.mktemp("serve"))


# ---- `eedge serve` as a process ----------------------------------------------------------

@pytest.fixture(scope="module")
def served(model) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    """The float tail on onnx: REST and gRPC."""
    with serve_process(model[2].path, "--max-batch", "16", "--max-delay-ms", "2",
                       "--max-body-mb", "1") as s:
        yield s


@pytest.fixture(scope="module")
def served_int8(model) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    """The int8 tail on the int8 reference runtime: INT8 hand-offs with quantization."""
    with serve_process(model[2].path, "--runtime", "int8-reference") as s:
        yield s


def head_and_whole(model, runtime: str, x: np.ndarray):  # type: ignore[no-untyped-def]
    bundle, head, _ = model
    local = Cascade(head, runtime=runtime).infer(x)
    whole = Cascade(bundle, runtime=runtime).infer(x)
    assert 0 < local.pending.size < len(x)
    return local, whole


def int8_params(head: Any, runtime: str, handoff: dict[str, np.ndarray]) -> dict[str, dict]:
    """eedge_scale / eedge_zero_point of the int8 hand-off tensors (the head's manifest)."""
    quant = {t["name"]: t.get("quant") for io in Cascade(head, runtime=runtime).io
             for t in io["outputs"]}
    return {n: {"eedge_scale": quant[n]["scale"][0],
                "eedge_zero_point": quant[n]["zero_point"][0]}
            for n, a in handoff.items() if a.dtype == np.int8}


# ---- decisions equal the unsplit cascade ---------------------------------------------------

@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("runtime", ["onnx", "int8-reference"])
def test_rest_client_answers_equal_the_unsplit_cascade(model, served, served_int8,  # type: ignore[no-untyped-def]
                                                        runtime: str, binary: bool) -> None:
    bundle, head, _ = model
    server = served if runtime == "onnx" else served_int8
    with Client(head, server.url, server.name, runtime=runtime, binary=binary) as client:
        x = example_input(seed=5, batch=60)
        split = client.infer(x)
    whole = Cascade(bundle, runtime=runtime).infer(x)
    assert np.array_equal(split.predictions, whole.predictions)
    assert np.array_equal(split.exit_index, whole.exit_index)
    assert 0 < split.sent_rows < 60


@pytest.mark.parametrize("runtime", ["onnx", "int8-reference"])
def test_binary_rest_returns_decisions_and_probabilities(model, served, served_int8,  # type: ignore[no-untyped-def]
                                                         runtime: str) -> None:
    server = served if runtime == "onnx" else served_int8
    x = example_input(seed=6, batch=40)
    local, whole = head_and_whole(model, runtime, x)
    body, headers = binary_request(local.handoff, int8_params(model[1], runtime, local.handoff))
    code, outputs = post_binary(server.infer_url, body, headers)
    assert code == 200, outputs
    assert outputs["predictions"].dtype == np.int64
    assert np.array_equal(outputs["predictions"], whole.predictions[local.pending])
    assert np.array_equal(outputs["exit_index"], whole.exit_index[local.pending])
    probabilities = outputs["probabilities"]
    rows = np.arange(len(probabilities))
    assert np.array_equal(probabilities[rows, outputs["predictions"]], probabilities.max(axis=1))
    # the int8 runtime's softmax output is quantized in steps of 1/256
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-4 if runtime == "onnx" else 2 / 256)


@pytest.mark.parametrize("runtime", ["onnx", "int8-reference"])
def test_grpc_client_answers_equal_the_unsplit_cascade(model, served, served_int8,  # type: ignore[no-untyped-def]
                                                       runtime: str) -> None:
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    server = served if runtime == "onnx" else served_int8
    x = example_input(seed=7, batch=50)
    local, whole = head_and_whole(model, runtime, x)
    params = int8_params(model[1], runtime, local.handoff)
    assert bool(params) == (runtime == "int8-reference")
    inputs = []
    for name, array in local.handoff.items():
        p = params.get(name, {})
        inputs.append(pb.ModelInferRequest.InferInputTensor(
            name=name, datatype=V2[array.dtype], shape=list(array.shape),
            parameters={"eedge_scale": pb.InferParameter(string_param=repr(p["eedge_scale"])),
                        "eedge_zero_point": pb.InferParameter(
                            int64_param=p["eedge_zero_point"])} if p else {}))
    request = pb.ModelInferRequest(model_name=server.name, inputs=inputs,
                                   raw_input_contents=[a.tobytes() for a in
                                                       local.handoff.values()])
    with grpc.insecure_channel(server.grpc) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
        assert stub.ModelReady(pb.ModelReadyRequest(name=server.name), timeout=30).ready
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=server.name), timeout=30)
        assert [o.name for o in meta.outputs] == ["predictions", "exit_index", "probabilities"]
        reply = stub.ModelInfer(request, timeout=30)
        outputs = {o.name: np.frombuffer(raw, "<i8" if o.datatype == "INT64" else "<f4")
                   .reshape(list(o.shape)) for o, raw in zip(reply.outputs,
                                                            reply.raw_output_contents)}
        assert np.array_equal(outputs["predictions"], whole.predictions[local.pending])
        assert np.array_equal(outputs["exit_index"], whole.exit_index[local.pending])

        bad = [pb.ModelInferRequest(model_name=server.name, inputs=inputs,
                                    raw_input_contents=[a.tobytes()[:-1] for a in
                                                        local.handoff.values()]),
               pb.ModelInferRequest(model_name=server.name, inputs=[
                   pb.ModelInferRequest.InferInputTensor(name="nope", datatype="FP32",
                                                         shape=[1])],
                   raw_input_contents=[b"\0" * 4])]
        if params:  # an int8 hand-off quantized with another scale
            name = next(iter(params))
            wrong = [pb.ModelInferRequest.InferInputTensor(
                name=t.name, datatype=t.datatype, shape=t.shape,
                parameters={"eedge_scale": pb.InferParameter(string_param="0.5"),
                            "eedge_zero_point": pb.InferParameter(int64_param=0)})
                if t.name == name else t for t in inputs]
            bad.append(pb.ModelInferRequest(model_name=server.name, inputs=wrong,
                                            raw_input_contents=request.raw_input_contents))
        for i, item in enumerate(bad):
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(item, timeout=30)
                pytest.fail(f"bad request {i} was answered")
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (i, info.value.details())


# ---- metadata, readiness, malformed requests -----------------------------------------------

def test_metadata_and_health(model, served, served_int8) -> None:  # type: ignore[no-untyped-def]
    tail = model[2]
    for server, datatype in ((served, "FP32"), (served_int8, "INT8")):
        assert get(f"{server.url}/v2/health/live") == (200, {"live": True})
        assert get(f"{server.url}/v2/health/ready") == (200, {"ready": True})
        assert get(f"{server.url}/v2/models/{server.name}/ready")[1]["ready"] is True
        code, meta = get(f"{server.url}/v2/models/{server.name}")
        assert code == 200 and meta["platform"] == "eedge"
        spec = tail.manifest["inputs"][0]
        assert meta["inputs"][0]["name"] == spec["name"]
        assert meta["inputs"][0]["shape"] == [-1] + [int(d) for d in spec["shape"][1:]]
        assert meta["inputs"][0]["datatype"] == datatype
        assert [o["name"] for o in meta["outputs"]] == ["predictions", "exit_index",
                                                        "probabilities"]
        assert get(f"{server.url}/v2/models/other")[0] == 404


def _good(model) -> dict:  # type: ignore[no-untyped-def]
    spec = model[2].manifest["inputs"][0]
    shape = [1] + [int(d) for d in spec["shape"][1:]]
    return {"name": spec["name"], "datatype": "FP32", "shape": shape,
            "data": [0.0] * int(np.prod(shape))}


def test_malformed_requests_get_4xx(model, served) -> None:  # type: ignore[no-untyped-def]
    good = _good(model)
    url = served.infer_url
    cases = {
        b"not json": 400,
        json.dumps({"inputs": []}).encode(): 400,
        json.dumps({"inputs": [{**good, "name": "nope"}]}).encode(): 400,
        json.dumps({"inputs": [{**good, "datatype": "INT8"}]}).encode(): 400,
        json.dumps({"inputs": [{**good, "shape": good["shape"][:-1] + [9]}]}).encode(): 400,
        json.dumps({"inputs": [{**good, "data": good["data"][1:]}]}).encode(): 400,
        json.dumps({"inputs": [{**good, "data": ["x"] * len(good["data"])}]}).encode(): 400,
        json.dumps({"inputs": [{"name": "eedge_handoff", "datatype": "BYTES", "shape": [1],
                                "data": ["!!notbase64"]}]}).encode(): 400,
        json.dumps({"inputs": [good], "outputs": [{"name": "logits"}]}).encode(): 400,
    }
    for body, status in cases.items():
        code, reply = post(url, body)
        assert code == status and reply.get("error"), (body[:60], code, reply)
    code, reply = post(url, json.dumps({"inputs": [good]}).encode())
    assert code == 200 and reply["outputs"][0]["name"] == "predictions"
    code, reply = post(url, b"{" + b" " * (1 << 20) + b"}")
    assert code == 413 and "--max-body-mb" in reply["error"]
    code, _ = post(f"{served.url}/v2/models/other/infer", json.dumps({"inputs": [good]}).encode())
    assert code == 404


def test_fuzzed_and_truncated_handoffs_are_rejected(model, served) -> None:  # type: ignore[no-untyped-def]
    """The eedge hand-off container (one base64 BYTES element) is still accepted,
    and checked strictly."""
    spec = model[2].manifest["inputs"][0]
    tensor = HandoffTensor(spec["name"], np.zeros((2, 8, 8, 8), np.float32))
    payload = encode([tensor])
    body = {"inputs": [{"name": "eedge_handoff", "datatype": "BYTES", "shape": [1],
                        "data": [base64.b64encode(payload).decode()]}]}
    code, reply = post(served.infer_url, json.dumps(body).encode())
    assert code == 200 and reply["outputs"][0]["shape"] == [2]
    rng = np.random.default_rng(0)
    bad = [payload[:n] for n in (0, 5, 20, len(payload) - 1)]
    for _ in range(40):
        mutated = bytearray(payload)
        mutated[int(rng.integers(len(mutated)))] ^= 0xFF
        bad.append(bytes(mutated))
    bad.append(encode([HandoffTensor(spec["name"], np.zeros((2, 8, 8, 7), np.float32))]))
    for item in bad:
        body = {"inputs": [{"name": "eedge_handoff", "datatype": "BYTES", "shape": [1],
                            "data": [base64.b64encode(item).decode()]}]}
        code, reply = post(served.infer_url, json.dumps(body).encode())
        assert code == 400 and "hand-off" in reply["error"], reply


# ---- dynamic batching ----------------------------------------------------------------------

def test_concurrent_requests_are_batched_and_answered_separately(model) -> None:  # type: ignore[no-untyped-def]
    """24 concurrent requests of 1-3 rows: fewer cascade runs than requests, and
    each answer is its own rows' (the cascade run on them alone)."""
    tail = model[2]
    spec = tail.manifest["inputs"][0]
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal((int(rng.integers(1, 4)), *[int(d) for d in
                                   spec["shape"][1:]])).astype(np.float32) for _ in range(24)]
    expected = [Cascade(tail).infer({spec["name"]: a}, raw=True) for a in arrays]
    server = make_server(tail.path, port=0, max_batch=32, max_delay_ms=50).start()
    try:
        url = f"{server.url}/v2/models/{server.model.name}/infer"
        results: list[Any] = [None] * len(arrays)
        barrier = threading.Barrier(len(arrays))

        def send(i: int) -> None:
            body, headers = binary_request({spec["name"]: arrays[i]})
            barrier.wait()
            results[i] = post_binary(url, body, headers)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(arrays))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for (code, outputs), want in zip(results, expected):
            assert code == 200
            assert np.array_equal(outputs["predictions"], want.predictions)
            assert np.allclose(outputs["probabilities"], want.probabilities, atol=1e-5)
        assert server.batcher.rows == sum(len(a) for a in arrays)
        assert server.batcher.batches < len(arrays) / 2, server.batcher.batches
    finally:
        server.stop()


# ---- a generic v2 server (Triton) ----------------------------------------------------------

def test_triton_repository_parses_and_serves_like_triton(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle, head, tail = model
    # in the process that imported KServe's gRPC protos: the check must not clash with them
    import kserve.protocol.grpc.grpc_predict_v2_pb2  # noqa: F401
    written = export_triton(tail, tmp_path / "repo", "tail")
    config = validate_triton_config((written / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 64
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    with pytest.raises(InputDataError, match=r"\d+:\d+"):
        validate_triton_config('name: "x"\nmax_batch_size: lots\n')
    repo_model = tmp_path / "repo" / "tail"
    session = make_session(repo_model / "1" / "model.onnx", 1)
    outputs = [o.name for o in session.get_outputs()]

    class TritonLike(BaseHTTPRequestHandler):
        """What Triton's ONNX Runtime backend does with a v2 JSON request: logits out."""

        def log_message(self, *_a: object) -> None:
            pass

        def _reply(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._reply({"name": "tail", "platform": "onnxruntime_onnx",
                         "outputs": [{"name": n} for n in outputs]})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            feeds = {i["name"]: np.asarray(i["data"], np.float32).reshape(i["shape"])
                     for i in body["inputs"]}
            results = session.run(None, feeds)
            self._reply({"outputs": [{"name": n, "datatype": "FP32", "shape": list(r.shape),
                                      "data": r.reshape(-1).tolist()}
                                     for n, r in zip(outputs, results)]})

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), TritonLike)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        with Client(head, url, "tail", tail_policies=[e["policy"] for e in tail.exits],
                    binary=False) as client:
            x = example_input(seed=9, batch=40)
            split = client.infer(x)
        whole = Cascade(bundle).infer(x)
        assert np.array_equal(split.predictions, whole.predictions)
        assert np.array_equal(split.exit_index, whole.exit_index)
    finally:
        httpd.shutdown()
        httpd.server_close()
