"""`--force` replaces eedge's own output and nothing else (it once deleted any folder)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from cli_runner import run_cli  # noqa: E402
from codegen.int8_bundles import int8_bundle  # noqa: E402


def _precious(tmp_path: Path) -> Path:
    folder = tmp_path / "v"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "main.py").write_text("print('mine')\n")
    (folder / "README").write_text("mine\n")
    return folder


def _intact(folder: Path) -> bool:
    return (folder / "src" / "main.py").read_text() == "print('mine')\n" and \
        (folder / "README").read_text() == "mine\n"


@pytest.mark.parametrize("command", ["export", "codegen"])
def test_force_refuses_a_folder_eedge_did_not_make(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path, command: str) -> None:
    bundle = int8_bundle("sequential", tmp_path)
    folder = _precious(tmp_path)
    args = {"export": ["export", str(bundle.path / "model.onnx"), "--out", str(folder)],
            "codegen": ["codegen", str(bundle.path), "--target", "host", "--out", str(folder)]}
    code, _out, err = run_cli(capsys, *args[command], "--force")
    assert code == 4, err
    assert "not made by eedge" in err and "README" in err and len(err.strip().splitlines()) == 1
    assert _intact(folder)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".v.")]


def test_force_still_replaces_a_generated_project(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    bundle = int8_bundle("sequential", tmp_path)
    out = tmp_path / "fw"
    for _ in range(2):
        code, _out, err = run_cli(capsys, "codegen", str(bundle.path), "--target", "host",
                                  "--out", str(out), "--force")
        assert code == 0, err
    assert (out / "eedge-project.json").is_file()


def test_force_does_not_delete_through_a_symlink(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    bundle = int8_bundle("sequential", tmp_path)
    link = tmp_path / "link"
    link.symlink_to(bundle.path)
    code, _out, err = run_cli(capsys, "export", str(bundle.path / "model.onnx"), "--out",
                              str(link), "--force")
    assert code == 4 and "symbolic link" in err
    assert (bundle.path / "manifest.json").is_file() and link.is_symlink()
