"""Per-op instructions of a bundle's generated C on qemu-cortex-m4.

    .venv/bin/python bench/op_profile.py BUNDLE INPUTS.npz [--samples 10] [--no-dsp] [--top 15]

A thin wrapper of `eedge.profiling.per_op` (the build behind `eedge profile --per-op`):
every kernel call is timed with SysTick reads under QEMU's -icount (40 instructions per
tick), averaged over the first --samples inputs; prints each stage's ops by type and
the costliest ops.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from eedge.profiling.per_op import build_op_report, profile_ops
from eedge.targets import load_target


def profile(bundle: Path, inputs: Path, samples: int, dsp: bool | None) -> dict[str, Any]:
    """`build_op_report` of every kernel call: mean instructions per sample that ran it."""
    x = np.load(inputs)["x"][:samples] if inputs.suffix == ".npz" else np.load(inputs)[:samples]
    return build_op_report(profile_ops(bundle, load_target("qemu-cortex-m4"), x, dsp=dsp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("inputs", type=Path, help=".npz with x (float inputs) or .npy")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--no-dsp", action="store_true")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    stages = profile(args.bundle, args.inputs, args.samples,
                     False if args.no_dsp else None)["stages"]
    print(f"{args.bundle.name}: instructions per stage (sum of its ops) " +
          ", ".join(f"{st['index']}: {st['ops_total'] / 1e3:.0f}k" for st in stages))
    for st in stages:
        print(f"stage {st['index']} by op type:")
        for r in st["by_type"]:
            print(f"  {r['op']:22s} {r['value'] / 1e3:8.1f}k  {r['count']:3d} ops  "
                  f"{100 * r['share']:5.1f}%")
        print(f"stage {st['index']}, costliest ops:")
        for o in sorted(st["ops"], key=lambda o: -o["value"])[:args.top]:
            print(f"  {o['value'] / 1e3:8.1f}k {o['op']} {o['name'][:70]}")


if __name__ == "__main__":
    main()
