"""eedge serve refuses non-finite inputs with 400 and never writes NaN into JSON (issue 16, 4).

FP32 data of 1e39 is finite as the float64 JSON parses it but infinite as the
model's float32: the check runs after the conversion. JSON's non-standard
``NaN``/``Infinity`` literals (Python's json reads them) are refused the same way,
and so are numbers too large for a float and bodies json cannot parse at all.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_serve import model, post  # noqa: E402,F401  (the module-scoped fixture)

from eedge.split.encoding import HandoffTensor, encode  # noqa: E402
from eedge.split.server import make_server  # noqa: E402


@pytest.fixture
def served(model):  # type: ignore[no-untyped-def]  # noqa: F811
    srv = make_server(model[2].path, port=0, max_batch=8, max_delay_ms=1,
                      max_body_bytes=1 << 22).start()
    spec = model[2].manifest["inputs"][0]
    url = f"{srv.url}/v2/models/{model[2].manifest['model']['name']}/infer"
    yield url, spec
    srv.stop()


def _tensor(spec: dict, data: list) -> bytes:
    shape = [1] + [int(d) for d in spec["shape"][1:]]
    return json.dumps({"inputs": [{"name": spec["name"], "datatype": "FP32", "shape": shape,
                                   "data": data}]}).encode()


def test_non_finite_values_get_400(served) -> None:  # type: ignore[no-untyped-def]
    url, spec = served
    size = int(np.prod(spec["shape"][1:]))
    for value in (float("nan"), float("inf"), 1e39, -1e39):
        data = [0.0] * size
        data[3] = value
        code, reply = post(url, _tensor(spec, data))
        assert code == 400 and "NaN or infinity" in reply["error"], (value, reply)
    data = [0.0] * size
    code, reply = post(url, _tensor(spec, data).replace(b"0.0]", b"1" + b"0" * 400 + b"]"))
    assert code == 400, reply
    code, reply = post(url, _tensor(spec, data).replace(b"0.0]", b"1" * 5000 + b"]"))
    assert code == 400, reply  # over Python's int-digit limit: json raises ValueError
    code, reply = post(url, b"[" * 100_000 + b"]" * 100_000)
    assert code == 400, reply
    code, reply = post(url, _tensor(spec, data))
    assert code == 200 and all(np.isfinite(reply["outputs"][2]["data"]))


def test_non_finite_handoff_gets_400(served) -> None:  # type: ignore[no-untyped-def]
    url, spec = served
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
