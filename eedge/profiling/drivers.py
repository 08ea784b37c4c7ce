"""Measure every stage of a bundle on a target: host, QEMU microcontroller, or SSH device.

Each driver returns per-stage figures in its natural unit: milliseconds for
Linux-class devices (ONNX Runtime or LiteRT, warm-up then repeats, batch 1,
pinned threads), guest instructions for an emulated Cortex-M (exact and
repeatable under ``-icount shift=0``, with cycle and millisecond estimates
from the target's clock, labelled as estimates).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eedge.errors import TargetError
from eedge.ir.bundle import Bundle
from eedge.profiling.stats import summarize
from eedge.progress import Tick, quiet_tick
from eedge.runtime.cascade import Cascade
from eedge.targets import Target

Progress = Callable[[str], None]


@dataclass
class StageProfile:
    index: int
    name: str
    macs: int
    value: float                       # the headline figure (mean ms, or instructions)
    stats: dict[str, float] = field(default_factory=dict)
    estimates: dict[str, float] = field(default_factory=dict)


@dataclass
class StageProfiles:
    target: str
    kind: str
    unit: str                          # "ms" or "instructions"
    runtime: str
    stages: list[StageProfile]
    environment: dict[str, Any] = field(default_factory=dict)
    # the cascade run end to end next to its stages (CascadeTiming.to_json()), if data given
    cascade: dict[str, Any] | None = None


def stage_profiles(stages: list[dict[str, Any]], times_ms: list[list[float]]
                   ) -> list[StageProfile]:
    """Per-stage summaries of timed passes, the p50 as the headline figure."""
    out = []
    for stage, stage_times in zip(stages, times_ms):
        stats = summarize(stage_times)
        out.append(StageProfile(stage["index"], stage["name"], stage["macs"], stats["p50"],
                                stats))
    return out


def random_sample(bundle: Bundle) -> np.ndarray:
    """One input for timing when the user gives no data (values do not change cost)."""
    spec = bundle.manifest["inputs"][0]
    shape = [1] + [int(d) for d in spec["shape"][1:]]
    rng = np.random.default_rng(0)
    if spec["dtype"] == "int8":
        return rng.integers(-128, 128, shape, dtype=np.int8)
    return rng.standard_normal(shape).astype(spec["dtype"])


def stage_feeds(cascade: Cascade, x: np.ndarray) -> list[list[np.ndarray]]:
    """Inputs of every stage for one sample (computed by running the stages once)."""
    store = cascade.stage_inputs(x[:1])
    feeds = []
    for stage, io in zip(cascade.stages, cascade.io):
        feeds.append([store[t["name"]] for t in io["inputs"]])
        outs = cascade.runners[stage["index"]].run(feeds[-1])
        store.update({t["name"]: v for t, v in zip(io["outputs"], outs)})
    return feeds


def profile_host(bundle: Bundle, x: np.ndarray, runtime: str | None, threads: int,
                 warmup: int, repeats: int, say: Progress,
                 tick: Tick | None = None, stream: bool = False, batch: int = 1,
                 rounds: int = 5) -> StageProfiles:
    """Time every stage; ``tick`` counts passes (warm-up and timed) over all stages.

    With ``stream``, ``x`` is the user's data: the cascade also runs end to end on
    it (batch 1 and ``batch``) and its overhead per exit path is measured, all
    interleaved with the stage passes (see :mod:`eedge.profiling.cascade_timing`).
    """
    tick = tick or quiet_tick
    cascade = Cascade(bundle, threads=threads, runtime=runtime)
    env = host_environment(cascade.runtime, threads)
    if hasattr(cascade.runners[0], "xnnpack"):
        env["xnnpack"] = bool(cascade.runners[0].xnnpack)
    if stream:
        from eedge.profiling.cascade_timing import time_cascade

        timing = time_cascade(cascade, x, batch=batch, rounds=rounds, stage_passes=repeats,
                              overhead_repeats=repeats, warmup=warmup, say=say, tick=tick)
        return StageProfiles("host", "host", "ms", cascade.runtime,
                             stage_profiles(cascade.stages, timing.stage_ms), env,
                             timing.to_json())
    feeds = stage_feeds(cascade, x)
    # each stage called as Cascade.infer calls it (ORT: outputs in the bound buffers)
    runners = [getattr(r, "run_borrowed", r.run) for r in
               (cascade.runners[s["index"]] for s in cascade.stages)]
    # Stages are timed in cascade order, one pass after another, so each sees the caches
    # a real inference leaves (timing one stage in a tight loop flatters small stages).
    say(f"timing {len(runners)} stages in cascade order ({warmup} warm-up + {repeats} "
        "passes)")
    passes = warmup + repeats
    tick(0, passes)
    for done in range(warmup):
        for run, inputs in zip(runners, feeds):
            run(inputs)
        tick(done + 1, passes)
    times: list[list[float]] = [[] for _ in runners]
    for done in range(repeats):
        for k, (run, inputs) in enumerate(zip(runners, feeds)):
            start = time.perf_counter()
            run(inputs)
            times[k].append((time.perf_counter() - start) * 1e3)
        tick(warmup + done + 1, passes)
    return StageProfiles("host", "host", "ms", cascade.runtime,
                         stage_profiles(cascade.stages, times), env)


def host_environment(runtime: str, threads: int) -> dict[str, Any]:
    """Versions and settings a host timing depends on, printed next to the figures."""
    from eedge.runtime import cascade_one

    env: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                           "threads": threads, "runtime": runtime,
                           "batch1_path": "python (the C helper is not built)"
                           if cascade_one.compiled is None else "compiled"}
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return env


def profile_qemu(bundle: Bundle, target: Target, x: np.ndarray, say: Progress,
                 dsp: bool | None = None) -> StageProfiles:
    """Instructions per stage in QEMU (every stage run), with cycle/ms estimates."""
    from eedge.codegen.device_run import run_on_target
    from eedge.codegen.model_source import load_codegen_model

    model = load_codegen_model(bundle.path)
    model.thresholds = [None] * len(model.thresholds)  # time every stage
    run = run_on_target(model, target, x[:1], dsp=dsp, say=say)
    per_tick = run.instructions_per_tick or 1
    cpi = float(target.get("cycles_per_instruction", 1.0))
    clock = float(target.get("clock_hz"))
    stages = []
    for stage, ticks in zip(bundle.stages, run.run.samples[0].stage_ticks):
        instructions = float(ticks * per_tick)
        cycles = instructions * cpi
        stages.append(StageProfile(stage["index"], stage["name"], stage["macs"], instructions,
                                   {"instructions": instructions, "ticks": float(ticks)},
                                   {"cycles": cycles, "ms": cycles / clock * 1e3}))
    summary = run.summary()
    env = {"qemu_machine": target.get("qemu")["machine"], "icount": "shift=0",
           "instructions_per_tick": per_tick, "dsp": run.project.dsp,
           "estimate_basis": f"{cpi} cycles per instruction at {clock / 1e6:g} MHz (estimate)",
           "flash_bytes": summary["flash_bytes"], "arena_bytes": summary["arena_bytes"],
           "stack_used_bytes": summary["stack_used_bytes"]}
    return StageProfiles(target.name, target.kind, "instructions", "eedge C runtime", stages,
                         env)


def profile_target(bundle: Bundle, target: Target, x: np.ndarray, runtime: str | None,
                   threads: int, warmup: int, repeats: int,
                   say: Progress, tick: Tick | None = None,
                   dsp: bool | None = None, stream: bool = False,
                   batch: int = 1) -> StageProfiles:
    """Per-stage timings on ``target``; ``dsp`` picks the C kernels of MCU builds (None:
    the target's default, False: the portable path). ``stream`` (host and SSH
    devices): ``x`` is the user's data and the cascade also runs end to end on it."""
    if target.kind == "host":
        return profile_host(bundle, x, runtime, threads, warmup, repeats, say, tick,
                            stream=stream, batch=batch)
    if target.kind == "mcu-qemu":
        return profile_qemu(bundle, target, x, say, dsp)
    if target.kind == "linux-ssh" and runtime == "tvm":
        from eedge.profiling.tvm_rpc import profile_tvm_rpc

        if target.get("tvm_rpc") is None:
            raise TargetError(f"{target.name} names no TVM RPC server: add tvm_rpc: "
                              "{host: ..., port: 9090} to its YAML")
        return profile_tvm_rpc(bundle, target, x, max(repeats // 20, 5), say)
    if target.kind == "linux-ssh":
        from eedge.profiling.ssh import profile_ssh

        return profile_ssh(bundle, target, x, runtime, threads, warmup, repeats, say,
                           stream=stream, batch=batch)
    if target.kind == "mcu-serial":
        from eedge.profiling.serial_driver import profile_serial

        return profile_serial(bundle, target, x, say, dsp=dsp)
    raise TargetError(f"profiling {target.kind} targets ({target.name}) is not supported")
