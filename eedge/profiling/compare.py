"""`eedge profile --runtime onnx,tvm,int8`: the same stages on several runtimes, one run.

On the host the runtimes take turns in rounds (ORT, TVM, int8, ORT, ...), so a
change of load on the machine hits each of them alike; every round times all
stages in cascade order on the same sample. On a Linux device over SSH, ONNX
Runtime and int8 LiteRT (XNNPACK) are timed by eedge's runner on the device and
TVM over TVM RPC (the target's ``tvm_rpc``). The fastest runtime per stage is
named by its p50.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eedge.errors import InputDataError, TargetError
from eedge.ir.bundle import Bundle
from eedge.profiling.drivers import Progress, StageProfiles, stage_profiles
from eedge.runtime.stage_runners import RUNTIMES
from eedge.targets import Target

COMPARABLE = ("onnx", "tvm", "int8", "tflite")


def parse_runtimes(text: str | None) -> list[str]:
    """``onnx,tvm,int8`` -> names, each a known runtime, none twice."""
    if text is None:
        return []
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in RUNTIMES]
    if not names or unknown:
        raise InputDataError(f"unknown runtime {', '.join(unknown) or repr(text)}; give one or "
                             f"more of {', '.join(RUNTIMES)}, comma-separated")
    if len(set(names)) != len(names):
        raise InputDataError(f"--runtime names a runtime twice: {text}")
    return names


def _host(bundle: Bundle, x: np.ndarray, runtimes: list[str], threads: int, warmup: int,
          repeats: int, say: Progress, rounds: int) -> dict[str, StageProfiles]:
    from eedge.profiling.cascade_timing import time_cascade
    from eedge.profiling.drivers import host_environment
    from eedge.runtime.cascade import Cascade

    cascades = {name: Cascade(bundle, threads=threads, runtime=name) for name in runtimes}
    times: dict[str, list[list[float]]] = {n: [[] for _ in bundle.stages] for n in runtimes}
    for r in range(rounds):
        say(f"round {r + 1}/{rounds}: {', '.join(runtimes)} in turn")
        share = repeats // rounds + (1 if r < repeats % rounds else 0)
        for name, cascade in cascades.items():
            timing = time_cascade(cascade, x[:1], rounds=1, stage_passes=max(share, 1),
                                  warmup=warmup if r == 0 else max(1, warmup // 4),
                                  stream=False)
            for pooled, new in zip(times[name], timing.stage_ms):
                pooled.extend(new)
    out = {}
    for name, cascade in cascades.items():
        env = host_environment(name, threads)
        if hasattr(cascade.runners[0], "xnnpack"):
            env["xnnpack"] = bool(cascade.runners[0].xnnpack)
        out[name] = StageProfiles("host", "host", "ms", name,
                                  stage_profiles(cascade.stages, times[name]), env)
    return out


def _device(bundle: Bundle, target: Target, x: np.ndarray, runtimes: list[str], threads: int,
            warmup: int, repeats: int, say: Progress) -> dict[str, StageProfiles]:
    from eedge.profiling.ssh import profile_ssh_runtimes

    on_device = tuple(n for n in runtimes if n != "tvm")
    out = profile_ssh_runtimes(bundle, target, x, on_device, threads, warmup, repeats,
                               say) if on_device else {}
    if "tvm" in runtimes:
        from eedge.profiling.tvm_rpc import profile_tvm_rpc

        if target.get("tvm_rpc") is None:
            raise TargetError(f"{target.name} names no TVM RPC server: add tvm_rpc: "
                              "{host: ..., port: 9090} to its YAML (or leave tvm out of "
                              "--runtime)")
        out["tvm"] = profile_tvm_rpc(bundle, target, x, max(repeats // 20, 5), say)
    return {n: out[n] for n in runtimes}


def compare_runtimes(bundle: Bundle, target: Target, x: np.ndarray, runtimes: list[str],
                     threads: int, warmup: int, repeats: int, say: Progress,
                     rounds: int = 3) -> dict[str, Any]:
    """Per-stage p50 and mean of every runtime, and the fastest runtime per stage."""
    odd = [n for n in runtimes if n not in COMPARABLE]
    if odd:
        raise InputDataError(f"--runtime {','.join(runtimes)}: {', '.join(odd)} is a reference "
                             f"engine, not a speed choice; compare {', '.join(COMPARABLE)}")
    if target.kind == "host":
        profiles = _host(bundle, x, runtimes, threads, warmup, repeats, say, rounds)
    elif target.kind == "linux-ssh":
        profiles = _device(bundle, target, x, runtimes, threads, warmup, repeats, say)
    else:
        raise TargetError(f"comparing runtimes needs a host or linux-ssh target; {target.name} "
                          f"is {target.kind} (it runs eedge's C runtime)")
    stages = []
    for k, stage in enumerate(bundle.stages):
        p50 = {n: profiles[n].stages[k].stats.get("p50", profiles[n].stages[k].value)
               for n in runtimes}
        mean = {n: profiles[n].stages[k].stats.get("mean", profiles[n].stages[k].value)
                for n in runtimes}
        stages.append({"index": stage["index"], "name": stage["name"], "macs": stage["macs"],
                       "p50_ms": p50, "mean_ms": mean, "fastest": min(p50, key=p50.get)})
    totals = {n: float(sum(s["p50_ms"][n] for s in stages)) for n in runtimes}
    best = float(sum(min(s["p50_ms"].values()) for s in stages))
    return {"target": target.name, "kind": target.kind, "unit": "ms", "runtimes": runtimes,
            "stages": stages, "total_p50_ms": totals, "fastest_per_stage_total_p50_ms": best,
            "fastest_overall": min(totals, key=totals.get),
            "environment": {n: profiles[n].environment for n in runtimes},
            "runs": {n: profiles[n].stages[0].stats.get("runs") for n in runtimes}}
