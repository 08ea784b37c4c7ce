"""The hand-off on the wire: KServe v2 REST with the binary tensor data extension.

A request, exactly as `eedge.split.client.Client` sends it and as the planner
counts it (``request_head`` + ``encode_request``)::

    POST /v2/models/{model}/infer HTTP/1.1
    Host: {host:port}
    Content-Type: application/octet-stream
    Inference-Header-Content-Length: {J}
    Content-Length: {J + tensor bytes}

    {J bytes of JSON header}{raw bytes of input 0}{raw bytes of input 1}...

The JSON header is compact (no whitespace)::

    {"inputs":[{"name":"relu","shape":[rows,8,8,8],"datatype":"INT8",
                "parameters":{"binary_data_size":512*rows,
                              "eedge_scale":0.0097...,"eedge_zero_point":-128}}],
     "outputs":[{"name":"predictions","parameters":{"binary_data":true}},
                {"name":"exit_index","parameters":{"binary_data":true}}]}

Tensors are C-order, little-endian, batch first. An int8 hand-off carries the
scale and zero point it was quantized with (``eedge_scale``,
``eedge_zero_point``, the numbers in the head's manifest), so the tail can
refuse a hand-off quantized for another model; float32 hand-offs travel as
FP32 without them. Per request the cost is a fixed header (request line,
HTTP headers, JSON header: a few hundred bytes, growing by a digit now and
then with the row count) plus the tensor bytes of each row; sending several
rows per request amortizes the header.

Answers come back the same way when the server honours the extension (an
``Inference-Header-Content-Length`` response header), or as plain v2 JSON;
``decode_response`` reads both and checks every length against the body.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eedge.errors import InputDataError, TargetError

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"

# v2 datatypes a tail can take or a generic server can answer with (little-endian)
V2_TYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "INT8": np.dtype("i1"), "UINT8": np.dtype("u1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
HANDOFF_TYPES = {np.dtype(np.int8): "INT8", np.dtype(np.float32): "FP32"}
MAX_RANK = 8
# what the client asks an eedge tail for (``probabilities`` it can ask for too)
EEDGE_OUTPUTS = ("predictions", "exit_index")


@dataclass(frozen=True)
class WireTensor:
    """One hand-off tensor: its array (batch first) and, for int8, its quantization."""

    name: str
    array: np.ndarray
    scale: float | None = None
    zero_point: int | None = None


@dataclass(frozen=True)
class TensorSpec:
    """What the header of a hand-off tensor says, without its data (for planning)."""

    name: str
    row_shape: tuple[int, ...]
    datatype: str                      # INT8 or FP32
    scale: float | None = None
    zero_point: int | None = None

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * V2_TYPES[self.datatype].itemsize


def handoff_datatype(dtype: np.dtype) -> str:
    datatype = HANDOFF_TYPES.get(np.dtype(dtype))
    if datatype is None:
        raise InputDataError(f"a hand-off tensor is {np.dtype(dtype)}; only int8 and float32 "
                             "travel on the wire")
    return datatype


def _input_header(spec: TensorSpec, rows: int, binary: bool) -> dict[str, Any]:
    header: dict[str, Any] = {"name": spec.name, "shape": [rows, *spec.row_shape],
                              "datatype": spec.datatype}
    parameters: dict[str, Any] = {}
    if binary:
        parameters["binary_data_size"] = rows * spec.row_bytes
    if spec.datatype == "INT8":
        if spec.scale is None or spec.zero_point is None:
            raise InputDataError(f"int8 hand-off {spec.name!r} has no scale and zero point: "
                                 "export the head with --int8 so its manifest has them")
        parameters["eedge_scale"] = float(spec.scale)
        parameters["eedge_zero_point"] = int(spec.zero_point)
    if parameters:
        header["parameters"] = parameters
    return header


def _compact(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


def json_header(specs: Sequence[TensorSpec], rows: int, outputs: Sequence[str],
                binary: bool = True) -> bytes:
    """The JSON header of a binary request for ``rows`` rows (no tensor data)."""
    body: dict[str, Any] = {"inputs": [_input_header(s, rows, binary) for s in specs]}
    if outputs:
        body["outputs"] = [{"name": n, "parameters": {"binary_data": True}} if binary
                           else {"name": n} for n in outputs]
    return _compact(body)


def spec_of(tensor: WireTensor) -> TensorSpec:
    array = tensor.array
    if array.ndim < 1 or array.ndim > MAX_RANK:
        raise InputDataError(f"hand-off tensor {tensor.name!r} has rank {array.ndim}; give "
                             f"a batch-first array of rank 1 to {MAX_RANK}")
    return TensorSpec(tensor.name, tuple(int(d) for d in array.shape[1:]),
                      handoff_datatype(array.dtype), tensor.scale, tensor.zero_point)


def encode_request(tensors: Sequence[WireTensor], outputs: Sequence[str],
                   binary: bool = True) -> tuple[bytes, int | None]:
    """The body of an infer request and its JSON header's length (None: plain JSON)."""
    if not tensors:
        raise InputDataError("a hand-off carries at least one tensor")
    rows = {int(t.array.shape[0]) for t in tensors if t.array.ndim}
    if len(rows) != 1:
        raise InputDataError(f"hand-off tensors disagree on the row count: {sorted(rows)}")
    (n,) = rows
    specs = [spec_of(t) for t in tensors]
    for t in tensors:
        if t.array.dtype.kind == "f" and not np.isfinite(t.array).all():
            raise InputDataError(f"hand-off tensor {t.name!r} holds NaN or infinity; the "
                                 "head's output overflowed (check its inputs)")
    if not binary:
        body = json.loads(json_header(specs, n, outputs, binary=False))
        for item, t in zip(body["inputs"], tensors):
            item["data"] = t.array.reshape(-1).tolist()
        return _compact(body), None
    header = json_header(specs, n, outputs)
    data = [np.ascontiguousarray(t.array, V2_TYPES[s.datatype]).tobytes()
            for t, s in zip(tensors, specs)]
    return b"".join([header, *data]), len(header)


def request_headers(json_length: int | None) -> dict[str, str]:
    """The headers the client sets besides Host and Content-Length (in this order)."""
    if json_length is None:
        return {"Content-Type": JSON_CONTENT_TYPE}
    return {"Content-Type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(json_length)}


def request_head(host: str, path: str, content_length: int,
                 json_length: int | None) -> bytes:
    """The request line and headers an HTTP/1.1 client writes before the body."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}",
             *(f"{k}: {v}" for k, v in request_headers(json_length).items()),
             f"Content-Length: {content_length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def infer_path(model: str) -> str:
    return f"/v2/models/{model}/infer"


def request_bytes(specs: Sequence[TensorSpec], rows: int, outputs: Sequence[str],
                  model: str, host: str) -> int:
    """Bytes on the wire of one binary request of ``rows`` rows (everything the client
    writes to the socket), computed without building the tensors."""
    header = json_header(specs, rows, outputs)
    length = len(header) + rows * sum(s.row_bytes for s in specs)
    return len(request_head(host, infer_path(model), length, len(header))) + length


def _bad(what: str) -> TargetError:
    return TargetError(f"the tail server's answer is malformed: {what}")


def is_v2_shape(value: Any) -> bool:
    """A v2 JSON shape: a list of at most MAX_RANK integers (not bools) in [0, 2**31)."""
    return isinstance(value, list) and len(value) <= MAX_RANK and all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 31 for d in value)


def _shape(value: Any, name: str) -> list[int]:
    if not is_v2_shape(value):
        raise _bad(f"output {name!r} has shape {value!r}")
    return value


def decode_response(body: bytes, json_length: int | None,
                    max_elements: int = 1 << 28) -> dict[str, np.ndarray]:
    """v2 infer response (binary extension or plain JSON) -> output arrays by name."""
    if json_length is not None and not 0 < json_length <= len(body):
        raise _bad(f"{HEADER_LENGTH} is {json_length} for a body of {len(body)} bytes")
    end = len(body) if json_length is None else json_length
    try:
        reply = json.loads(body[:end])
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"its JSON does not parse ({exc})") from None
    outputs = reply.get("outputs") if isinstance(reply, dict) else None
    if not isinstance(outputs, list) or not outputs:
        raise _bad("it has no 'outputs' list")
    arrays: dict[str, np.ndarray] = {}
    offset = end
    for item in outputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _bad("an output is not an object with a name")
        name = item["name"]
        datatype = item.get("datatype")
        if datatype not in V2_TYPES:
            raise _bad(f"output {name!r} has datatype {datatype!r}")
        if name in arrays:
            raise _bad(f"output {name!r} appears twice")
        shape = _shape(item.get("shape"), name)
        count = int(np.prod(shape, dtype=np.int64))
        if count > max_elements:
            raise _bad(f"output {name!r} has {count} elements")
        dtype = V2_TYPES[datatype]
        parameters = item.get("parameters") or {}
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is not None:
            if json_length is None:
                raise _bad(f"output {name!r} is binary but the answer has no {HEADER_LENGTH}")
            if not isinstance(size, int) or isinstance(size, bool) or \
                    size != count * dtype.itemsize or offset + size > len(body):
                raise _bad(f"output {name!r}: binary_data_size {size!r} does not match its "
                           f"shape {shape} ({datatype}) or the {len(body) - offset} bytes left")
            arrays[name] = np.frombuffer(body, dtype, count, offset).reshape(shape).copy()
            offset += size
            continue
        data = item.get("data")
        if not isinstance(data, list):
            raise _bad(f"output {name!r} has neither data nor binary_data_size")
        try:
            array = np.asarray(data, dtype=dtype)
        except (TypeError, ValueError, OverflowError):
            raise _bad(f"output {name!r} holds values that are not {datatype}") from None
        if array.size != count:
            raise _bad(f"output {name!r} has {array.size} values for shape {shape}")
        arrays[name] = array.reshape(shape)
    if offset != len(body) and json_length is not None:
        raise _bad(f"{len(body) - offset} bytes follow the last output")
    return arrays


def specs_from_manifest(tensors: Iterable[Mapping[str, Any]],
                        quant: Mapping[str, Mapping[str, Any] | None],
                        wire_dtype: str) -> list[TensorSpec]:
    """Hand-off specs from manifest tensor entries (shape with a symbolic batch first).

    ``wire_dtype`` is ``int8`` or ``float32``; int8 takes its scale and zero
    point from ``quant`` (tensor name -> the manifest's quant entry).
    """
    specs = []
    for t in tensors:
        row = tuple(int(d) for d in t["shape"][1:])
        if wire_dtype == "int8":
            q = quant.get(t["name"])
            if not q:
                raise InputDataError(f"hand-off {t['name']!r} has no int8 quantization in the "
                                     "bundle: export it with --int8, or plan float32 hand-offs")
            specs.append(TensorSpec(t["name"], row, "INT8", q["scale"][0], q["zero_point"][0]))
        elif wire_dtype == "float32":
            specs.append(TensorSpec(t["name"], row, "FP32"))
        else:
            raise InputDataError(f"unknown hand-off dtype {wire_dtype!r}: int8 or float32")
    return specs


# --- legacy: the base64 ``eedge_handoff`` BYTES input of the old hand-written server ---
# Layout (little-endian): magic b"EEHO" | version u8 | flags u8 (bit 0: zlib) | count u16 |
# body length u32 | body | sha256(body)[:16]; per tensor in the body: name length u16 |
# name | dtype u8 (1 int8, 2 float32) | rank u8 | dims u32 x rank | scale f32 |
# zero point i32 | data. The client no longer sends it (it cost 7.6 KB per 1.5 KB row
# as base64 JSON); it stays only while eedge.split.server still decodes it.

MAGIC = b"EEHO"
VERSION = 1
FLAG_ZLIB = 1
DIGEST_BYTES = 16
MAX_TENSORS = 64
_EEHO_MAX_RANK = 6
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
        if code not in DTYPES or rank > _EEHO_MAX_RANK:
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
