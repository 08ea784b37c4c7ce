"""Per-operator profiles of the generated C runtime (``eedge profile --per-op``).

The firmware's stage timing says where a stage's cost goes only as a whole. A per-op
build (``generate_project(..., profile_ops=True)``) wraps every kernel call of the
stage functions with two reads of the platform's tick counter and adds the difference
to one counter per call site; after every ``eedge_infer`` the firmware prints the sums
on its console as ``P <k> <ticks> <runs>`` lines (the same text protocol as the ``O``,
``D`` and ``STACK`` lines). Off by default: without the flag the generated sources are
byte for byte what they were, so production firmware pays nothing.

A serial board's build (``EEDGE_SERIAL_FRAMES``) sends the sums as CRC-checked OP frames
(type 4) beside the stage profiler's frames instead, since its console text goes to SWO.

Units: under QEMU's ``-icount shift=0`` the mps2-an386 SysTick counts one tick per 40
instructions (``instructions_per_tick``), so an op is resolved to 40 instructions plus
the cost of the two reads; reported as instructions. The host build's tick is
``clock()`` (1 us); reported as ticks. Boards report their timer's cycles.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import TargetError, ToolchainError
from eedge.progress import Say, quiet_say
from eedge.targets import Target

_DUMP = """static uint32_t eedge_prof[{n}], eedge_prof_n[{n}];
#if defined(EEDGE_SERIAL_FRAMES)
/* per-op profile (eedge profile --per-op) on a serial board: one OP frame (type 4:
 * call site, ticks, runs as u32 little-endian; CRC-16/CCITT) per kernel call site */
static void eedge_prof_dump(void) {{
    uint8_t f[19];
    int32_t k, i, bit;
    for (k = 0; k < {n}; ++k) {{
        const uint32_t v[3] = {{(uint32_t)k, eedge_prof[k], eedge_prof_n[k]}};
        uint16_t crc = 0xFFFFu;
        f[0] = 0xA5; f[1] = 0x5A; f[2] = 4; f[3] = 12; f[4] = 0;
        for (i = 0; i < 12; ++i) {{
            f[5 + i] = (uint8_t)(v[i / 4] >> (8 * (i % 4)));
        }}
        for (i = 2; i < 17; ++i) {{
            crc ^= (uint16_t)(f[i] << 8);
            for (bit = 0; bit < 8; ++bit) {{
                crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
            }}
        }}
        f[17] = (uint8_t)crc;
        f[18] = (uint8_t)(crc >> 8);
        eedge_platform_serial_write(f, 19);
    }}
}}
#else
/* per-op profile (eedge profile --per-op): "P <op> <ticks> <runs>" per kernel call site */
static void eedge_prof_dump(void) {{
    char buf[48];
    int32_t k, j;
    for (k = 0; k < {n}; ++k) {{
        uint32_t v[3];
        char *p = buf;
        v[0] = (uint32_t)k;
        v[1] = eedge_prof[k];
        v[2] = eedge_prof_n[k];
        *p++ = 'P';
        for (j = 0; j < 3; ++j) {{
            char d[12];
            int32_t m = 0;
            *p++ = ' ';
            do {{ d[m++] = (char)('0' + v[j] % 10u); v[j] /= 10u; }} while (v[j]);
            while (m) *p++ = d[--m];
        }}
        *p++ = '\\n';
        *p = 0;
        eedge_platform_print(buf);
    }}
}}
#endif

"""
_ARENA_ANCHOR = "#define T(offset)"
_RETURN_ANCHOR = "    return result->exit_index;\n}"
_P_LINE = re.compile(r"^P (\d+) (\d+) (\d+)$")
_D_LINE = re.compile(r"^D (-?\d+(?: -?\d+)*)$")


@dataclass
class OpLabel:
    """One timed kernel call site: its stage, graph node, op type, name and MACs."""

    stage: int
    node: int
    op: str
    name: str
    macs: int


def wrap_statement(statement: str, k: int) -> str:
    """A kernel call timed into counter ``k`` (a block: the call's own scope is unchanged)."""
    return (f"{{ const uint32_t eedge_p0 = eedge_platform_ticks(); {statement}; "
            f"eedge_prof[{k}] += eedge_platform_ticks() - eedge_p0; ++eedge_prof_n[{k}]; }}")


def time_call(statement: str, k: int) -> str:
    """A call whose ticks add to counter ``k`` without counting a run: a banded conv or ADD
    (eedge.codegen.banded) is called once per band and counts one run after the last."""
    return (f"{{ const uint32_t eedge_p0 = eedge_platform_ticks(); {statement}; "
            f"eedge_prof[{k}] += eedge_platform_ticks() - eedge_p0; }}")


def count_run(k: int) -> str:
    return f"++eedge_prof_n[{k}];"


def add_dump(source: str, count: int) -> str:
    """model.c with the counters, the dump function, and a dump after every inference."""
    if source.count(_ARENA_ANCHOR) != 1 or source.count(_RETURN_ANCHOR) != 1:
        raise ToolchainError("model.c template changed: the per-op profiler's anchors "
                             "(#define T, the end of eedge_infer) are not unique")
    source = source.replace(_ARENA_ANCHOR, _DUMP.format(n=max(count, 1)) + _ARENA_ANCHOR)
    return source.replace(_RETURN_ANCHOR, "    eedge_prof_dump();\n" + _RETURN_ANCHOR)


def parse_console(console: str, count: int) -> tuple[np.ndarray, np.ndarray,
                                                       list[list[int]]]:
    """(ticks, runs) per call site from the last dump, and every ``D`` line's stage ticks."""
    ticks, runs = np.zeros(count), np.zeros(count)
    stage_ticks: list[list[int]] = []
    for line in console.splitlines():
        line = line.strip()
        if (m := _P_LINE.match(line)) and int(m.group(1)) < count:
            ticks[int(m.group(1))], runs[int(m.group(1))] = int(m.group(2)), int(m.group(3))
        elif (m := _D_LINE.match(line)):
            values = [int(v) for v in m.group(1).split()]
            stage_ticks.append(values[7:7 + values[6]])
    return ticks, runs, stage_ticks


@dataclass
class OpProfile:
    """Mean cost of every kernel call (per run of its stage) and per-stage totals."""

    target: str
    unit: str                    # "instructions" (QEMU) or "ticks" (host clock())
    tick_note: str
    labels: list[OpLabel]
    values: list[float]          # mean per run, in ``unit``
    runs: list[int]
    stage_totals: dict[int, float] = field(default_factory=dict)  # measured, instrumented
    environment: dict[str, Any] = field(default_factory=dict)


def check_target(target: Target) -> None:
    """Per-op profiles run on the host build, in QEMU or on a serial board."""
    if target.kind not in ("host", "mcu-qemu", "mcu-serial"):
        raise TargetError(f"--per-op runs on the host build, in QEMU or on a serial board; "
                          f"{target.name} is {target.kind}")


def profile_ops(source: Path | Any, target: Target, x: np.ndarray, repeats: int = 1,
                dsp: bool | None = None, optimize: str = "O2",
                say: Say | None = None, flasher: Any = None) -> OpProfile:
    """Build the per-op firmware for ``target`` (host, QEMU or a serial board), run it,
    return the sums. A serial board (``mcu-serial``) is flashed with ``flasher`` (default:
    its flash tool) and sends the sums as OP frames over its serial port.

    ``x`` holds the inputs (float or int8, the model's layout); each runs ``repeats`` times
    (the host's 1 us clock needs many runs to resolve sub-microsecond ops; QEMU's
    instruction counts are exact, so one run is enough). Every stage runs (no exits).
    """
    from eedge.codegen.inputs import device_samples
    from eedge.codegen.model_source import CodegenModel, load_codegen_model
    from eedge.codegen.project import generate_project
    from eedge.codegen.toolchain import build, qemu_command

    say = say or quiet_say
    check_target(target)
    model = source if isinstance(source, CodegenModel) else load_codegen_model(Path(source))
    model.thresholds = [None] * len(model.thresholds)  # time every stage
    info = model.graph.tensors[model.input]
    sample = device_samples(x, tuple(int(d) for d in info.shape),
                            model.input_quant.scale[0], model.input_quant.zero_point[0],
                            model.input_layout)
    samples = np.repeat(sample, max(repeats, 1), axis=0)
    host, serial = target.kind == "host", target.kind == "mcu-serial"
    with tempfile.TemporaryDirectory(prefix="eedge-per-op-") as tmp:
        out = Path(tmp) / "project"
        say(f"generating the per-op C project for {target.name}")
        project = generate_project(model, target, out, None if host else samples, optimize,
                                   dsp, serial_frames=True if serial else None,
                                   profile_ops=True)
        labels = [OpLabel(**d) for d in project.op_labels]
        say("compiling with " + ("gcc" if host else "arm-none-eabi-gcc"))
        binary = build(project).binary
        env: dict[str, Any] = {"dsp": project.dsp, "optimize": optimize, "runs": len(samples)}
        if serial:
            return _serial_profile(target, binary, labels, flasher, say, env)
        if host:
            say(f"running {len(samples)} inferences on the host")
            proc = subprocess.run([str(binary)], input=samples.astype(np.int8).tobytes(),
                                  capture_output=True, timeout=600)
            console = proc.stderr.decode(errors="replace")
        else:
            say(f"running in QEMU ({target.get('qemu')['machine']})")
            proc = subprocess.run(qemu_command(target, binary), capture_output=True,
                                  timeout=1800, stdin=subprocess.DEVNULL,
                                  env={**os.environ, "QEMU_AUDIO_DRV": "none"})
            console = (proc.stdout + proc.stderr).decode(errors="replace")
    if proc.returncode != 0:
        raise ToolchainError(f"the per-op firmware exited with {proc.returncode}: "
                             f"{console.strip()[-300:]}")
    ticks, runs, stage_ticks = parse_console(console, len(labels))
    if not runs.any():
        raise ToolchainError(f"the firmware printed no per-op profile: {console[-300:]}")
    per_tick = 1.0 if host else float(target.get("qemu")["instructions_per_tick"])
    values = np.where(runs > 0, ticks / np.maximum(runs, 1) * per_tick, 0.0)
    totals: dict[int, float] = {}
    if stage_ticks:
        for s in range(len(model.stages)):
            seen = [t[s] for t in stage_ticks if s < len(t)]
            if seen:
                totals[s] = float(np.mean(seen)) * per_tick
    if host:
        unit, note = "ticks", "host clock() ticks (1 us each), mean per run"
    else:
        unit = "instructions"
        note = (f"QEMU -icount shift=0: SysTick ticks x {per_tick:g} instructions, exact to "
                f"one tick ({per_tick:g} instructions) per op")
        env["qemu_machine"] = target.get("qemu")["machine"]
    return OpProfile(target.name, unit, note, labels, values.tolist(),
                     [int(r) for r in runs], totals, env)


def _serial_profile(target: Target, elf: Path, labels: list[OpLabel], flasher: Any,
                    say: Say, env: dict[str, Any]) -> OpProfile:
    """Flash, read the framed sums (the serial profiler's port handling), make the profile."""
    from eedge.profiling.serial_driver import flash_and_read, flash_with_tool

    result = flash_and_read(target, elf, flasher or flash_with_tool(target), say,
                            "per-op timings")
    if not result["ops"]:
        raise TargetError(f"{target.name} sent no per-op frames: is the firmware a per-op build?")
    ticks = np.array([result["ops"].get(k, (0, 0))[0] for k in range(len(labels))], float)
    runs = np.array([result["ops"].get(k, (0, 0))[1] for k in range(len(labels))], float)
    values = np.where(runs > 0, ticks / np.maximum(runs, 1), 0.0)
    totals = {s: float(np.mean([smp["stage_ticks"][s] for smp in result["samples"]]))
              for s in range(result["stages"])} if result["samples"] else {}
    timer = target.get("timer", "dwt")
    env.update(serial_port=target.get("serial_port"), baud=int(target.get("baud")), timer=timer,
               bad_frames=result["bad_frames"])
    return OpProfile(target.name, "cycles", f"{timer} cycles on the board, mean per run",
                     labels, values.tolist(), [int(r) for r in runs], totals, env)


def build_op_report(profile: OpProfile) -> dict[str, Any]:
    """JSON-ready report: per stage, every op with its cost, MACs and cost per MAC, and
    a summary by op type (over all stages and per stage)."""
    def per_mac(value: float, macs: int) -> float | None:
        return value / macs if macs else None

    stages = []
    for s in sorted({lb.stage for lb in profile.labels}):
        ops = [{"index": k, "node": lb.node, "name": lb.name, "op": lb.op, "macs": lb.macs,
                "value": v, "per_mac": per_mac(v, lb.macs), "runs": r}
               for k, (lb, v, r) in enumerate(zip(profile.labels, profile.values, profile.runs))
               if lb.stage == s]
        total = float(sum(o["value"] for o in ops))
        stage: dict[str, Any] = {"index": s, "ops_total": total,
                                 "macs": int(sum(o["macs"] for o in ops)), "ops": ops,
                                 "by_type": _by_type(ops)}
        if s in profile.stage_totals:
            stage["measured_total"] = profile.stage_totals[s]
        stages.append(stage)
    everything = [o for st in stages for o in st["ops"]]
    return {"target": profile.target, "unit": profile.unit, "note": profile.tick_note,
            "environment": profile.environment, "stages": stages,
            "by_type": _by_type(everything),
            "total": float(sum(o["value"] for o in everything))}


def _by_type(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0])
    for o in ops:
        g = groups[o["op"]]
        g[0] += o["value"]
        g[1] += o["macs"]
        g[2] += 1
    total = sum(g[0] for g in groups.values()) or 1.0
    rows = [{"op": op, "value": v, "macs": int(m), "count": int(c),
             "per_mac": v / m if m else None, "share": v / total}
            for op, (v, m, c) in groups.items()]
    return sorted(rows, key=lambda r: -r["value"])


def plot_ops(report: dict[str, Any], path: Path) -> None:
    """Cost by op type per stage (stacked bars) and the costliest single ops."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = report["unit"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    types = [r["op"] for r in report["by_type"]]
    colors = {op: plt.cm.tab20(i % 20) for i, op in enumerate(types)}
    names = [f"stage {s['index']}" for s in report["stages"]]
    bottom = np.zeros(len(names))
    for op in types:
        heights = np.array([next((r["value"] for r in s["by_type"] if r["op"] == op), 0.0)
                            for s in report["stages"]])
        left.bar(names, heights, bottom=bottom, label=op, color=colors[op])
        bottom += heights
    left.set_ylabel(unit)
    left.set_title(f"{report['target']}: {unit} by op type")
    left.legend(fontsize=7, loc="upper right")
    ops = sorted((o for s in report["stages"] for o in s["ops"]), key=lambda o: -o["value"])[:15]
    right.barh([f"s{_stage_of(report, o)} {o['op']} #{o['index']}" for o in ops][::-1],
               [o["value"] for o in ops][::-1], color=[colors[o["op"]] for o in ops][::-1])
    right.set_xlabel(unit)
    right.set_title("costliest ops")
    right.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _stage_of(report: dict[str, Any], op: dict[str, Any]) -> int:
    return next(s["index"] for s in report["stages"] if op in s["ops"])
