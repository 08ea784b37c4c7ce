"""Load test of `eedge serve` (KServe's model server) and its Ray Serve scale-out.

A MobileNet-VWW-like model (MobileNetV1 alpha 0.25, 96x96x3, two classes; an exit
after the first block, the final exit after 12 more depthwise-separable blocks)
is split after its first block; the tail (6.5 M MACs) runs on ONNX Runtime, one
thread, which runs a batch in one call (eedge's LiteRT runner invokes its batch-1
int8 files row by row, so batching could not save compute there). The hand-offs
(FP32 16x48x48, 147,456 B) are sent with the KServe v2 binary tensor data
extension (the body is written here from the protocol: JSON header, then the raw
little-endian bytes; outputs asked binary), one row per request, by concurrent
clients on keep-alive connections to `eedge serve` started as a process on
127.0.0.1. A share of the requests is malformed (wrong shape, NaN, unknown input,
a broken JSON header, binary sizes that do not add up): each must get a 4xx;
every valid one must come back with the unsplit cascade's decision (prediction
and exit).

A second tail is a transformer's: eedge's example ViT (eedge/examples/vit_model.py)
at dim 512 and 6 blocks on 5 tokens, split after block 1 (hand-off FP32 5x512);
its 5-block tail (52.6 M MACs) is weight-bound at batch 1, so batching saves
compute there. It gets the same load (fewer requests, see ``vit_requests``),
dynamic batching vs --max-batch 1, decisions checked against its unsplit cascade.

Modes: dynamic batching (--max-batch 32, 2 ms), --max-batch 1, and the tail on 1
and 2 Ray Serve replicas (`--replicas`, a local Ray instance per run). Bounded: at
most ``requests`` (``ray_requests``) per mode, and no request starts after
``time_limit_s`` (those are reported as not sent, apart from lost ones).

    .venv/bin/python bench/serve_bench.py [--requests 5000] [--clients 32] [--time-limit 20]
        [--vit-requests 1500] [--vit-time-limit 10]
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))   # the zoo's VWWLikeNet

RUNTIME = "onnx"
STARTUP_S = 180.0


def vww_like_bundle(workdir: Path) -> Path:
    """MobileNetV1 (alpha 0.25) at 96x96, two classes, an exit after the first block;
    weights seeded (the load test needs the compute, not the accuracy)."""
    import torch
    from zoo import VWWLikeNet

    from eedge.export import export_torch

    torch.manual_seed(0)
    module = VWWLikeNet().eval()
    example = np.random.default_rng(0).standard_normal((2, 3, 96, 96)).astype(np.float32)
    out = workdir / "vww-like"
    export_torch(module, example, out, name="vww_like", force=True)
    return out


VIT = {"dim": 512, "depth": 6, "heads": 8, "patch": 4, "side": 8}
"""The ViT tail's model: eedge's built-in ViT (`eedge demo --model vit`'s 8x8
digits in 4x4 patches: 4 tokens and the class token) at dim 512 (8 heads, MLP
1024) and 6 blocks, exits after blocks 1 and 6, so that its tail (5 blocks) costs
a few ms per row at batch 1 on one ONNX Runtime thread."""


def vit_bundle(workdir: Path) -> Path:
    """eedge's example ViT (eedge.examples.vit_model) at the ``VIT`` size, an exit
    after block 1 and one after the last; weights seeded."""
    import torch

    from eedge.examples.vit_model import EarlyExitViT
    from eedge.export import export_torch

    torch.manual_seed(0)
    module = EarlyExitViT(exits=(1, VIT["depth"]), **VIT).eval()
    example = np.random.default_rng(0).standard_normal(
        (2, 1, VIT["side"], VIT["side"])).astype(np.float32)
    out = workdir / "vit"
    export_torch(module, example, out, name="vit", force=True)
    return out


def prepare(workdir: Path, total: int, malformed_share: float,
            model: str = "vww") -> dict[str, Any]:
    """Split after the first block, the hand-offs of the samples the head does not
    decide, the unsplit cascade's decisions for them, and the request bodies (some
    malformed). ``model``: "vww" (the VWW-like CNN) or "vit" (the ViT)."""
    from eedge.ir.bundle import load_bundle
    from eedge.policies.apply import write_thresholds
    from eedge.policies.criteria import confidence
    from eedge.runtime.cascade import Cascade
    from eedge.split.bundles import export_halves

    if model == "vww":
        path, shape = vww_like_bundle(workdir), (3, 96, 96)
    else:
        path, shape = vit_bundle(workdir), (1, VIT["side"], VIT["side"])
    rng = np.random.default_rng(0)
    bundle = load_bundle(path)
    # the early exit takes some of the samples (the rest are hand-offs)
    early = confidence(Cascade(bundle, runtime=RUNTIME).run_all_exits(
        rng.standard_normal((192, *shape)).astype(np.float32))[0])
    bundle = write_thresholds(bundle, [float(np.quantile(early, 0.67)), None], "bench")
    split = workdir / ("split" if model == "vww" else f"split-{model}")
    head, tail = export_halves(bundle, 0, split, force=True)
    x = np.random.default_rng(0).standard_normal((192, *shape)).astype(np.float32)
    local = Cascade(head, runtime=RUNTIME).infer(x)
    whole = Cascade(bundle, runtime=RUNTIME).infer(x)
    [(name, handoff)] = local.handoff.items()
    expected = [(int(whole.predictions[i]), int(whole.exit_index[i])) for i in local.pending]
    rows = rng.integers(0, len(handoff), total)
    bad = rng.random(total) < malformed_share
    bodies = [_body(name, handoff[r:r + 1], kind=int(rng.integers(0, 5)) if b
                    else None) for r, b in zip(rows, bad)]
    return {"tail": tail.path, "name": tail.manifest["model"]["name"], "bodies": bodies,
            "handoff": handoff,
            "rows": rows, "malformed": bad, "expected": expected,
            "handoff_bytes": int(handoff[0].nbytes), "pending": int(local.pending.size),
            "samples": len(x), "tail_macs": int(sum(s["macs"] for s in tail.stages)),
            "tail_onnx": [tail.file(s["files"]["onnx"]) for s in tail.stages]}


def tail_ms_per_row(data: dict[str, Any], batches: tuple[int, ...] = (1, 32),
                    seconds: float = 1.0) -> dict[str, float]:
    """The tail alone on ONNX Runtime (1 thread, as the server runs it): ms per row
    at each batch size, on the bench's hand-offs (one stage: the ViT's tail)."""
    import onnxruntime as ort

    [path] = data["tail_onnx"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rows = data["handoff"]
    result = {}
    for batch in batches:
        x = np.ascontiguousarray(rows[np.arange(batch) % len(rows)])
        session.run(None, {name: x})
        runs, start = 0, time.perf_counter()
        while runs < 3 or time.perf_counter() - start < seconds:
            session.run(None, {name: x})
            runs += 1
        result[str(batch)] = (time.perf_counter() - start) / runs / batch * 1e3
    return result


def _body(name: str, array: np.ndarray, kind: int | None) -> tuple[bytes, dict[str, str]]:
    """A binary v2 request for one FP32 row; ``kind`` picks a defect (None: valid)."""
    shape, data = list(array.shape), array.astype("<f4").tobytes()
    if kind == 0:                       # wrong shape (the last axis one short)
        shape = shape[:-1] + [shape[-1] - 1]
        data = np.ascontiguousarray(array[..., :-1]).astype("<f4").tobytes()
    elif kind == 1:                     # NaN in the hand-off
        data = np.where(np.arange(array.size) == 5, np.nan, array.reshape(-1)) \
            .astype("<f4").tobytes()
    elif kind == 2:                     # not a cut tensor
        name = "not_" + name
    header = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(data)}}],
                         "outputs": [{"name": n, "parameters": {"binary_data": True}}
                                     for n in ("predictions", "exit_index")]}).encode()
    if kind == 3:                       # a broken JSON header
        header = header[:-2]
    if kind == 4:                       # binary sizes that do not add up
        data = data[:-7]
    return header + data, {"Content-Type": "application/octet-stream",
                           "Inference-Header-Content-Length": str(len(header))}


def _decode(raw: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    if header_length is None:
        return {o["name"]: np.asarray(o["data"]) for o in json.loads(raw)["outputs"]}
    header = json.loads(raw[:int(header_length)])
    outputs, offset = {}, int(header_length)
    for o in header["outputs"]:
        size = o["parameters"]["binary_data_size"]
        outputs[o["name"]] = np.frombuffer(raw[offset:offset + size], "<i8")
        offset += size
    return outputs


class Served:
    """`eedge serve TAIL ARGS` as a process until ``stop()`` (SIGTERM)."""

    def __init__(self, tail: Path, log: Path, *args: str) -> None:
        command = [sys.executable, "-m", "eedge.cli.main", "serve", str(tail), "--port", "0",
                   "--no-grpc", "--runtime", RUNTIME, *args]
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log)
        line = self._line(STARTUP_S)
        if "serving" not in line:
            self.stop()
            raise RuntimeError(f"eedge serve did not start: {line!r}\n"
                               f"{log.read_text()[-2000:]}")
        self.url = line.split(" at ")[1].split("/v2")[0]
        self.host, self.port = self.url.split("//")[1].rsplit(":", 1)

    def _line(self, timeout_s: float) -> str:
        deadline, line = time.monotonic() + timeout_s, b""
        assert self.proc.stdout is not None
        while not line.endswith(b"\n") and self.proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if select.select([self.proc.stdout], [], [], left)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 1)
                if not chunk:
                    break
                line += chunk
        return line.decode()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return int(self.proc.returncode)


def load(served: Served, name: str, data: dict[str, Any], count: int, clients: int,
         time_limit_s: float = 60.0) -> dict[str, Any]:
    """``count`` requests from ``clients`` threads (keep-alive connections); no new
    request starts after ``time_limit_s`` (those left are counted as not sent)."""
    path = f"/v2/models/{name}/infer"
    stop_at = time.perf_counter() + time_limit_s
    latencies = np.zeros(count)
    outcome = [""] * count

    def worker(indices: range) -> None:
        connection = http.client.HTTPConnection(served.host, int(served.port), timeout=60)
        for i in indices:
            if time.perf_counter() > stop_at:
                break
            body, headers = data["bodies"][i]
            start = time.perf_counter()
            try:
                connection.request("POST", path, body, headers)
                response = connection.getresponse()
                raw = response.read()
                status = response.status
                length = response.getheader("Inference-Header-Content-Length")
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
            except (OSError, http.client.HTTPException):
                connection.close()
                outcome[i] = "lost"
                latencies[i] = (time.perf_counter() - start) * 1e3
                continue
            latencies[i] = (time.perf_counter() - start) * 1e3
            if data["malformed"][i]:
                outcome[i] = "4xx" if 400 <= status < 500 else "wrong"
            elif status != 200:
                outcome[i] = "wrong"
            else:
                out = _decode(raw, length)
                got = (int(out["predictions"][0]), int(out["exit_index"][0]))
                outcome[i] = "ok" if got == data["expected"][data["rows"][i]] else "wrong"
        connection.close()

    threads = [threading.Thread(target=worker, args=(range(c, count, clients),))
               for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    sent = np.array([o != "" for o in outcome])
    valid = latencies[sent & ~data["malformed"][:count]]
    return {"requests": int(sent.sum()), "not_sent": int(count - sent.sum()),
            "seconds": round(wall, 3), "throughput_rps": int(sent.sum()) / wall,
            "p50_ms": float(np.percentile(valid, 50)), "p99_ms": float(np.percentile(valid, 99)),
            "correct": outcome.count("ok"), "rejected_4xx": outcome.count("4xx"),
            "malformed": int((data["malformed"][:count] & sent).sum()),
            "wrong": outcome.count("wrong"), "lost": outcome.count("lost")}


def serve_bench(workdir: Path, requests: int = 5000, clients: int = 32,
                ray_requests: int = 2000, malformed_share: float = 0.05,
                time_limit_s: float = 20.0, vit_requests: int = 1500,
                vit_time_limit_s: float = 10.0) -> dict[str, Any]:
    """The load test (see the module docstring); a dict for bench/results.json.
    Each mode stops starting requests after ``time_limit_s`` (reported as not sent).
    The ViT tail (key "vit"; ``vit_requests`` 0 skips it) gets ``vit_requests`` per
    mode and ``vit_time_limit_s``, to keep its share of the bench under a minute."""
    workdir.mkdir(parents=True, exist_ok=True)
    data = prepare(workdir, max(requests, ray_requests), malformed_share)
    result: dict[str, Any] = {
        "model": "MobileNetV1-0.25 96x96 (VWW-like), split after block 1, tail on ONNX "
                 "Runtime (1 thread)", "tail_macs": data["tail_macs"],
        "wire": "KServe v2 binary tensor extension (FP32 hand-off + JSON header), one row "
                "per request, keep-alive", "handoff_bytes": data["handoff_bytes"],
        "request_bytes": int(np.median([len(b) for b, _ in data["bodies"]])),
        "clients": clients, "malformed_share": malformed_share,
        "cpu_count": os.cpu_count(), "modes": {}}
    modes = [("batched", requests, ("--max-batch", "32", "--max-delay-ms", "2")),
             ("batch1", requests, ("--max-batch", "1", "--max-delay-ms", "0")),
             ("ray1", ray_requests, ("--replicas", "1", "--max-batch", "32",
                                     "--max-delay-ms", "2")),
             ("ray2", ray_requests, ("--replicas", "2", "--max-batch", "32",
                                     "--max-delay-ms", "2"))]
    result["modes"] = run_modes(workdir, data, modes, clients, time_limit_s)
    m = result["modes"]
    result["batched_over_batch1_throughput"] = (m["batched"]["throughput_rps"] /
                                                m["batch1"]["throughput_rps"])
    result["ray2_over_ray1_throughput"] = m["ray2"]["throughput_rps"] / m["ray1"]["throughput_rps"]
    if vit_requests > 0:
        result["vit"] = vit_bench(workdir, vit_requests, clients, malformed_share,
                                  vit_time_limit_s)
    return result


def run_modes(workdir: Path, data: dict[str, Any], modes: list[tuple[str, int, tuple[str, ...]]],
              clients: int, time_limit_s: float, prefix: str = "") -> dict[str, Any]:
    """Each mode: `eedge serve` started with its arguments, a warm-up, the load, SIGTERM."""
    entries = {}
    for label, count, args in modes:
        served = Served(data["tail"], workdir / f"serve-{prefix}{label}.log", *args)
        try:
            load(served, data["name"], data, min(100, count), clients, 10)  # warm-up
            entry = load(served, data["name"], data, count, clients, time_limit_s)
        finally:
            entry_exit = served.stop()
        entry["exit_code"] = entry_exit
        entries[label] = entry
    return entries


def vit_bench(workdir: Path, requests: int, clients: int, malformed_share: float,
              time_limit_s: float) -> dict[str, Any]:
    """The same load on a transformer tail (``VIT``): batching vs --max-batch 1."""
    data = prepare(workdir, requests, malformed_share, model="vit")
    result: dict[str, Any] = {
        "model": (f"eedge's example ViT, dim {VIT['dim']}, {VIT['depth']} blocks, "
                  f"{VIT['heads']} heads, {(VIT['side'] // VIT['patch']) ** 2 + 1} tokens "
                  f"({VIT['side']}x{VIT['side']} input, {VIT['patch']}x{VIT['patch']} "
                  "patches), split after block 1, tail on ONNX Runtime (1 thread)"),
        "tail_macs": data["tail_macs"], "handoff_bytes": data["handoff_bytes"],
        "request_bytes": int(np.median([len(b) for b, _ in data["bodies"]])),
        "requests_per_mode": requests, "time_limit_s": time_limit_s,
        "tail_ms_per_row": tail_ms_per_row(data)}
    modes = [("batched", requests, ("--max-batch", "32", "--max-delay-ms", "2")),
             ("batch1", requests, ("--max-batch", "1", "--max-delay-ms", "0"))]
    result["modes"] = run_modes(workdir, data, modes, clients, time_limit_s, prefix="vit-")
    m = result["modes"]
    result["batched_over_batch1_throughput"] = (m["batched"]["throughput_rps"] /
                                                m["batch1"]["throughput_rps"])
    return result


def _modes_table(title: str, modes: dict[str, Any]) -> Table:
    table = Table(title=title)
    for column in ("mode", "requests", "req/s", "p50 ms", "p99 ms", "correct", "4xx/malformed",
                   "wrong", "lost"):
        table.add_column(column, justify="right")
    labels = {"batched": "batching (32 rows, 2 ms)", "batch1": "--max-batch 1",
              "ray1": "Ray Serve, 1 replica", "ray2": "Ray Serve, 2 replicas"}
    for mode, r in modes.items():
        sent = str(r["requests"]) + (f" ({r['not_sent']} not sent)" if r["not_sent"] else "")
        table.add_row(labels.get(mode, mode), sent, f"{r['throughput_rps']:.0f}",
                      f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", str(r["correct"]),
                      f"{r['rejected_4xx']}/{r['malformed']}", str(r["wrong"]), str(r["lost"]))
    return table


def show_serve_bench(s: dict[str, Any], console: Console) -> None:
    console.print(_modes_table(f"eedge serve load test: {s['model']}; {s['clients']} clients, "
                               f"{s['malformed_share']:.0%} malformed, 127.0.0.1, "
                               f"{s['cpu_count']} CPUs", s["modes"]))
    console.print(f"wire: {s['wire']}; {s['handoff_bytes']:,} B hand-off, "
                  f"{s['request_bytes']:,} B per request; tail {s['tail_macs']:,} MACs")
    console.print(f"dynamic batching / batch size 1 throughput: "
                  f"{s['batched_over_batch1_throughput']:.2f}x; 2 / 1 Ray replicas: "
                  f"{s['ray2_over_ray1_throughput']:.2f}x ({s['cpu_count']} CPUs, clients "
                  "and server on the same machine)")
    if "vit" in s:
        v = s["vit"]
        console.print(_modes_table(
            f"eedge serve load test, transformer tail: {v['model']}; {s['clients']} clients, "
            f"{s['malformed_share']:.0%} malformed, at most {v['requests_per_mode']} requests "
            f"or {v['time_limit_s']:g} s per mode (fewer than the CNN's, to bound the bench)",
            v["modes"]))
        per_row = v["tail_ms_per_row"]
        console.print(f"ViT tail {v['tail_macs']:,} MACs; alone on ONNX Runtime (1 thread) "
                      f"{per_row['1']:.2f} ms per row at batch 1, {per_row['32']:.2f} at batch "
                      f"32 ({per_row['1'] / per_row['32']:.1f}x); {v['handoff_bytes']:,} B "
                      f"hand-off, {v['request_bytes']:,} B per request")
        console.print(f"ViT tail, dynamic batching / batch size 1 throughput: "
                      f"{v['batched_over_batch1_throughput']:.2f}x")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--ray-requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--time-limit", type=float, default=20.0,
                        help="seconds per mode after which no new request starts")
    parser.add_argument("--vit-requests", type=int, default=1500,
                        help="requests per mode on the ViT tail (0: skip it)")
    parser.add_argument("--vit-time-limit", type=float, default=10.0,
                        help="seconds per ViT mode after which no new request starts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eedge-serve-bench-") as tmp:
        start = time.perf_counter()
        results = serve_bench(Path(tmp), args.requests, args.clients, args.ray_requests,
                              time_limit_s=args.time_limit, vit_requests=args.vit_requests,
                              vit_time_limit_s=args.vit_time_limit)
        results["bench_seconds"] = round(time.perf_counter() - start, 1)
    console = Console(width=120)
    show_serve_bench(results, console)
    console.print(f"{results['bench_seconds']} s")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
