"""The hand-off wire format: tensors crossing a head/tail cut, compact and checked.

Layout (little-endian):
  magic b"EEHO" | version u8 | flags u8 (bit 0: zlib) | count u16 | body length u32 |
  body | sha256(body)[:16]
and the (possibly compressed) body holds, per tensor:
  name length u16 | name utf-8 | dtype u8 (1 int8, 2 float32) | rank u8 | dims u32 x rank |
  scale f32 | zero point i32 | data
int8 tensors carry the scale and zero point they were quantized with, so the
receiver can check them against its own model instead of trusting the sender.
The decoder is strict: every length is bounded, checked against the bytes that
remain and against the expected specs, and the digest must match.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eedge.errors import InputDataError

MAGIC = b"EEHO"
VERSION = 1
FLAG_ZLIB = 1
DIGEST_BYTES = 16
MAX_TENSORS = 64
MAX_RANK = 6
MAX_NAME = 256
DEFAULT_MAX_BYTES = 64 << 20
DTYPES = {1: np.dtype(np.int8), 2: np.dtype("<f4")}
CODES = {np.dtype(np.int8): 1, np.dtype(np.float32): 2}


@dataclass(frozen=True)
class HandoffTensor:
    name: str
    array: np.ndarray
    scale: float = 0.0
    zero_point: int = 0


def encode(tensors: Sequence[HandoffTensor], compress: bool = False) -> bytes:
    if not 0 < len(tensors) <= MAX_TENSORS:
        raise InputDataError(f"a hand-off carries 1 to {MAX_TENSORS} tensors")
    parts = []
    for t in tensors:
        array = np.ascontiguousarray(t.array)
        code = CODES.get(array.dtype)
        if code is None:
            raise InputDataError(f"hand-off tensor {t.name!r}: dtype {array.dtype} is not "
                                 "int8 or float32")
        name = t.name.encode("utf-8")
        parts.append(struct.pack("<H", len(name)) + name + struct.pack("<BB", code, array.ndim) +
                     struct.pack(f"<{array.ndim}I", *array.shape) +
                     struct.pack("<fi", t.scale, t.zero_point) + array.astype(
                         DTYPES[code], copy=False).tobytes())
    body = b"".join(parts)
    flags = 0
    if compress:
        body, flags = zlib.compress(body, 6), FLAG_ZLIB
    header = MAGIC + struct.pack("<BBHI", VERSION, flags, len(tensors), len(body))
    return header + body + hashlib.sha256(body).digest()[:DIGEST_BYTES]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise InputDataError(f"hand-off truncated while reading {what}")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def decode(payload: bytes, expected: Mapping[str, Mapping[str, Any]] | None = None,
           max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, HandoffTensor]:
    """Parse and check a hand-off; ``expected`` maps names to {shape, dtype[, quant]}."""
    if len(payload) > max_bytes:
        raise InputDataError(f"hand-off of {len(payload)} bytes exceeds the {max_bytes} limit")
    head = _Reader(payload)
    if head.take(4, "the magic") != MAGIC:
        raise InputDataError("not an eedge hand-off (bad magic)")
    version, flags, count, body_length = head.unpack("<BBHI", "the header")
    if version != VERSION:
        raise InputDataError(f"hand-off version {version} is not supported (expected {VERSION})")
    if flags & ~FLAG_ZLIB or not 0 < count <= MAX_TENSORS:
        raise InputDataError("hand-off header is invalid (flags or tensor count)")
    body = head.take(body_length, "the body")
    digest = head.take(DIGEST_BYTES, "the checksum")
    if head.pos != len(payload):
        raise InputDataError("hand-off has trailing bytes")
    if hashlib.sha256(body).digest()[:DIGEST_BYTES] != digest:
        raise InputDataError("hand-off checksum mismatch (corrupted in transit)")
    if flags & FLAG_ZLIB:
        inflater = zlib.decompressobj()
        try:
            body = inflater.decompress(body, max_bytes)
        except zlib.error as exc:
            raise InputDataError(f"hand-off body does not decompress: {exc}") from None
        if inflater.unconsumed_tail:
            raise InputDataError(f"hand-off expands beyond the {max_bytes}-byte limit")
    reader = _Reader(body)
    tensors: dict[str, HandoffTensor] = {}
    for _ in range(count):
        (name_length,) = reader.unpack("<H", "a name length")
        if name_length > MAX_NAME:
            raise InputDataError("hand-off tensor name too long")
        try:
            name = reader.take(name_length, "a name").decode("utf-8")
        except UnicodeDecodeError:
            raise InputDataError("hand-off tensor name is not UTF-8") from None
        code, rank = reader.unpack("<BB", "a tensor type")
        if code not in DTYPES or rank > MAX_RANK:
            raise InputDataError(f"hand-off tensor {name!r}: bad dtype code or rank")
        dims = reader.unpack(f"<{rank}I", "tensor dimensions")
        scale, zero_point = reader.unpack("<fi", "quantization parameters")
        size = int(np.prod(dims, dtype=np.int64)) * DTYPES[code].itemsize
        if size > max_bytes:
            raise InputDataError(f"hand-off tensor {name!r} is too large")
        array = np.frombuffer(reader.take(size, f"the data of {name!r}"), DTYPES[code])
        if name in tensors:
            raise InputDataError(f"hand-off repeats tensor {name!r}")
        tensors[name] = HandoffTensor(name, array.reshape(dims).copy(), scale, zero_point)
    if reader.pos != len(body):
        raise InputDataError("hand-off body has trailing bytes")
    if expected is not None:
        _check(tensors, expected)
    return tensors


def _check(tensors: Mapping[str, HandoffTensor], expected: Mapping[str, Mapping[str, Any]]) -> None:
    if set(tensors) != set(expected):
        raise InputDataError(f"hand-off carries {sorted(tensors)}; the tail expects "
                             f"{sorted(expected)}")
    for name, spec in expected.items():
        t = tensors[name]
        want = [d for d in spec["shape"][1:]]
        if list(t.array.shape[1:]) != [int(d) for d in want]:
            raise InputDataError(f"hand-off tensor {name!r} has shape {list(t.array.shape)}; "
                                 f"expected (N, {', '.join(map(str, want))})")
        if t.array.dtype != np.dtype(spec["dtype"]):
            raise InputDataError(f"hand-off tensor {name!r} is {t.array.dtype}, expected "
                                 f"{spec['dtype']}")
        quant = spec.get("quant")
        if quant and (abs(t.scale - quant["scale"][0]) > 1e-6 * abs(quant["scale"][0]) or
                      t.zero_point != quant["zero_point"][0]):
            raise InputDataError(f"hand-off tensor {name!r} was quantized with different "
                                 "parameters than the tail expects")
