"""The error line: one plain line, user text printed as written, no escape codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

from cli_runner import run_cli as run
from eedge.cli import console
from eedge.errors import ModelError

EEDGE = [sys.executable, "-m", "eedge.cli.main"]


@pytest.mark.parametrize("name", ["m[/].onnx", "m[bold red]x[/bold red].onnx",
                                  "m[link=x]\\[y.onnx"])
def test_markup_in_user_text_is_printed_as_written(capsys, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                   name: str) -> None:
    code, _, err = run(capsys, "export", str(tmp_path / name), "--out", str(tmp_path / "b"))
    assert code == ModelError.exit_code
    assert err == f"error: model file {tmp_path / name} does not exist; check the path\n"


def test_escape_codes_and_line_breaks_never_reach_the_line(capsys) -> None:  # type: ignore[no-untyped-def]
    console.print_error("error", "torch said \x1b[1mbold\x1b[0m\n\tand more [/]")
    assert capsys.readouterr().err == "error: torch said bold; and more [/]\n"


def test_a_forced_colour_console_still_prints_plain_text_into_a_pipe(  # type: ignore[no-untyped-def]
        capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "err_console", Console(stderr=True, force_terminal=True,
                                                        color_system="standard"))
    console.print_error("error", "bad [/] path")
    assert capsys.readouterr().err == "error: bad [/] path\n"


def test_on_a_terminal_the_label_is_styled_and_the_text_escaped(  # type: ignore[no-untyped-def]
        capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "err_console", Console(stderr=True, force_terminal=True,
                                                        color_system="standard"))
    monkeypatch.setattr(console, "stderr_is_terminal", lambda: True)
    console.print_error("error", "bad [/] [bold]path\x1b[31m")
    err = capsys.readouterr().err
    assert err.startswith("\x1b[1;31merror:\x1b[0m") and err.endswith("bad [/] [bold]path\n")


def test_force_color_does_not_colour_a_piped_error_line(tmp_path: Path) -> None:
    env = dict(os.environ, FORCE_COLOR="1", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    proc = subprocess.run(EEDGE + ["export", str(tmp_path / "m[/].onnx"), "--out",
                                   str(tmp_path / "b")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == ModelError.exit_code
    assert proc.stderr.splitlines()[-1] == (f"error: model file {tmp_path / 'm[/].onnx'} does "
                                            "not exist; check the path")
    assert "\x1b" not in proc.stderr


def test_pickled_torch_weights_give_one_plain_line(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "net.py"
    source.write_text("import torch\n\ndef make():\n"
                      "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))\n")
    weights = tmp_path / "whole.pt"
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)), weights)
    code, _, err = run(capsys, "export", f"{source}:make", "--weights", str(weights),
                       "--input-shape", "1,2,2", "--out", str(tmp_path / "b"))
    assert code == ModelError.exit_code
    assert err.count("\n") == 1 and "\x1b" not in err
    assert "weights_only=True" in err and "torch.save(model.state_dict(), path)" in err
