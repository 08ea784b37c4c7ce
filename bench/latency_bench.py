"""Predicted vs measured cascade latency, and the cascade's own overhead, for `make bench`.

For the digits demo and the residual 96x96 model, on ONNX Runtime and int8
LiteRT (XNNPACK), on the host and through the loopback SSH target (a local
sshd standing in for a Pi, as in the tests): `eedge profile`'s end-to-end
measurement (eedge.profiling.cascade_timing) in 7 interleaved rounds, each
round timing the stages, the cascade's overhead per exit path and the data
in stream order. The prediction (stage pass samples + overhead per exit
path, weighted by exit rates) is compared with the stream, pooled and round
by round; the median of the per-round ratios is the figure that a burst of
load from other processes on the machine cannot move much. The load average
is recorded next to the figures. EEDGE_ROUNDS sets the number of rounds.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROUNDS = int(os.environ.get("EEDGE_ROUNDS", "7"))
RUNTIMES = ("onnx", "int8")
BATCH = 8


def residual96(workdir: Path) -> tuple[Path, np.ndarray]:
    """The residual test architecture at 96x96 with int8 stages; thresholds set so the
    samples spread over the three exits (an untrained model is equally unsure of all)."""
    from zoo import build_torch

    from eedge.export import export_torch
    from eedge.ir.bundle import load_bundle
    from eedge.policies.apply import write_thresholds
    from eedge.policies.criteria import softmax
    from eedge.runtime.cascade import Cascade

    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 3, 96, 96)).astype(np.float32)
    out = workdir / "residual96-int8"
    export_torch(build_torch("residual"), x[:2], out, name="residual96", int8=True,
                 calibration=x[:64], force=True)
    bundle = load_bundle(out)
    logits = Cascade(bundle, runtime="onnx").run_all_exits(x)
    scores = [softmax(lg).max(axis=-1) for lg in logits]
    # about 40% leave at exit 0 and 30% at exit 1
    thresholds = [float(np.quantile(scores[0], 0.6)), float(np.quantile(scores[1], 0.5)), None]
    write_thresholds(bundle, thresholds, "bench: spread the exits")
    return out, x


def _ratios(timing: dict[str, Any], exit_stages: list[int]) -> dict[str, Any]:
    from eedge.profiling.cascade_timing import CascadeTiming
    from eedge.profiling.prediction import end_to_end

    pooled = end_to_end(timing, exit_stages)
    full = CascadeTiming.from_json(timing)
    per_round = [end_to_end(full.round(r).to_json(), exit_stages)["batch1"]["ratio"]
                 for r in range(full.rounds)]
    pooled["round_median_ratio"] = {k: float(np.median([r[k] for r in per_round]))
                                    for k in per_round[0]}
    return pooled


def _measure(bundle_dir: Path, x: np.ndarray, target: Any, repeats: int) -> dict[str, Any]:
    from eedge.ir.bundle import load_bundle
    from eedge.profiling.drivers import profile_host
    from eedge.profiling.ssh import profile_ssh_runtimes

    bundle = load_bundle(bundle_dir)
    exit_stages = [e["stage"] for e in bundle.exits]
    quiet = lambda _m: None  # noqa: E731
    out: dict[str, Any] = {}
    load_before = os.getloadavg()[0]
    if target is None:
        for runtime in RUNTIMES:
            profile = profile_host(bundle, x, runtime, 1, 20, repeats, quiet, stream=True,
                                   batch=BATCH, rounds=ROUNDS)
            out[runtime] = _ratios(profile.cascade, exit_stages)
            out[runtime]["environment"] = profile.environment
    else:
        profiles = profile_ssh_runtimes(bundle, target, x, RUNTIMES, 1, 20, repeats, quiet,
                                        stream=True, batch=BATCH, rounds=ROUNDS)
        for runtime, profile in profiles.items():
            out[runtime] = _ratios(profile.cascade, exit_stages)
            out[runtime]["environment"] = profile.environment
    out["load_average_1min"] = [load_before, os.getloadavg()[0]]
    return out


def ort_call_paths(bundle_dir: Path, x: np.ndarray, calls: int = 2000,
                   rounds: int = 5) -> list[dict[str, float]]:
    """Per demo stage at batch 1: ``session.run``, ``run_with_ort_values`` and the runner's
    I/O binding (``run_borrowed``; ``run`` adds the output copies), in alternating rounds;
    the median over rounds of each round's mean per call, in us."""
    import time

    import onnxruntime as ort

    from eedge.ir.bundle import load_bundle
    from eedge.profiling.cascade_timing import stage_io
    from eedge.runtime.cascade import Cascade

    cascade = Cascade(load_bundle(bundle_dir), runtime="onnx")
    feeds, _ = stage_io(cascade, x[:1])
    out = []
    for runner, inputs in zip(cascade.runners, feeds):
        feed = dict(zip(runner.input_names, inputs))
        values = {n: ort.OrtValue.ortvalue_from_numpy(a) for n, a in feed.items()}
        paths = {"session_run": lambda: runner.session.run(None, feed),
                 "run_with_ort_values": lambda: runner.session.run_with_ort_values(
                     runner.output_names, values),
                 "iobinding_borrowed": lambda: runner.run_borrowed(inputs),
                 "iobinding_run": lambda: runner.run(inputs)}
        times: dict[str, list[float]] = {k: [] for k in paths}
        for _ in range(rounds):
            for name, call in paths.items():
                for _ in range(calls // 10):
                    call()
                start = time.perf_counter()
                for _ in range(calls):
                    call()
                times[name].append((time.perf_counter() - start) / calls * 1e6)
        out.append({k: float(np.median(v)) for k, v in times.items()})
    return out


def latency_bench(demo_bundle: Path, demo_data: Path, workdir: Path) -> dict[str, Any]:
    """Host and loopback-SSH figures for the demo and residual 96x96, ORT and int8."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "profiling"))
    from sshd import fake_pi

    from eedge.targets import load_target

    workdir.mkdir(parents=True, exist_ok=True)
    with np.load(demo_data) as archive:
        demo_x = archive["x"]
    # stage passes and overhead repeats cover about as many inferences as the stream
    # (7 rounds x 360 demo samples, 7 x 96 residual ones), so both see a machine's
    # preemptions in the same proportion: under load they make the mean
    models = {"digits-demo": (demo_bundle, demo_x, 2500),
              "residual96": (*residual96(workdir), 700)}
    results: dict[str, Any] = {"rounds": ROUNDS, "batch": BATCH, "cpus": os.cpu_count(),
                               "host": {}, "ssh-loopback": {},
                               "ort_call_us": ort_call_paths(demo_bundle, demo_x)}
    for name, (bundle, x, repeats) in models.items():
        results["host"][name] = _measure(bundle, x, None, repeats)
    pi_dir = workdir / "pi"
    with fake_pi(pi_dir) as pi:
        target = load_target(pi.target_yaml(workdir / "pi.yaml"))
        for name, (bundle, x, repeats) in models.items():
            results["ssh-loopback"][name] = _measure(bundle, x, target, repeats)
    shutil.rmtree(pi_dir, ignore_errors=True)
    return results


def show_latency(results: dict[str, Any], console: Console) -> None:
    table = Table(title=f"cascade latency per sample, predicted / measured (batch 1, stream "
                        f"order, {results['rounds']} interleaved rounds; pooled and median of "
                        f"rounds; batch {results['batch']} pooled)")
    for column in ("target", "model", "runtime", "measured mean ms", "p50 ms",
                   "mean ratio", "p50 ratio", "p90", "p99", "rounds: mean", "rounds: p50",
                   f"b{results['batch']} mean", f"b{results['batch']} p50",
                   "overhead us/stage", "load"):
        table.add_column(column, justify="right")
    for target in ("host", "ssh-loopback"):
        for model, entry in results[target].items():
            for runtime in RUNTIMES:
                e = entry[runtime]
                one = e["batch1"]
                batch = e.get(f"batch{results['batch']}", {}).get("ratio", {})
                table.add_row(target, model, runtime, f"{one['measured']['mean']:.4f}",
                              f"{one['measured']['p50']:.4f}", f"{one['ratio']['mean']:.3f}",
                              f"{one['ratio']['p50']:.3f}", f"{one['ratio']['p90']:.3f}",
                              f"{one['ratio']['p99']:.3f}",
                              f"{e['round_median_ratio']['mean']:.3f}",
                              f"{e['round_median_ratio']['p50']:.3f}",
                              f"{batch.get('mean', float('nan')):.3f}",
                              f"{batch.get('p50', float('nan')):.3f}",
                              f"{e['overhead']['overhead_per_stage_us']:.1f}",
                              "{:.1f}-{:.1f}".format(*entry["load_average_1min"]))
    console.print(table)
    calls = Table(title="ONNX Runtime call per demo stage at batch 1 (us, median of rounds)")
    for column in ("stage", "session.run", "run_with_ort_values", "I/O binding (borrowed)",
                   "I/O binding + output copies", "binding / session.run"):
        calls.add_column(column, justify="right")
    for k, c in enumerate(results["ort_call_us"]):
        calls.add_row(f"stage{k}", f"{c['session_run']:.2f}", f"{c['run_with_ort_values']:.2f}",
                      f"{c['iobinding_borrowed']:.2f}", f"{c['iobinding_run']:.2f}",
                      f"{c['iobinding_borrowed'] / c['session_run']:.2f}")
    console.print(calls)
    console.print(f"overhead = Cascade.infer beyond its stages (input checks, exit decisions, "
                  f"routing), per stage run at batch 1; load = 1-min load average before-after "
                  f"on {results['cpus']} CPUs")


if __name__ == "__main__":
    # this section alone (make bench runs it with the rest): python bench/latency_bench.py [OUT.json]
    import json
    import tempfile

    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root / "tests"), str(root / "bench")]
    from eedge.examples.demo import run_demo

    with tempfile.TemporaryDirectory(prefix="eedge-latency-bench-") as tmp:
        demo = Path(tmp) / "demo"
        run_demo(demo, epochs=30, firmware_target=None)  # as run_bench.zoo_bundles does
        latency = latency_bench(demo / "bundle", demo / "test.npz", Path(tmp) / "latency")
    show_latency(latency, Console(width=200))
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(json.dumps(latency, indent=2) + "\n")
