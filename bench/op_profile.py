"""Per-op instructions of a bundle's generated C on qemu-cortex-m4.

    .venv/bin/python bench/op_profile.py BUNDLE INPUTS.npz [--samples 10] [--no-dsp] [--top 15]

A thin wrapper of `eedge.profiling.per_op` (the build behind `eedge profile --per-op`):
every kernel call is timed with SysTick reads under QEMU's -icount (40 instructions per
tick), averaged over the first --samples inputs; prints each stage's ops by type and
the costliest ops.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from eedge.profiling.per_op import profile_ops
from eedge.targets import load_target


def profile(bundle: Path, inputs: Path, samples: int, dsp: bool | None
            ) -> list[tuple[int, str, str, float]]:
    """(stage, op, node, mean instructions per sample that ran it) for every kernel call."""
    x = np.load(inputs)["x"][:samples] if inputs.suffix == ".npz" else np.load(inputs)[:samples]
    result = profile_ops(bundle, load_target("qemu-cortex-m4"), x, dsp=dsp)
    return [(lb.stage, lb.op, lb.name, v) for lb, v in zip(result.labels, result.values)]


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
