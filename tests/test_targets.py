"""Target descriptions: every shipped YAML validates; mistakes name the field."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from eedge.errors import TargetError
from eedge.targets import list_targets, load_target

REQUIRED = {"host", "rpi4", "qemu-cortex-m4", "qemu-cortex-m7", "qemu-cortex-m33",
            "qemu-cortex-m55", "stm32f767", "stm32l432", "stm32l4r5"}


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


_MCU_YAML = ("name: x\nkind: mcu-serial\ncpu: cortex-m4\nfpu: none\nclock_hz: 1\n"
             "flash_bytes: 1\nram_bytes: 1\nboard: b\nflash_tool: openocd\nserial_port: p\n"
             "baud: 9600\n")


def _laughs(levels: int) -> str:
    """A "billion laughs": LEVELS nested aliases, 9^LEVELS strings from a few hundred bytes."""
    anchors = ["&a0 [l,l,l,l,l,l,l,l,l]"]
    for i in range(1, levels):
        anchors.append(f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return f"name: x\nkind: host\ndescription: [{', '.join(anchors)}]\n"


def test_billion_laughs_is_refused_fast_and_briefly(tmp_path: Path) -> None:
    """Issue 16 item 10: nested aliases grew the process past 1.6 GB (a 28 MB message at 7)."""
    path = tmp_path / "laughs.yaml"
    path.write_text(_laughs(9))
    assert path.stat().st_size < 600
    start = time.perf_counter()
    with pytest.raises(TargetError, match=r"aliases \(\*name\) are not allowed") as exc:
        load_target(path)
    assert time.perf_counter() - start < 1.0
    assert len(str(exc.value)) < 300


@pytest.mark.parametrize("raw, message", [
    (b"name: x\nkind: host\ndescription: \xff\xfe\n",
     r"not UTF-8 text \(byte 0xff at offset 32\)"),
    (b"name: x\nkind: host\n" + b"#" * (70 << 10) + b"\n", "larger than 64 KiB"),
    (b"name: x\nkind: host\ndescription: " + b"[" * 200 + b"]" * 200 + b"\n", "nested deeper"),
    (b"name: x\nkind: host\nx: " + b"9" * 5000 + b"\n", "not a usable target file"),
    (b"name: x\nkind: [host]\n", "kind must be one of"),
    (b"name: Y" + b"y" * 5000 + b"\nkind: host\n", r"field name: 'Yyyy.*…$"),
    (b"name: x\nkind: host\n" + b"z" * 5000 + b": 1\n", r"^(?!.{400})"),
    (_MCU_YAML.replace("clock_hz: 1\n", "clock_hz: 1.0\n").encode(), "clock_hz"),
    (_MCU_YAML.replace("clock_hz: 1\n", "clock_hz: 1000000000000\n").encode(), "clock_hz"),
    (_MCU_YAML.replace("flash_bytes: 1\n", "flash_bytes: 8589934592\n").encode(),
     "flash_bytes"),
    (_MCU_YAML + "cycles_per_instruction: .nan\n", "not a finite number"),
    (_MCU_YAML + "cycles_per_instruction: .inf\n", "not a finite number"),
    (_MCU_YAML + "openocd_config: \"a}; exec rm -rf x; {\"\n", "openocd_config"),
    (_MCU_YAML + "openocd_config: \"board/a.cfg\\n\"\n", "control character"),
    (_MCU_YAML + "pyocd_target: \"--erase\"\n", "pyocd_target"),
    (_MCU_YAML.replace("serial_port: p", "serial_port: \"p\\0\""), "control character"),
])
def test_hostile_target_files(tmp_path: Path, raw: bytes | str, message: str) -> None:
    path = tmp_path / "board.yaml"
    path.write_bytes(raw.encode() if isinstance(raw, str) else raw)
    with pytest.raises(TargetError, match=message) as exc:
        load_target(path)
    assert "\n" not in str(exc.value) and len(str(exc.value)) < 400
