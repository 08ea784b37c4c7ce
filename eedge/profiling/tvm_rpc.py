"""Per-stage latency of TVM-compiled stages on a device, over TVM RPC.

The device runs TVM's RPC server (`python -m tvm.exec.rpc_server --host
0.0.0.0 --port 9090`); the target YAML names it under ``tvm_rpc``. Each
stage's library (built by `eedge compile --backend tvm --target <library>`)
is uploaded, loaded into a Relax VM on the device, fed the stage's real
inputs for one sample (hand-offs computed locally with ONNX Runtime) and
timed with TVM's own ``time_evaluator``, which measures on the device and so
excludes the network round trip.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eedge.errors import BundleError, TargetError
from eedge.ir.bundle import Bundle
from eedge.profiling.drivers import Progress, StageProfile, StageProfiles, stage_feeds
from eedge.profiling.stats import summarize
from eedge.runtime.cascade import Cascade
from eedge.targets import Target


def connect_rpc(host: str, port: int, timeout: float = 10.0) -> Any:
    from eedge.backends.tvm_compiler import import_tvm

    tvm = import_tvm()
    try:
        return tvm.rpc.connect(host, port, session_timeout=0), tvm
    except Exception as exc:  # TVM wraps socket errors in its own types
        raise TargetError(f"cannot reach the TVM RPC server at {host}:{port} "
                          f"({str(exc).splitlines()[0][:120]}); start it on the device with "
                          f"`python -m tvm.exec.rpc_server --host 0.0.0.0 --port {port}`") \
            from None


def profile_tvm_rpc(bundle: Bundle, target: Target, x: np.ndarray, repeats: int,
                    say: Progress) -> StageProfiles:
    rpc = target.get("tvm_rpc")
    library = rpc.get("library", "rpi4")
    fmt = f"tvm_{library}"
    if any(fmt not in s["files"] for s in bundle.stages):
        raise BundleError(f"{bundle.path} has no TVM libraries for {library}: run `eedge "
                          f"compile {bundle.path} --backend tvm --target {library}`")
    feeds = stage_feeds(Cascade(bundle, runtime="onnx"), x)
    say(f"connecting to the TVM RPC server at {rpc['host']}:{rpc['port']}")
    remote, tvm = connect_rpc(rpc["host"], int(rpc["port"]))
    device = remote.cpu()
    number = int(rpc.get("number", 20))
    stages = []
    for stage, inputs in zip(bundle.stages, feeds):
        name = stage["files"][fmt]
        say(f"uploading and timing {name}")
        remote.upload(str(bundle.file(name)))
        vm = tvm.relax.VirtualMachine(remote.load_module(name), device)
        args = [tvm.runtime.tensor(np.ascontiguousarray(a), device) for a in inputs]
        timer = vm.time_evaluator("main", device, number=number, repeat=repeats)
        times = [float(t) * 1e3 for t in timer(*args).results]  # mean of `number` runs each
        stats = summarize(times)
        stages.append(StageProfile(stage["index"], stage["name"], stage["macs"], stats["p50"],
                                   stats))
    env = {"tvm": tvm.__version__, "library": library, "rpc": f"{rpc['host']}:{rpc['port']}",
           "timing": f"TVM time_evaluator on the device, {repeats} repeats of {number} runs"}
    return StageProfiles(target.name, target.kind, "ms", "tvm", stages, env)
