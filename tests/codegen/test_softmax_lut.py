"""The table-driven int8 softmax (eedge_softmax_lut_s8) against the reference and the
gemmlowp-exp kernel it replaces in generated stages.

The exponential of each logit depends only on its distance to the row's maximum
(0..255), so the code generator stores the 256 exponentials per SOFTMAX node
(emit.softmax_exp_table). Both kernels run on the host (UBSan, -Werror) over rows
of many widths and scales: small scales (diff_min cuts the table), large ones
(exponentials underflow to 0), equal logits, and rows wide enough that the sum's
exponent passes 31.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from eedge.codegen.emit import softmax_exp_table
from eedge.codegen.project import TEMPLATES
from eedge.reference.int8_kernels import softmax_multiplier, softmax_s8

PROGRAM = r"""
#include <stdio.h>
#include "eedge/kernels.h"
static int8_t rows[4096], out[4096], ref[4096];
static int32_t table[256];
int main(void) {
    eedge_softmax_params p = {0, 0, 0, 0, 0};
    int n, cols, count, i;
    long long m, s, d;
    while (scanf("%d %d %lld %lld %lld %d", &n, &cols, &m, &s, &d, &count) == 6) {
        for (i = 0; i < count; ++i) {
            long long v;
            if (scanf("%lld", &v) != 1) return 2;
            table[i] = (int32_t)v;
        }
        for (i = 0; i < n * cols; ++i) {
            int v;
            if (scanf("%d", &v) != 1) return 2;
            rows[i] = (int8_t)v;
        }
        p.rows = n; p.cols = cols; p.input_multiplier = (int32_t)m;
        p.input_shift = (int32_t)s; p.diff_min = (int32_t)d;
        eedge_softmax_lut_s8(&p, table, count, rows, out);
        eedge_softmax_s8(&p, rows, ref);
        for (i = 0; i < n * cols; ++i) printf("%d %d ", out[i], ref[i]);
        printf("\n");
    }
    return 0;
}
"""


def test_table_softmax_equals_the_reference_and_the_exp_kernel(tmp_path: Path) -> None:
    source = tmp_path / "lut.c"
    source.write_text(PROGRAM)
    binary = tmp_path / "lut"
    runtime = TEMPLATES / "runtime"
    subprocess.run(["gcc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror",
                    "-fsanitize=undefined", "-fno-sanitize-recover=all",
                    f"-I{runtime / 'include'}", str(source), str(runtime / "src" / "softmax.c"),
                    "-o", str(binary)], check=True)
    rng = np.random.default_rng(3)
    cases: list[tuple[float, np.ndarray]] = []
    for scale in (0.004, 0.02, 0.0625, 0.1, 0.25, 1.0, 4.0):
        for rows, cols in ((17, 17), (3, 49), (1, 10), (8, 1)):
            cases.append((scale, rng.integers(-128, 128, (rows, cols)).astype(np.int8)))
        cases.append((scale, rng.integers(-3, 3, (2, 40)).astype(np.int8)))
    cases += [(0.05, np.zeros((1, 1100), np.int8)), (0.05, np.full((1, 2048), 5, np.int8)),
              (0.05, np.array([[-128, 127] * 8], np.int8)),
              (0.02, np.arange(-128, 128, dtype=np.int8).reshape(1, 256))]
    lines, expected = [], []
    for scale, x in cases:
        m, s, d = softmax_multiplier(scale)
        table = softmax_exp_table(scale)
        assert 1 <= table.size <= 256 and table[0] == 2**31 - 1
        lines.append(f"{x.shape[0]} {x.shape[1]} {m} {s} {d} {table.size} "
                     + " ".join(str(int(v)) for v in table) + " "
                     + " ".join(str(int(v)) for v in x.reshape(-1)))
        expected.append(softmax_s8(x, scale).reshape(-1))
    proc = subprocess.run([str(binary)], input="\n".join(lines) + "\n", capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-500:]
    got = [np.array(line.split(), dtype=np.int64).reshape(-1, 2)
           for line in proc.stdout.splitlines()]
    assert len(got) == len(expected)
    for (scale, x), g, e in zip(cases, got, expected, strict=True):
        assert np.array_equal(g[:, 0], e), (scale, x.shape)
        assert np.array_equal(g[:, 1], e), (scale, x.shape)
