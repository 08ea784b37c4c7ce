"""Paths and names are printed as written: rich markup in them neither crashes nor vanishes."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from cli_runner import run_cli  # noqa: E402
from codegen.int8_bundles import int8_bundle  # noqa: E402


def test_export_prints_a_markup_path_literally(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    bundle = int8_bundle("sequential", tmp_path)
    folder = tmp_path / "we[/]ird"
    folder.mkdir(parents=True)
    shutil.copy(bundle.path / "model.onnx", folder / "m.onnx")
    out = folder / "b[bold]"
    code, stdout, err = run_cli(capsys, "export", str(folder / "m.onnx"), "--out", str(out))
    assert code == 0, err
    assert f"wrote {out}" in stdout
