"""The real-board profiling path, with QEMU's UART as the board's serial port.

The firmware is built exactly as for a board (cortex-m-generic port, framed
output); "flashing" starts QEMU with UART0 on a TCP socket, and pyserial reads
it as socket://127.0.0.1:PORT.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "codegen"))
sys.path.insert(0, str(Path(__file__).parent))

from int8_bundles import int8_bundle  # noqa: E402
from qemu_board import qemu_serial_board  # noqa: E402
from zoo import example_input  # noqa: E402

from eedge.errors import TargetError  # noqa: E402
from eedge.profiling.serial_driver import profile_serial  # noqa: E402
from eedge.profiling.serial_protocol import (DONE, HELLO, SAMPLE, FrameReader,  # noqa: E402
                                             crc16_ccitt, encode, read_profile)


def test_crc_and_frames_survive_noise_and_corruption() -> None:
    assert crc16_ccitt(b"123456789") == 0x29B1  # the CRC-16/CCITT-FALSE check value
    sample = np.array([7, 1, 3, 10, 20, 30], "<u4").view("<i4").tobytes()
    good = encode(HELLO, bytes([1, 3])) + encode(SAMPLE, sample) + encode(DONE, b"")
    corrupted = bytearray(encode(SAMPLE, sample))
    corrupted[8] ^= 0xFF
    stream = b"\x00\xa5garbage" + encode(HELLO, bytes([1, 3])) + bytes(corrupted) + \
        b"\xa5\x5a\x02\xff\xff" + good[len(encode(HELLO, bytes([1, 3]))):]
    result = read_profile(FrameReader(io.BytesIO(stream), timeout_s=1))
    assert result["samples"] == [{"index": 7, "exit_index": 1, "class_index": 3,
                                  "stage_ticks": [10, 20, 30]}]
    assert result["bad_frames"] == 2


def test_short_hello_frame_is_a_target_error() -> None:
    """A HELLO with a valid CRC but under 2 payload bytes was struct.error (exit 1)."""
    for payload in (b"", b"\x01"):
        reader = FrameReader(io.BytesIO(encode(HELLO, payload) + encode(DONE, b"")), 1.0)
        with pytest.raises(TargetError, match="malformed HELLO frame"):
            read_profile(reader)


def test_silence_times_out_with_advice() -> None:
    with pytest.raises(TargetError, match="no complete frame"):
        FrameReader(io.BytesIO(b"\x00" * 10), timeout_s=0.2).next()


def test_board_path_through_qemu_uart(tmp_path: Path) -> None:
    bundle = int8_bundle("sequential", tmp_path)
    target, start_qemu = qemu_serial_board(tmp_path)
    x = example_input(seed=8, batch=5)
    first = profile_serial(bundle, target, x, lambda _m: None, flasher=start_qemu)
    assert first.unit == "cycles" and first.environment["samples"] == 5
    assert all(s.value > 0 for s in first.stages)
    assert first.environment["bad_frames"] == 0
    second = profile_serial(bundle, target, x, lambda _m: None, flasher=start_qemu)
    assert [s.value for s in first.stages] == [s.value for s in second.stages]
