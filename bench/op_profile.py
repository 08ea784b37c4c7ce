"""Per-op instructions of a bundle's generated C on qemu-cortex-m4.

    .venv/bin/python bench/op_profile.py BUNDLE INPUTS.npz [--samples 10] [--no-dsp] [--top 15]

The firmware's stage timing says where a stage's instructions go only as a whole.
This generates the project as `eedge run --target qemu-cortex-m4` does, wraps every
kernel statement of the stage functions with reads of the tick counter (QEMU runs
with -icount, the mps2-an386 SysTick counts 40 instructions per tick, so an op is
resolved to 40 instructions plus the two reads), prints the sums from the firmware
after the last sample, and reports each stage's ops by type and the costliest ops.
Only the profiling copy of model.c is changed; the bundle and eedge's projects are not.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from eedge.codegen.inputs import device_samples
from eedge.codegen.model_source import load_codegen_model
from eedge.codegen.project import generate_project
from eedge.codegen.toolchain import build, qemu_command
from eedge.targets import load_target

STATEMENT = re.compile(r"^(    )/\* (\S+) (.*?) \*/ (.*);\n$")

DUMP = """static uint32_t eedge_prof[{n}], eedge_prof_n[{n}], eedge_prof_calls;
static void eedge_prof_dump(void) {{
    char buf[48];
    for (int32_t k = 0; k < {n}; ++k) {{
        uint32_t v[3] = {{(uint32_t)k, eedge_prof[k], eedge_prof_n[k]}};
        char *p = buf;
        *p++ = 'P';
        for (int32_t j = 0; j < 3; ++j) {{
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
"""


def instrument(source: str, samples: int) -> tuple[str, list[tuple[int, str, str]]]:
    """model.c with every stage statement timed; the (stage, op, node) of each timer."""
    labels: list[tuple[int, str, str]] = []
    stage = -1
    lines = []
    for line in source.splitlines(keepends=True):
        if (m := re.match(r"^static void stage_(\d+)\(void\)", line)):
            stage = int(m.group(1))
        m = STATEMENT.match(line)
        if m and stage >= 0:
            k = len(labels)
            labels.append((stage, m.group(2), m.group(3)))
            line = (f"{m.group(1)}{{ const uint32_t eedge_p0 = eedge_platform_ticks(); "
                    f"{m.group(4)}; eedge_prof[{k}] += eedge_platform_ticks() - eedge_p0; "
                    f"++eedge_prof_n[{k}]; }}\n")
        lines.append(line)
    text = "".join(lines).replace("#define T(offset)", DUMP.format(n=len(labels)) +
                                  "#define T(offset)", 1)
    text = text.replace("    return result->exit_index;\n}",
                        f"    if (++eedge_prof_calls == {samples}) eedge_prof_dump();\n"
                        "    return result->exit_index;\n}", 1)
    return text, labels


def profile(bundle: Path, inputs: Path, samples: int, dsp: bool | None
            ) -> list[tuple[int, str, str, float]]:
    """(stage, op, node, mean instructions per sample that ran it) for every kernel call."""
    target = load_target("qemu-cortex-m4")
    per_tick = target.get("qemu")["instructions_per_tick"]
    model = load_codegen_model(bundle)
    x = np.load(inputs)["x"][:samples] if inputs.suffix == ".npz" else np.load(inputs)[:samples]
    info = model.graph.tensors[model.input]
    quantized = device_samples(x, tuple(int(d) for d in info.shape), model.input_quant.scale[0],
                               model.input_quant.zero_point[0], model.input_layout)
    with tempfile.TemporaryDirectory(prefix="eedge-op-profile-") as tmp:
        out = Path(tmp) / "project"
        project = generate_project(model, target, out, quantized, "O2", dsp)
        text, labels = instrument((out / "model.c").read_text(), len(quantized))
        (out / "model.c").write_text(text)
        binary = build(project).binary
        proc = subprocess.run(qemu_command(target, binary), capture_output=True, text=True,
                              timeout=1800, stdin=subprocess.DEVNULL)
    ticks, runs = np.zeros(len(labels)), np.zeros(len(labels))
    for line in (proc.stdout + proc.stderr).splitlines():
        if (m := re.match(r"^P (\d+) (\d+) (\d+)$", line.strip())):
            ticks[int(m.group(1))], runs[int(m.group(1))] = int(m.group(2)), int(m.group(3))
    if not runs.any():
        raise SystemExit(f"the firmware printed no profile: {(proc.stdout + proc.stderr)[-300:]}")
    mean = np.where(runs > 0, ticks / np.maximum(runs, 1) * per_tick, 0.0)
    return [(s, op, name, float(v)) for (s, op, name), v in zip(labels, mean)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("inputs", type=Path, help=".npz with x (float inputs) or .npy")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--no-dsp", action="store_true")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    rows = profile(args.bundle, args.inputs, args.samples, False if args.no_dsp else None)
    stages: dict[int, float] = defaultdict(float)
    for s, _, _, v in rows:
        stages[s] += v
    print(f"{args.bundle.name}: instructions per stage (sum of its ops) " +
          ", ".join(f"{s}: {v / 1e3:.0f}k" for s, v in sorted(stages.items())))
    for stage in sorted(stages):
        by_type: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for s, op, _, v in rows:
            if s == stage:
                by_type[op][0] += v
                by_type[op][1] += 1
        print(f"stage {stage} by op type:")
        for op, (v, count) in sorted(by_type.items(), key=lambda kv: -kv[1][0]):
            print(f"  {op:22s} {v / 1e3:8.1f}k  {count:3d} ops  {100 * v / stages[stage]:5.1f}%")
        print(f"stage {stage}, costliest ops:")
        for s, op, name, v in sorted((r for r in rows if r[0] == stage), key=lambda r: -r[3]
                                     )[:args.top]:
            print(f"  {v / 1e3:8.1f}k {op} {name[:70]}")


if __name__ == "__main__":
    main()
