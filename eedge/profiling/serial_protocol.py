"""The framed protocol firmware uses to report per-stage ticks over a serial port.

Frame: magic A5 5A | type (1) | length (2, little-endian) | payload | CRC-16/CCITT
(2, little-endian) over type, length and payload. The reader resynchronizes on
the magic after noise or a bad CRC, refuses lengths over MAX_PAYLOAD, and
gives up after a timeout with an error saying what to check.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Any, Protocol

from eedge.errors import TargetError

MAGIC = b"\xa5\x5a"
HELLO, SAMPLE, DONE = 0x01, 0x02, 0x03
OP = 0x04  # per-op build: u32 call site, u32 ticks, u32 runs (cumulative sums)
MAX_PAYLOAD = 512
PROTOCOL_VERSION = 1


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def encode(frame_type: int, payload: bytes) -> bytes:
    body = struct.pack("<BH", frame_type, len(payload)) + payload
    return MAGIC + body + struct.pack("<H", crc16_ccitt(body))


@dataclass
class Frame:
    type: int
    payload: bytes


class ByteSource(Protocol):
    def read(self, size: int = 1) -> bytes: ...


class FrameReader:
    """Pulls frames out of a byte stream (a pyserial port), skipping garbage."""

    def __init__(self, port: ByteSource, timeout_s: float) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self.buffer = b""
        self.bad_frames = 0

    def _fill(self, deadline: float) -> None:
        chunk = self.port.read(256)
        if chunk:
            self.buffer += chunk
        elif time.monotonic() > deadline:
            raise TargetError(f"no complete frame from the board within {self.timeout_s:.0f} s; "
                              "check that it is flashed, connected and at the right baud rate")

    def next(self) -> Frame:
        deadline = time.monotonic() + self.timeout_s
        while True:
            start = self.buffer.find(MAGIC)
            if start < 0:
                self.buffer = self.buffer[-1:]
                self._fill(deadline)
                continue
            self.buffer = self.buffer[start:]
            if len(self.buffer) < 5:
                self._fill(deadline)
                continue
            frame_type, length = struct.unpack_from("<BH", self.buffer, 2)
            if length > MAX_PAYLOAD:
                self.bad_frames += 1
                self.buffer = self.buffer[2:]  # not a frame: resync after this magic
                continue
            total = 2 + 3 + length + 2
            if len(self.buffer) < total:
                self._fill(deadline)
                continue
            body = self.buffer[2:5 + length]
            (crc,) = struct.unpack_from("<H", self.buffer, 5 + length)
            if crc != crc16_ccitt(body):
                self.bad_frames += 1
                self.buffer = self.buffer[2:]
                continue
            self.buffer = self.buffer[total:]
            return Frame(frame_type, body[3:])


def read_profile(reader: FrameReader) -> dict[str, Any]:
    """HELLO, one SAMPLE frame per inference, DONE -> per-sample ticks and decisions;
    a per-op build's OP frames (cumulative sums per kernel call site) go to ``ops``."""
    frame = reader.next()
    while frame.type != HELLO:
        frame = reader.next()
    if len(frame.payload) < 2:  # a valid CRC over a short payload: not eedge firmware
        raise TargetError(f"malformed HELLO frame from the board ({len(frame.payload)} "
                          "payload bytes, expected 2): is it running eedge firmware?")
    version, stages = struct.unpack("<BB", frame.payload[:2])
    if version != PROTOCOL_VERSION:
        raise TargetError(f"the firmware speaks protocol {version}; this eedge reads "
                          f"{PROTOCOL_VERSION}: regenerate the firmware")
    samples = []
    ops: dict[int, tuple[int, int]] = {}
    while True:
        frame = reader.next()
        if frame.type == DONE:
            break
        if frame.type == OP and len(frame.payload) == 12:  # the last sums win
            k, ticks_k, runs_k = struct.unpack("<III", frame.payload)
            ops[k] = (ticks_k, runs_k)
            continue
        if frame.type != SAMPLE or len(frame.payload) != 12 + 4 * stages:
            raise TargetError("malformed SAMPLE frame from the board")
        index, exit_index, class_index = struct.unpack_from("<Iii", frame.payload)
        ticks = list(struct.unpack_from(f"<{stages}I", frame.payload, 12))
        samples.append({"index": index, "exit_index": exit_index, "class_index": class_index,
                        "stage_ticks": ticks})
    return {"stages": stages, "samples": samples, "bad_frames": reader.bad_frames, "ops": ops}
