"""Model names and paths with C syntax in them cannot break or bend the generated C."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from cli_runner import run_cli  # noqa: E402
from codegen.int8_bundles import int8_bundle  # noqa: E402

from eedge.codegen.c_text import c_comment_text, c_string_body  # noqa: E402

HOSTILE = ['we"ird', "back\\slash", "end*/ comment", "tri??/graph", "tab\there", "ünï",
           "%s%n", 'x"; system("rm -rf /"); "']


def test_string_bodies_read_back_exactly(tmp_path: Path) -> None:
    lines = "\n".join(f'    puts("{c_string_body(t)}");' for t in HOSTILE)
    source = tmp_path / "t.c"
    source.write_text(f"#include <stdio.h>\nint main(void) {{\n{lines}\n    return 0;\n}}\n")
    exe = tmp_path / "t"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", str(source), "-o",
                    str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, check=True).stdout.decode()
    assert out.splitlines() == HOSTILE


def test_comment_text_cannot_close_the_comment() -> None:
    for text in HOSTILE:
        assert "*/" not in c_comment_text(text) and "\n" not in c_comment_text(text)


def test_codegen_from_a_file_named_like_c_builds(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    bundle = int8_bundle("sequential", tmp_path)
    hostile = tmp_path / 'm"x ??\\y*.tflite'
    shutil.copy(bundle.path / "model.int8.tflite", hostile)
    code, _out, err = run_cli(capsys, "codegen", str(hostile), "--target", "host", "--out",
                              str(tmp_path / "p"))
    assert code == 0, err
    code, _out, err = run_cli(capsys, "build", str(tmp_path / "p"))
    assert code == 0, err
