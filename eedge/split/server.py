"""The tail model behind ``eedge serve``: loading, metadata and strict input checks.

The serving itself is KServe's model server (``eedge.split.kserve_tail``): this
module holds what does not depend on the transport, so the KServe model, the Ray
Serve deployment and the tests share one definition of a valid request:
  - ``TailModel.load`` opens a tail bundle (``eedge split export``);
  - ``TailModel.check_input`` turns one v2 tensor (name, datatype, shape, data
    as a flat list or raw little-endian bytes, parameters) into the array the
    tail's first stage takes, refusing anything malformed with ``RequestError``
    (booleans or floats in shapes, sizes past the limits, nested or boolean
    data, integers out of the dtype's range, NaN/infinity, INT8 hand-offs
    quantized with another scale or zero point);
  - ``TailModel.check_request`` does that for every input of a request
    (duplicates, missing inputs, rows that disagree or exceed the limit);
  - ``TailModel.run`` runs the tail cascade and numbers exits as the whole model.

``make_server`` (an in-process KServe server on a background thread, for tests,
benchmarks and notebooks) is kept here for existing callers.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import EedgeError, InputDataError
from eedge.ir.bundle import load_bundle
from eedge.runtime.cascade import Cascade
from eedge.split.encoding import decode

V2_TYPES = {"FP32": np.dtype("<f4"), "INT8": np.dtype(np.int8), "INT64": np.dtype("<i8")}
NUMPY_TO_V2 = {np.dtype(np.float32): "FP32", np.dtype(np.int8): "INT8",
               np.dtype(np.int64): "INT64"}
INT_RANGES = {"INT8": (-128, 127), "INT64": (-(1 << 63), (1 << 63) - 1)}
MAX_DIM = 1 << 31
HANDOFF_INPUT = "eedge_handoff"     # one BYTES element: the ``eedge.split.encoding`` format
OUTPUTS = ("predictions", "exit_index", "probabilities")


class RequestError(Exception):
    """A request the tail refuses: the status to answer and one line saying why."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _bad(message: str) -> RequestError:
    return RequestError(HTTPStatus.BAD_REQUEST, message)


def _refuse_nonfinite(name: str, array: np.ndarray) -> None:
    """400 for NaN/inf, checked in the model's dtype (FP32 1e39 arrives as inf)."""
    if array.dtype.kind != "f":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.argmax(bad.reshape(len(array), -1).any(axis=1))) if array.ndim else 0
        raise _bad(f"input {name!r}: row {row} holds NaN or infinity (in {array.dtype}); "
                   "send finite numbers")


def _strict_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class TailModel:
    """The tail cascade plus what the protocol needs to describe and check it."""

    name: str
    cascade: Cascade
    exit_offset: int                       # index of the tail's first exit in the model
    inputs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, bundle_dir: Path, runtime: str | None = None,
             name: str | None = None) -> "TailModel":
        bundle = load_bundle(bundle_dir)
        split = bundle.manifest.get("split") or {}
        if split.get("role") != "tail":
            raise InputDataError(f"{bundle_dir} is not a tail bundle; make one with "
                                 "`eedge split export BUNDLE --after CUT`")
        # inputs are checked per request in check_request(); outputs per request after
        # the batched run, so one request's overflow does not fail the others
        cascade = Cascade(bundle, runtime=runtime, check_finite=False)
        offset = int(split.get("head_exits", 0))
        return cls(name or bundle.manifest["model"]["name"], cascade, offset,
                   cascade.raw_input_specs())

    @property
    def specs(self) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in self.inputs}

    @property
    def num_classes(self) -> int:
        return int(self.cascade.exits[-1]["num_classes"])

    def input_types(self) -> list[dict[str, Any]]:
        """v2 metadata of the inputs (batch dimension -1). v2 metadata has no place
        for quantization: INT8 hand-offs say theirs per request (``eedge_scale``,
        ``eedge_zero_point``) and the server checks them."""
        return [{"name": spec["name"], "datatype": NUMPY_TO_V2[np.dtype(spec["dtype"])],
                 "shape": [-1] + [int(d) for d in spec["shape"][1:]]} for spec in self.inputs]

    def output_types(self) -> list[dict[str, Any]]:
        return [{"name": "predictions", "datatype": "INT64", "shape": [-1]},
                {"name": "exit_index", "datatype": "INT64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, self.num_classes]}]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "versions": ["1"], "platform": "eedge",
                "runtime": self.cascade.runtime, "inputs": self.input_types(),
                "outputs": self.output_types()}

    @staticmethod
    def _quant(spec: Mapping[str, Any]) -> tuple[float, int] | None:
        quant = spec.get("quant")
        if np.dtype(spec["dtype"]) != np.int8 or not quant:
            return None
        return float(quant["scale"][0]), int(quant["zero_point"][0])

    # ---- request checks -------------------------------------------------------------

    def check_input(self, name: Any, datatype: Any, shape: Any, data: Any,
                    parameters: Mapping[str, Any] | None, max_rows: int) -> np.ndarray:
        """One v2 tensor -> the array the first stage takes (``data``: a flat list of
        numbers, or ``bytes`` holding the little-endian tensor)."""
        specs = self.specs
        if not isinstance(name, str) or name not in specs:
            raise _bad(f"unknown input {name!r}; the tail takes {sorted(specs)}")
        spec = specs[name]
        want = NUMPY_TO_V2[np.dtype(spec["dtype"])]
        if datatype != want:
            raise _bad(f"input {name!r} has datatype {datatype!r}; send {want}")
        expect = [int(d) for d in spec["shape"][1:]]
        dims = "[N, " + ", ".join(map(str, expect)) + "]"
        if not isinstance(shape, (list, tuple)) or not all(
                _strict_int(d) and 0 <= d < MAX_DIM for d in shape):
            raise _bad(f"input {name!r}: shape must be a list of non-negative integers "
                       f"{dims}; got {str(shape)[:80]}")
        shape = [int(d) for d in shape]
        if len(shape) != len(expect) + 1 or shape[1:] != expect:
            raise _bad(f"input {name!r} has shape {shape}; expected {dims}")
        rows = shape[0]
        if not 0 < rows <= max_rows:
            raise RequestError(HTTPStatus.BAD_REQUEST if rows == 0 else
                               HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"input {name!r}: {rows} rows; send 1 to {max_rows} per request")
        count = math.prod(shape)
        dtype = V2_TYPES[want]
        if isinstance(data, (bytes, bytearray, memoryview)):
            if len(data) != count * dtype.itemsize:
                raise _bad(f"input {name!r}: {len(data)} bytes of data; shape {shape} of "
                           f"{want} needs {count * dtype.itemsize}")
            array = np.frombuffer(data, dtype).reshape(shape)
        else:
            array = self._from_list(name, want, data, count).reshape(shape)
        self._check_quant(name, spec, parameters)
        _refuse_nonfinite(name, array)
        return array

    @staticmethod
    def _from_list(name: str, want: str, data: Any, count: int) -> np.ndarray:
        if not isinstance(data, (list, tuple)) or len(data) != count:
            raise _bad(f"input {name!r}: data must be a flat list of {count} numbers")
        kinds = set(map(type, data))
        if not kinds <= {int, float}:
            bad = sorted(k.__name__ for k in kinds - {int, float})
            raise _bad(f"input {name!r}: data must be a flat list of numbers, not "
                       f"{', '.join(bad)} (nested lists, booleans and strings are refused)")
        if want in INT_RANGES:
            low, high = INT_RANGES[want]
            if float in kinds and not all(float(v).is_integer() for v in data):
                raise _bad(f"input {name!r}: {want} data must be integers")
            try:
                if min(data) < low or max(data) > high:
                    raise _bad(f"input {name!r}: {want} data must lie in [{low}, {high}]")
            except (TypeError, ValueError):  # float('nan') compares false: caught above
                raise _bad(f"input {name!r}: {want} data must be integers") from None
            return np.asarray([int(v) for v in data] if float in kinds else data,
                              V2_TYPES[want])
        try:
            wide = np.asarray(data, np.float64)
        except OverflowError:
            raise _bad(f"input {name!r}: a number is too large for a float") from None
        with np.errstate(over="ignore"):
            return wide.astype(V2_TYPES[want])

    def _check_quant(self, name: str, spec: Mapping[str, Any],
                     parameters: Mapping[str, Any] | None) -> None:
        params = dict(parameters or {})
        given = {k: params[k] for k in ("eedge_scale", "eedge_zero_point") if k in params}
        quant = self._quant(spec)
        if quant is None:
            if given:
                raise _bad(f"input {name!r} is not an INT8 hand-off: drop {sorted(given)}")
            return
        if not given:
            return  # plain v2 tensors: the datatype and range are checked, nothing else to check
        scale, zero_point = given.get("eedge_scale"), given.get("eedge_zero_point")
        if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and
                math.isfinite(scale) and _strict_int(zero_point)):
            raise _bad(f"input {name!r}: eedge_scale must be a finite number and "
                       "eedge_zero_point an integer")
        if abs(scale - quant[0]) > 1e-6 * abs(quant[0]) or zero_point != quant[1]:
            raise _bad(f"input {name!r} was quantized with scale {scale:g}, zero point "
                       f"{zero_point}; this tail takes scale {quant[0]:g}, zero point "
                       f"{quant[1]} (export head and tail from the same bundle)")

    def check_request(self, tensors: Sequence[tuple[Any, Any, Any, Any, Any]],
                      max_rows: int) -> tuple[dict[str, np.ndarray], int]:
        """(name, datatype, shape, data, parameters) per input -> arrays and rows."""
        if not tensors:
            raise _bad("request needs a non-empty 'inputs' list")
        if len(tensors) == 1 and tensors[0][0] == HANDOFF_INPUT:
            arrays = self._handoff(*tensors[0])
        else:
            arrays = {}
            for name, datatype, shape, data, parameters in tensors:
                if isinstance(name, str) and name in arrays:
                    raise _bad(f"input {name!r} appears twice; send each input once")
                arrays[name] = self.check_input(name, datatype, shape, data, parameters,
                                                max_rows)
            missing = sorted(set(self.specs) - set(arrays))
            if missing:
                raise _bad(f"missing inputs: {missing}")
        rows = {a.shape[0] for a in arrays.values()}
        if len(rows) != 1:
            raise _bad(f"inputs disagree on the number of rows: {sorted(rows)}")
        n = rows.pop()
        if not 0 < n <= max_rows:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE if n else
                               HTTPStatus.BAD_REQUEST,
                               f"{n} rows; send 1 to {max_rows} per request")
        return arrays, n

    def _handoff(self, name: str, datatype: Any, shape: Any, data: Any,
                 parameters: Any) -> dict[str, np.ndarray]:
        """One BYTES element in the ``eedge.split.encoding`` format (base64 in JSON)."""
        if datatype != "BYTES" or not isinstance(data, (list, tuple)) or len(data) != 1:
            raise _bad(f"{HANDOFF_INPUT} must be one BYTES element (base64 in JSON)")
        item = data[0]
        try:
            payload = base64.b64decode(item, validate=True) if isinstance(item, str) \
                else bytes(item)
            tensors = decode(payload, self.specs)
        except (TypeError, ValueError, EedgeError) as exc:
            raise _bad(f"bad hand-off: {exc}") from None
        arrays = {n: t.array for n, t in tensors.items()}
        for n, array in arrays.items():
            _refuse_nonfinite(n, array)
        return arrays

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The tail cascade on checked inputs; rows whose float logits overflow get
        probabilities that are not finite, which the server refuses per request."""
        result = self.cascade.infer(arrays, raw=True)
        return {"predictions": result.predictions.astype(np.int64),
                "exit_index": (result.exit_index + self.exit_offset).astype(np.int64),
                "probabilities": result.probabilities.astype(np.float32)}


def make_server(bundle_dir: Path, host: str = "127.0.0.1", port: int = 8000,
                runtime: str | None = None, max_batch: int = 32, max_delay_ms: float = 2.0,
                max_body_bytes: int = 16 << 20, max_rows: int = 256,
                name: str | None = None, grpc_port: int | None = None) -> Any:
    """KServe's model server with the tail, on a background thread: ``.start()``,
    ``.url``, ``.grpc_address``, ``.stop()`` (graceful), ``.model``."""
    from eedge.split.kserve_tail import ServeOptions, TailServer, build_model

    model = build_model(bundle_dir, runtime=runtime, name=name, max_batch=max_batch,
                        max_delay_ms=max_delay_ms, max_rows=max_rows)
    return TailServer(model, ServeOptions(host=host, port=port, grpc_port=grpc_port,
                                          max_body_bytes=max_body_bytes))
