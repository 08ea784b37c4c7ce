"""Split end to end: head on the device runtime -> eedge serve on 127.0.0.1 -> same answers.

Also: malformed, oversized and truncated requests get 4xx; the Triton repository
parses against Triton's model-config protobuf and, served the way Triton's ONNX
backend would (logits out), gives the client the same decisions.
"""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from zoo import example_input  # noqa: E402

from eedge.errors import InputDataError  # noqa: E402
from eedge.runtime.cascade import Cascade, make_session  # noqa: E402
from eedge.split.bundles import export_halves, export_triton, validate_triton_config  # noqa: E402
from eedge.split.client import Client  # noqa: E402
from eedge.split.encoding import HandoffTensor, encode  # noqa: E402
from eedge.split.server import make_server  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The residual zoo model with median thresholds, int8 too, and its halves."""
    import onnx
    from conftest import exported_onnx

    from eedge.export import export_onnx
    from eedge.policies.apply import write_thresholds
    from eedge.policies.criteria import confidence

    root = tmp_path_factory.mktemp("serve")
    onnx.save(exported_onnx("residual"), root / "m.onnx")
    calib = example_input(seed=1, batch=64)
    bundle = export_onnx(root / "m.onnx", root / "bundle", int8=True, calibration=calib).bundle
    logits = Cascade(bundle).run_all_exits(example_input(seed=2, batch=64))
    bundle = write_thresholds(bundle, [float(np.median(confidence(lg))) for lg in logits[:-1]]
                              + [None], "test")
    head, tail = export_halves(bundle, 0, root / "split", int8=True, calibration=calib)
    return bundle, head, tail


@pytest.fixture
def server(model):  # type: ignore[no-untyped-def]
    srv = make_server(model[2].path, port=0, max_batch=8, max_delay_ms=1,
                      max_body_bytes=1 << 20).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("runtime, encoding", [("onnx", False), ("onnx", True),
                                               ("int8-reference", False)])
def test_split_answers_equal_the_unsplit_cascade(model, runtime: str, encoding: bool) -> None:  # type: ignore[no-untyped-def]
    bundle, head, tail = model
    srv = make_server(tail.path, port=0, runtime=runtime).start()
    try:
        client = Client(head, srv.url, tail.manifest["model"]["name"], runtime=runtime,
                        handoff_encoding=encoding)
        x = example_input(seed=5, batch=60)
        split = client.infer(x)
        whole = Cascade(bundle, runtime=runtime).infer(x)
        assert np.array_equal(split.predictions, whole.predictions)
        assert np.array_equal(split.exit_index, whole.exit_index)
        assert 0 < split.sent_rows < 60
    finally:
        srv.stop()


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_malformed_requests_get_4xx(model, server) -> None:  # type: ignore[no-untyped-def]
    name = model[2].manifest["model"]["name"]
    url = f"{server.url}/v2/models/{name}/infer"
    good = {"name": "relu", "datatype": "FP32", "shape": [1, 8, 8, 8], "data": [0.0] * 512}
    spec = next(t for t in model[2].manifest["inputs"])
    good["name"] = spec["name"]
    cases = {
        b"not json": 400,
        json.dumps({"inputs": []}).encode(): 400,
        json.dumps({"inputs": [{**good, "name": "nope"}]}).encode(): 400,
        json.dumps({"inputs": [{**good, "datatype": "INT8"}]}).encode(): 400,
        json.dumps({"inputs": [{**good, "shape": [1, 8, 8, 9]}]}).encode(): 400,
        json.dumps({"inputs": [{**good, "data": [0.0] * 511}]}).encode(): 400,
        json.dumps({"inputs": [{**good, "data": ["x"] * 512}]}).encode(): 400,
        json.dumps({"inputs": [{"name": "eedge_handoff", "datatype": "BYTES", "shape": [1],
                                "data": ["!!notbase64"]}]}).encode(): 400,
    }
    for body, status in cases.items():
        code, reply = post(url, body)
        assert code == status and reply.get("error"), body[:40]
    code, reply = post(url, json.dumps({"inputs": [good]}).encode())
    assert code == 200 and reply["outputs"][0]["name"] == "predictions"
    code, _ = post(url, b"{" + b" " * (1 << 20) + b"}")
    assert code == 413
    code, _ = post(f"{server.url}/v2/models/other/infer", json.dumps({"inputs": [good]}).encode())
    assert code == 404


def test_fuzzed_and_truncated_handoffs_are_rejected(model, server) -> None:  # type: ignore[no-untyped-def]
    name = model[2].manifest["model"]["name"]
    url = f"{server.url}/v2/models/{name}/infer"
    spec = model[2].manifest["inputs"][0]
    tensor = HandoffTensor(spec["name"], np.zeros((2, 8, 8, 8), np.float32))
    payload = encode([tensor])
    rng = np.random.default_rng(0)
    bad = [payload[:n] for n in (0, 5, 20, len(payload) - 1)]
    for _ in range(60):
        mutated = bytearray(payload)
        mutated[int(rng.integers(len(mutated)))] ^= 0xFF
        bad.append(bytes(mutated))
    bad.append(encode([HandoffTensor(spec["name"], np.zeros((2, 8, 8, 7), np.float32))]))
    for item in bad:
        body = {"inputs": [{"name": "eedge_handoff", "datatype": "BYTES", "shape": [1],
                            "data": [base64.b64encode(item).decode()]}]}
        code, reply = post(url, json.dumps(body).encode())
        assert code == 400 and "hand-off" in reply["error"]


def test_triton_repository_parses_and_serves_like_triton(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle, head, tail = model
    repo_model = export_triton(tail, tmp_path / "repo", "tail")
    config = validate_triton_config((repo_model / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 64
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    with pytest.raises(InputDataError, match=r"\d+:\d+"):
        validate_triton_config("name: \"x\"\nmax_batch_size: lots\n")
    session = make_session(repo_model / "1" / "model.onnx", 1)
    outputs = [o.name for o in session.get_outputs()]

    class TritonLike(BaseHTTPRequestHandler):
        """What Triton's ONNX Runtime backend does with a v2 request: logits out."""

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
        client = Client(head, url, "tail", tail_policies=[e["policy"] for e in tail.exits])
        x = example_input(seed=9, batch=40)
        split = client.infer(x)
        whole = Cascade(bundle).infer(x)
        assert np.array_equal(split.predictions, whole.predictions)
        assert np.array_equal(split.exit_index, whole.exit_index)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_serve_cli_stops_gracefully_on_sigterm(model) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen([sys.executable, "-m", "eedge.cli.main", "serve",
                             str(model[2].path), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "serving" in line, proc.stderr.read()
    url = line.split(" at ")[1].split("/v2")[0]
    with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=10) as response:
        assert json.loads(response.read())["ready"]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "stopped" in out
