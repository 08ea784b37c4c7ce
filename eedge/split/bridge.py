"""Host bridge between a split head running on a microcontroller and the tail server.

The head firmware (`eedge codegen HEAD_BUNDLE`, a bundle from `eedge split export`)
reports over its serial port, in the framed protocol the profiler reads
(`eedge.profiling.serial_protocol`): HELLO, then per sample a SAMPLE frame (its
exit, class and stage ticks; exit -1 when no head exit took it) and, for such a
sample, HANDOFF frames carrying the int8 cut tensors, then DONE. The bridge sends
each hand-off to the tail server (`eedge serve`, KServe v2 binary tensors, INT8
with the head's scale and zero point, through `eedge.split.client.Client`) and
pairs the answer with the sample number.

The device does not wait for the server: a sensing loop on a microcontroller keeps
its pace whatever the link does (a slow or absent server costs no samples), the
UART needs only its transmit path, and the decision of a handed-off sample is
usually needed where the bridge runs (the gateway) anyway. The sample number in
every frame is what pairs answers to samples.

Python API::

    from eedge.split.bridge import Bridge
    with Bridge("split/head", "http://127.0.0.1:8000") as bridge:
        report = bridge.run(open_serial("socket://127.0.0.1:5555", 115200))
    report.predictions, report.exit_index, report.samples[0].uart_bytes
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import TargetError
from eedge.ir.bundle import Bundle, load_bundle
from eedge.profiling.serial_protocol import (DONE, HELLO, PROTOCOL_VERSION, SAMPLE, Frame,
                                             FrameReader)
from eedge.split.encoding import WireTensor

HANDOFF = 0x05  # u32 sample, u32 offset, u32 total bytes, then int8 hand-off bytes
FRAME_OVERHEAD = 7  # magic 2, type 1, length 2, CRC 2


@dataclass
class BridgeSample:
    index: int
    exit_index: int          # in the whole model's exit numbering
    prediction: int
    decided_on: str          # "device" or "server"
    uart_bytes: int          # frames of this sample on the serial link (SAMPLE + HANDOFF)
    handoff_bytes: int       # int8 tensor bytes sent to the server (0 when decided on device)
    http_bytes: int          # the request's bytes to the tail server (line, headers, body)
    server_ms: float = 0.0   # request round trip to the tail server
    stage_ticks: list[int] = field(default_factory=list)


@dataclass
class BridgeReport:
    samples: list[BridgeSample]
    bad_frames: int
    seconds: float

    @property
    def predictions(self) -> np.ndarray:
        return np.array([s.prediction for s in self.samples], np.int64)

    @property
    def exit_index(self) -> np.ndarray:
        return np.array([s.exit_index for s in self.samples], np.int64)

    def summary(self) -> dict[str, Any]:
        sent = [s for s in self.samples if s.decided_on == "server"]
        return {"samples": len(self.samples), "decided_on_device": len(self.samples) - len(sent),
                "decided_on_server": len(sent),
                "uart_bytes": sum(s.uart_bytes for s in self.samples),
                "uart_bytes_per_handoff": (sum(s.uart_bytes for s in sent) / len(sent)
                                           if sent else 0.0),
                "handoff_bytes_per_sample": sent[0].handoff_bytes if sent else 0,
                "http_bytes": sum(s.http_bytes for s in sent),
                "server_ms_mean": (sum(s.server_ms for s in sent) / len(sent)) if sent else 0.0,
                "bad_frames": self.bad_frames, "seconds": self.seconds}

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "samples": [asdict(s) for s in self.samples]}


class _Disconnect:
    """A port whose end (pyserial's "socket disconnected") is a TargetError naming it."""

    def __init__(self, port: Any) -> None:
        self.port = port

    def read(self, size: int = 1) -> bytes:
        try:
            return self.port.read(size)
        except Exception as exc:  # serial.SerialException, OSError
            if type(exc).__name__ != "SerialException" and not isinstance(exc, OSError):
                raise
            raise TargetError(f"the device's serial link closed before its DONE frame ({exc}); "
                              "was it reset or stopped?") from None


class Bridge:
    """Reads a head firmware's frames and forwards its hand-offs to the tail server."""

    def __init__(self, head: Bundle | str | Path, url: str, model: str | None = None,
                 timeout_s: float = 30.0) -> None:
        from eedge.split.client import Client

        self.head = head if isinstance(head, Bundle) else load_bundle(head)
        if not self.head.has_int8_stages:
            raise TargetError("the bridge needs the int8 head bundle the firmware was built "
                              "from (`eedge split export` of an int8 bundle)")
        model = model or f"{self.head.manifest['model']['name']}_tail"
        self.client = Client(self.head, url, model, runtime="int8-reference",
                             timeout_s=timeout_s, rows_per_request=1)
        self.head_exits = len(self.head.exits)
        self.total = sum(int(np.prod(s.row_shape)) for s in self.client.specs)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "Bridge":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def run(self, port: Any, timeout_s: float = 60.0,
            on_sample: Callable[[BridgeSample], None] | None = None) -> BridgeReport:
        """Serve one firmware run: HELLO .. DONE on ``port`` (a pyserial port)."""
        reader = FrameReader(_Disconnect(port), timeout_s)
        start = time.monotonic()
        frame = reader.next()
        while frame.type != HELLO:
            frame = reader.next()
        if len(frame.payload) < 2 or frame.payload[0] != PROTOCOL_VERSION:
            raise TargetError("the device's HELLO frame is not eedge protocol "
                              f"{PROTOCOL_VERSION}: regenerate the head firmware")
        stages = frame.payload[1]
        if stages != len(self.head.stages):
            raise TargetError(f"the device runs {stages} stages; the head bundle has "
                              f"{len(self.head.stages)}: give the bundle it was built from")
        samples: list[BridgeSample] = []
        frame = reader.next()
        while frame.type != DONE:
            if frame.type != SAMPLE or len(frame.payload) != 12 + 4 * stages:
                raise TargetError(f"unexpected frame type {frame.type} from the device "
                                  "(expected a SAMPLE frame)")
            sample = self._sample(frame, stages, reader)
            samples.append(sample)
            if on_sample is not None:
                on_sample(sample)
            frame = reader.next()
        return BridgeReport(samples, reader.bad_frames, time.monotonic() - start)

    def _sample(self, frame: Frame, stages: int, reader: FrameReader) -> BridgeSample:
        index, exit_index, class_index = struct.unpack_from("<Iii", frame.payload)
        ticks = list(struct.unpack_from(f"<{stages}I", frame.payload, 12))
        uart = FRAME_OVERHEAD + len(frame.payload)
        if exit_index >= 0:
            return BridgeSample(index, exit_index, class_index, "device", uart, 0, 0,
                                stage_ticks=ticks)
        data, uart = self._handoff(index, reader, uart)
        tensors, offset = [], 0
        for spec in self.client.specs:
            size = int(np.prod(spec.row_shape))
            array = np.frombuffer(data[offset:offset + size], np.int8).reshape(
                (1, *spec.row_shape))
            tensors.append(WireTensor(spec.name, array, spec.scale, spec.zero_point))
            offset += size
        from eedge.split.client import SplitResult

        wire = SplitResult(np.zeros(1, np.int64), np.zeros(1, np.int64), 1, 0)
        sent = time.perf_counter()
        predictions, exits = self.client.send_handoffs(tensors, wire)
        return BridgeSample(index, int(exits[0]), int(predictions[0]), "server", uart,
                            len(data), wire.sent_bytes,
                            (time.perf_counter() - sent) * 1e3, ticks)

    def _handoff(self, index: int, reader: FrameReader, uart: int) -> tuple[bytes, int]:
        data = bytearray()
        while len(data) < self.total:
            frame = reader.next()
            if frame.type != HANDOFF or len(frame.payload) < 12:
                raise TargetError(f"sample {index}: expected its hand-off frames, got frame "
                                  f"type {frame.type}")
            sample, offset, total = struct.unpack_from("<III", frame.payload)
            if sample != index or offset != len(data) or total != self.total:
                raise TargetError(
                    f"sample {index}: hand-off frame for sample {sample} at byte {offset} of "
                    f"{total} (expected byte {len(data)} of {self.total}): a frame was lost "
                    "or the firmware was built from another head bundle")
            data += frame.payload[12:]
            uart += FRAME_OVERHEAD + len(frame.payload)
        if len(data) != self.total:
            raise TargetError(f"sample {index}: {len(data)} hand-off bytes, expected "
                              f"{self.total}")
        return bytes(data), uart
