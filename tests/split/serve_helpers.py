"""Helpers the split serving tests share: the split zoo model, `eedge serve` started as
a process, and v2 REST requests written from the protocol (independently of the
client's encoder)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))

from zoo import example_input  # noqa: E402

from eedge.runtime.cascade import Cascade  # noqa: E402

STARTUP_S = 120


def split_model(root: Path) -> tuple[Any, Any, Any]:
    """The residual zoo model with median thresholds, int8 too, and its halves (split
    after the first stage), written below ``root``: (bundle, head, tail)."""
    import onnx
    from conftest import exported_onnx

    from eedge.export import export_onnx
    from eedge.policies.apply import write_thresholds
    from eedge.policies.criteria import confidence
    from eedge.split.bundles import export_halves

    onnx.save(exported_onnx("residual"), root / "m.onnx")
    calib = example_input(seed=1, batch=64)
    bundle = export_onnx(root / "m.onnx", root / "bundle", int8=True, calibration=calib).bundle
    logits = Cascade(bundle).run_all_exits(example_input(seed=2, batch=64))
    bundle = write_thresholds(bundle, [float(np.median(confidence(lg))) for lg in logits[:-1]]
                              + [None], "test")
    head, tail = export_halves(bundle, 0, root / "split", int8=True, calibration=calib)
    return bundle, head, tail


# ---- `eedge serve` as a process ----------------------------------------------------------

@dataclass
class Served:
    proc: subprocess.Popen
    url: str
    grpc: str | None
    name: str

    @property
    def infer_url(self) -> str:
        return f"{self.url}/v2/models/{self.name}/infer"


def _read_line(proc: subprocess.Popen, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            break
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 1)
            if not chunk:
                break
            line += chunk
    return line.decode()


@contextmanager
def serve_process(tail: Path, *args: str, grpc: bool = True, startup_s: float = STARTUP_S,
                  stop_s: float = 60, log_prefix: str = "serve") -> Iterator[Served]:
    """`eedge serve TAIL --port 0 --grpc-port 0 ARGS` (``--no-grpc`` unless ``grpc``)
    until the block ends (then SIGTERM, and SIGKILL if it has not exited within
    ``stop_s``); its stderr goes to a log next to the tail."""
    command = [sys.executable, "-m", "eedge.cli.main", "serve", str(tail), "--port", "0",
               *(["--grpc-port", "0"] if grpc else ["--no-grpc"]), *args]
    stderr = open(Path(tail).parent / f"{log_prefix}-{os.getpid()}-{time.monotonic_ns()}.log",
                  "wb")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)
    try:
        line = _read_line(proc, startup_s)
        if "serving" not in line:
            proc.kill()
            proc.wait()
            stderr.close()
            raise AssertionError(f"eedge serve did not start: {line!r}\n"
                                 f"{Path(stderr.name).read_text()[-3000:]}")
        url = line.split(" at ")[1].split("/v2")[0]
        name = line.split("/v2/models/")[1].split()[0]
        grpc_address = line.split("gRPC ")[1].split(";")[0] if grpc else None
        yield Served(proc, url, grpc_address, name)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(stop_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stderr.close()


# ---- v2 REST -----------------------------------------------------------------------------

def post(url: str, body: bytes, headers: dict[str, str] | None = None,
         timeout: float = 30) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"{}")
        except ValueError:
            return exc.code, {"error": raw.decode(errors="replace")}


def get(url: str, timeout: float = 30) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


V2 = {np.dtype(np.float32): "FP32", np.dtype(np.int8): "INT8", np.dtype(np.int64): "INT64"}


def binary_request(arrays: dict[str, np.ndarray], params: dict[str, dict] | None = None,
                   outputs: tuple[str, ...] = ("predictions", "exit_index", "probabilities"),
                   ) -> tuple[bytes, dict[str, str]]:
    """A v2 request with the binary tensor data extension (written here from the
    protocol, independently of the client's encoder)."""
    inputs = []
    for name, array in arrays.items():
        parameters = {"binary_data_size": array.nbytes, **(params or {}).get(name, {})}
        inputs.append({"name": name, "shape": list(array.shape), "datatype": V2[array.dtype],
                       "parameters": parameters})
    header = json.dumps({"inputs": inputs, "outputs": [
        {"name": n, "parameters": {"binary_data": True}} for n in outputs]}).encode()
    body = header + b"".join(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"))
                             .tobytes() for a in arrays.values())
    return body, {"Content-Type": "application/octet-stream",
                  "Inference-Header-Content-Length": str(len(header))}


def post_binary(url: str, body: bytes, headers: dict[str, str],
                timeout: float = 30) -> tuple[int, dict]:
    """POST a binary request; the answer's outputs decoded (binary or JSON)."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw, length = response.read(), response.headers.get(
                "Inference-Header-Content-Length")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    if length is None:
        reply = json.loads(raw)
        return 200, {o["name"]: np.asarray(o["data"]).reshape(o["shape"])
                     for o in reply["outputs"]}
    header = json.loads(raw[:int(length)])
    outputs, offset = {}, int(length)
    types = {"FP32": "<f4", "INT64": "<i8", "INT8": "i1"}
    for o in header["outputs"]:
        if "data" in o:  # an output not requested binary comes inline
            outputs[o["name"]] = np.asarray(o["data"]).reshape(o["shape"])
            continue
        size = o["parameters"]["binary_data_size"]
        outputs[o["name"]] = np.frombuffer(raw[offset:offset + size],
                                           types[o["datatype"]]).reshape(o["shape"])
        offset += size
    assert offset == len(raw)
    return 200, outputs
