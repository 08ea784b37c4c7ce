"""`eedge flash`: the flash tool's argv keeps hostile project paths literal.

Issue 16 item 12: openocd's ``-c "program PATH verify reset exit"`` is Tcl, and
the path went in unquoted, so a project folder named ``[exec rm -rf x]`` was
command substitution and one with spaces split into several arguments.
"""

from __future__ import annotations

import json
import sys
import tkinter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parents[1] / "frontends"))

from cli_runner import run_cli  # noqa: E402
from test_tflite_frontend import hand_made_int8_model  # noqa: E402

from eedge.cli.firmware_cmds import flash_command, tcl_word  # noqa: E402
from eedge.errors import TargetError  # noqa: E402
from eedge.targets import load_target  # noqa: E402

HOSTILE = "fw [exec touch PWNED] $HOME ; \"q\" #x"


def _program_args(word_command: str, workdir: Path) -> list[str]:
    """Evaluate openocd's -c text in a real Tcl with a stub `program`; return its arguments."""
    tcl = tkinter.Tcl()
    tcl.eval(f"cd {tcl_word(str(workdir))}")
    tcl.eval("proc exec args { error \"exec called: $args\" }")  # substitution would call it
    tcl.eval("proc program {filename args} { global got; set got [list $filename {*}$args] }")
    tcl.eval(word_command)
    return list(tcl.splitlist(tcl.getvar("got")))


@pytest.mark.parametrize("name", [HOSTILE, "with space", "a;b", "$HOME", "[pwd]", "#hash"])
def test_openocd_program_word_is_literal_in_tcl(tmp_path: Path, name: str) -> None:
    elf = tmp_path / name / "build" / "firmware.elf"
    command = flash_command(load_target("stm32l432").data, elf)
    assert command[:4] == ["openocd", "-f", "board/st_nucleo_l4.cfg", "-c"]
    assert _program_args(command[4], tmp_path) == [str(elf), "verify", "reset", "exit"]
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("name", ["a{b", "a}b", "a\\b", "a\nb", "x\\\ny"])
def test_paths_that_cannot_be_brace_quoted_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(TargetError, match="cannot pass .* to openocd's Tcl safely"):
        flash_command(load_target("stm32l432").data, tmp_path / name / "firmware.elf")


def test_pyocd_and_st_flash_get_one_absolute_argument(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    elf = Path("-rf x") / "build" / "firmware.elf"  # relative, and it looks like an option
    pyocd = flash_command(load_target("stm32f767").data, elf)
    assert pyocd == ["pyocd", "flash", "--target", "stm32f767zi", str(tmp_path / elf)]
    st = flash_command({**load_target("stm32f767").data, "flash_tool": "st-flash"}, elf)
    assert st == ["st-flash", "--reset", "write", str(tmp_path / elf.with_suffix(".bin")),
                  "0x08000000"]
    board_only = {k: v for k, v in load_target("stm32f767").data.items() if k != "pyocd_target"}
    with pytest.raises(TargetError, match="starts with '-'"):
        flash_command({**board_only, "board": "--erase"}, elf)


def test_flash_dry_run_in_a_hostile_folder(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """End to end: codegen + build into a folder named like a Tcl injection, then --dry-run."""
    model = tmp_path / "hand.tflite"
    model.write_bytes(hand_made_int8_model())
    project = tmp_path / HOSTILE
    code, _, err = run_cli(capsys, "codegen", str(model), "--target", "stm32l432", "--out",
                           str(project))
    assert code == 0, err
    code, out, err = run_cli(capsys, "flash", str(project), "--dry-run", "--json")
    assert code == 0, err
    command = json.loads(out)["command"]
    elf = str((project / "build" / "firmware.elf").absolute())
    assert _program_args(command[4], tmp_path) == [elf, "verify", "reset", "exit"]
    assert not (tmp_path / "PWNED").exists()
    braced = tmp_path / "fw{x}"
    project.rename(braced)
    code, _, err = run_cli(capsys, "flash", str(braced), "--dry-run")
    assert code == TargetError.exit_code and "Tcl safely" in err, err
