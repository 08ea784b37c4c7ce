"""A serial board for tests: QEMU's mps2-an386 with its UART on a local TCP socket.

The serial profilers open ``socket://127.0.0.1:PORT`` with pyserial exactly as
they open a board's port, and "flash" by starting QEMU on the firmware, so the
real-board path runs end to end here.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from eedge.codegen.toolchain import require_tool
from eedge.targets import Target, load_target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def qemu_serial_board(folder: Path) -> tuple[Target, Callable[[Path], subprocess.Popen]]:
    """An mcu-serial target description (written to ``folder``) and its QEMU "flasher"."""
    port = free_port()
    board = folder / "mps2-board.yaml"
    board.write_text(
        "name: mps2-board\nkind: mcu-serial\ndescription: an MPS2 AN386 board (QEMU here)\n"
        "cpu: cortex-m4\nfpu: fpv4-sp-d16\ndsp: true\nclock_hz: 25000000\n"
        "flash_bytes: 4194304\nram_bytes: 4194304\nflash_origin: '0x00000000'\n"
        "board: mps2-an386\nflash_tool: pyocd\n"
        f"serial_port: socket://127.0.0.1:{port}\nbaud: 115200\ntimer: systick\n"
        "uart: cmsdk-apb\n")

    def start_qemu(elf: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [require_tool("qemu-system-arm"), "-M", "mps2-an386", "-nographic", "-monitor",
             "none", "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on", "-icount",
             "shift=0", "-kernel", str(elf)], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)

    return load_target(board), start_qemu
