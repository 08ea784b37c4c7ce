"""eedge serve refuses non-finite inputs with 400 and never writes NaN into JSON (issue 16, 4).

FP32 data of 1e39 is finite as JSON but infinite as the model's float32: the
check runs after the conversion. JSON's non-standard ``NaN``/``Infinity``
literals, numbers too large for a double and bodies nested too deep are refused
before KServe parses them; NaN/inf in binary FP32 tensors (REST binary extension
and gRPC raw contents) are refused by the model with the row that holds them.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_serve import binary_request, model, post, post_binary  # noqa: E402,F401

from eedge.split.encoding import HandoffTensor, encode  # noqa: E402
from eedge.split.server import make_server  # noqa: E402


@pytest.fixture
def served(model):  # type: ignore[no-untyped-def]  # noqa: F811
    srv = make_server(model[2].path, port=0, max_batch=8, max_delay_ms=1,
                      max_body_bytes=1 << 22, grpc_port=0).start()
    spec = model[2].manifest["inputs"][0]
    url = f"{srv.url}/v2/models/{srv.model.name}/infer"
    yield url, spec, srv
    srv.stop()


def _tensor(spec: dict, data: list) -> bytes:
    shape = [1] + [int(d) for d in spec["shape"][1:]]
    return json.dumps({"inputs": [{"name": spec["name"], "datatype": "FP32", "shape": shape,
                                   "data": data}]}).encode()


def test_non_finite_values_get_400(served) -> None:  # type: ignore[no-untyped-def]
    url, spec, _ = served
    size = int(np.prod(spec["shape"][1:]))
    for value in (1e39, -1e39):  # finite in JSON, infinite as float32
        data = [0.0] * size
        data[3] = value
        code, reply = post(url, _tensor(spec, data))
        assert code == 400 and "NaN or infinity" in reply["error"], (value, reply)
    for value in (float("nan"), float("inf"), float("-inf")):  # NaN / Infinity literals
        data = [0.0] * size
        data[3] = value
        code, reply = post(url, _tensor(spec, data))
        assert code == 400 and "not valid JSON" in reply["error"], (value, reply)
    data = [0.0] * size
    code, reply = post(url, _tensor(spec, data).replace(b"0.0]", b"1" + b"0" * 400 + b"]"))
    assert code == 400, reply  # 1e400: beyond a double
    code, reply = post(url, _tensor(spec, data).replace(b"0.0]", b"1" * 5000 + b"]"))
    assert code == 400, reply  # over Python's int-digit limit too
    code, reply = post(url, b"[" * 100_000 + b"]" * 100_000)
    assert code == 400, reply
    code, reply = post(url, _tensor(spec, data))
    assert code == 200 and all(np.isfinite(reply["outputs"][2]["data"]))


def test_non_finite_binary_tensors_get_400(served) -> None:  # type: ignore[no-untyped-def]
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    url, spec, srv = served
    for value in (np.nan, np.inf, -np.inf):
        array = np.zeros([3] + [int(d) for d in spec["shape"][1:]], np.float32)
        array[2, 1] = value
        code, reply = post_binary(url, *binary_request({spec["name"]: array}))
        assert code == 400 and "row 2 holds NaN or infinity" in reply["error"], reply
        request = pb.ModelInferRequest(model_name=srv.model.name, inputs=[
            pb.ModelInferRequest.InferInputTensor(name=spec["name"], datatype="FP32",
                                                  shape=list(array.shape))],
            raw_input_contents=[array.tobytes()])
        with grpc.insecure_channel(srv.grpc_address) as channel:
            with pytest.raises(grpc.RpcError) as info:
                pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "row 2 holds NaN or infinity" in info.value.details()


def test_non_finite_handoff_gets_400(served) -> None:  # type: ignore[no-untyped-def]
    url, spec, _ = served
    array = np.zeros([2] + [int(d) for d in spec["shape"][1:]], np.float32)
    array[1, 0] = np.inf
    payload = encode([HandoffTensor(spec["name"], array)])
    body = {"inputs": [{"name": "eedge_handoff", "datatype": "BYTES", "shape": [1],
                        "data": [base64.b64encode(payload).decode()]}]}
    code, reply = post(url, json.dumps(body).encode())
    assert code == 400 and "row 1" in reply["error"]


def test_strict_json_writer_names_the_non_finite_value() -> None:
    from eedge.strict_json import dumps

    assert dumps({"a": np.float32(1.5), "b": np.arange(2)}) == '{"a": 1.5, "b": [0, 1]}'
    with pytest.raises(ValueError, match=r"\$\.exits\[1\]\.ece"):
        dumps({"exits": [{"ece": 0.1}, {"ece": float("nan")}]})
