"""The C fixed-point header against the numpy reference, on edge and random values.

Compiled with -Werror for the host; runs 200k (x, multiplier, shift) triples
including INT32 extremes, exact ties and every shift from -31 to 30.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from eedge.codegen.project import TEMPLATES
from eedge.reference.fixedpoint import multiply_by_quantized_multiplier, srdhm

PROGRAM = r"""
#include <stdio.h>
#include "eedge/fixedpoint.h"
int main(void) {
    long long x, m, s;
    while (scanf("%lld %lld %lld", &x, &m, &s) == 3) {
        printf("%d %d\n", (int)eedge_requantize((int32_t)x, (int32_t)m, (int32_t)s),
               (int)eedge_srdhm((int32_t)x, (int32_t)m));
    }
    return 0;
}
"""


def test_requantize_in_c_matches_the_reference(tmp_path: Path) -> None:
    source = tmp_path / "fp.c"
    source.write_text(PROGRAM)
    binary = tmp_path / "fp"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror",
                    f"-I{TEMPLATES / 'runtime' / 'include'}", str(source), "-o", str(binary)],
                   check=True)
    rng = np.random.default_rng(0)
    n = 200_000
    x = rng.integers(-(1 << 31), 1 << 31, n, dtype=np.int64)
    x[:2000] = rng.integers(-70000, 70000, 2000)          # accumulator-sized values
    x[2000:2100] = -(1 << 31)
    x[2100:2200] = (1 << 31) - 1
    m = rng.integers(1 << 30, 1 << 31, n, dtype=np.int64)
    m[2000:2050] = -(1 << 31)                              # the saturating case of SRDHM
    m[3000:3100] = 1 << 30                                 # exact halves: ties
    s = rng.integers(-31, 1, n, dtype=np.int64)
    small = np.abs(x) < (1 << 20)
    s[small] = rng.integers(-31, 8, int(small.sum()))      # left shifts only where they fit
    lines = "\n".join(f"{a} {b} {c}" for a, b, c in zip(x, m, s))
    out = subprocess.run([str(binary)], input=lines, capture_output=True, text=True,
                         check=True).stdout.split()
    got = np.array(out, dtype=np.int64).reshape(n, 2)
    assert np.array_equal(got[:, 1], srdhm(x, m))
    assert np.array_equal(got[:, 0], multiply_by_quantized_multiplier(x, m, s))
