"""Target descriptions: every shipped YAML validates; mistakes name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from eedge.errors import TargetError
from eedge.targets import list_targets, load_target

REQUIRED = {"host", "rpi4", "qemu-cortex-m4", "qemu-cortex-m7", "stm32f767", "stm32l432",
            "stm32l4r5"}


def test_shipped_targets() -> None:
    names = {t.name for t in list_targets()}
    assert REQUIRED <= names
    m4 = load_target("qemu-cortex-m4")
    assert m4.kind == "mcu-qemu" and m4.get("qemu")["machine"] == "mps2-an386"
    assert load_target("stm32l432").get("ram_bytes") == 64 * 1024


@pytest.mark.parametrize("text, message", [
    ("name: x\nkind: mcu-qemu\ncpu: cortex-m4\nfpu: none\nclock_hz: 1\nflash_bytes: 1\n"
     "ram_bytes: 1\nqemu: {machine: mps2-an386}\nclock_mhz: 5\n", "clock_mhz"),
    ("name: x\nkind: mcu-qemu\ncpu: cortex-m4\nfpu: none\nclock_hz: 1\nflash_bytes: 1\n"
     "qemu: {machine: mps2-an386}\n", "ram_bytes"),
    ("name: x\nkind: mcu-serial\ncpu: cortex-m4\nfpu: none\nclock_hz: fast\nflash_bytes: 1\n"
     "ram_bytes: 1\nboard: b\nflash_tool: pyocd\nserial_port: p\nbaud: 9600\n", "clock_hz"),
    ("name: x\nkind: toaster\n", "kind must be one of"),
    ("- just\n- a list\n", "mapping"),
    ("name: [unclosed\n", "not valid YAML"),
])
def test_bad_target_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "board.yaml"
    path.write_text(text)
    with pytest.raises(TargetError, match=message):
        load_target(path)


def test_unknown_target_name() -> None:
    with pytest.raises(TargetError, match="known targets: .*qemu-cortex-m4"):
        load_target("cray-1")
