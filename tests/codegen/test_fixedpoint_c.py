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
from eedge.reference.int8_kernels import softmax_multiplier, softmax_s8

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


SOFTMAX_PROGRAM = r"""
#include <stdio.h>
#include "eedge/kernels.h"
static int8_t row[2048], out[2048];
int main(void) {
    eedge_softmax_params p;
    int cols, i;
    long long m, s, d;
    while (scanf("%d %lld %lld %lld", &cols, &m, &s, &d) == 4) {
        for (i = 0; i < cols; ++i) {
            int v;
            if (scanf("%d", &v) != 1) return 2;
            row[i] = (int8_t)v;
        }
        p.rows = 1; p.cols = cols; p.input_multiplier = (int32_t)m;
        p.input_shift = (int32_t)s; p.diff_min = (int32_t)d;
        eedge_softmax_s8(&p, row, out);
        for (i = 0; i < cols; ++i) printf("%d ", out[i]);
        printf("\n");
    }
    return 0;
}
"""


def test_softmax_over_wide_rows_matches_the_reference_without_undefined_shifts(
        tmp_path: Path) -> None:
    """About 1000 near-equal logits once shifted an int32 by 33 (UBSan) in softmax.c."""
    source = tmp_path / "sm.c"
    source.write_text(SOFTMAX_PROGRAM)
    binary = tmp_path / "sm"
    runtime = TEMPLATES / "runtime"
    subprocess.run(["gcc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror",
                    "-fsanitize=undefined", "-fno-sanitize-recover=all",
                    f"-I{runtime / 'include'}", str(source), str(runtime / "src" / "softmax.c"),
                    "-o", str(binary)], check=True)
    rng = np.random.default_rng(0)
    rows = [np.zeros(1100, np.int8), np.full(2048, 5, np.int8),
            rng.integers(-3, 3, 1500).astype(np.int8), rng.integers(-128, 128, 700).astype(np.int8),
            rng.integers(-128, 128, 10).astype(np.int8)]
    scale = 0.05
    lines, expected = [], []
    for row in rows:
        m, s, d = softmax_multiplier(scale)
        lines.append(f"{row.size} {m} {s} {d} " + " ".join(str(int(v)) for v in row))
        expected.append(softmax_s8(row.reshape(1, -1), scale).reshape(-1))
    proc = subprocess.run([str(binary)], input="\n".join(lines) + "\n", capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-500:]
    got = [np.array(line.split(), dtype=np.int64) for line in proc.stdout.splitlines()]
    for g, e in zip(got, expected, strict=True):
        assert np.array_equal(g, e)
