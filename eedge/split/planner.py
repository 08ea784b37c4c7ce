"""Where to cut a model between a device and a server, for a given link.

For a cut after stage c, a sample runs stages 0..c on the device; if one of
their exits takes it, the network is never touched. Otherwise its hand-off
crosses the link (one round trip plus bytes / bandwidth) and the server runs
the remaining stages, with their exits. So, with P(k) the share of samples
that reach stage k:
    E[latency] = sum_{k<=c} P(k) d_k + P(c+1) (rtt + bytes_c / bw) + sum_{k>c} P(k) s_k
Cut c = -1 sends the input itself; c = last stage keeps everything on the
device.

bytes_c is what the client actually writes to the socket per hand-off (see
`eedge.split.encoding`): the tensor bytes of one row (int8, one byte per
element, when the bundle has int8 stages; float32 otherwise) plus the share
of one request's fixed header (request line, HTTP headers and the v2 JSON
header with the tensors' names, shapes and quantization). A device sends each
sample it cannot decide as it comes, so by default a request carries one row
and pays the whole header; ``rows_per_request`` > 1 models a client that
batches hand-offs (the header is amortized over the rows; the round trip is
still paid once per sample, as each sample waits for its request's answer).
The header depends a little on the server's host name and the model's name
(one byte per character) and on the row count's digits; `wire_cost` computes
it exactly for given values.

A cut is named by the value `eedge split export --after` takes: ``server``
(c = -1), the stage index, or ``device`` (the last stage); `split plan`
prints exactly these, and `parse_cut` reads them back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from eedge.errors import InputDataError
from eedge.ir.bundle import Bundle
from eedge.numbers import check_range, parse_float
from eedge.profiling.stats import reach_probabilities
from eedge.split.encoding import EEDGE_OUTPUTS, TensorSpec, request_bytes, specs_from_manifest

_BANDWIDTH = re.compile(r"^\s*([0-9.]+)\s*([kKmMgG]?)(bit|b|byte|B)/s\s*$")
_MULTIPLIER = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_bandwidth(text: str) -> float:
    """'2Mbit/s', '500kbit/s', '10MB/s' -> bits per second."""
    match = _BANDWIDTH.match(text)
    if not match:
        raise InputDataError(f"bad bandwidth {text!r}: write e.g. 2Mbit/s, 500kbit/s or 10MB/s")
    number = parse_float(match.group(1), f"bandwidth {text!r}")
    bits = number * _MULTIPLIER[match.group(2).lower()] * (
        8 if match.group(3) in ("B", "byte") else 1)
    check_range(bits, f"bandwidth {text!r}", 0, 1e15, low_open=True)
    return bits


def parse_duration_ms(text: str) -> float:
    match = re.match(r"^\s*([0-9.]+)\s*(ms|s|us)\s*$", text)
    if not match:
        raise InputDataError(f"bad duration {text!r}: write e.g. 20ms")
    ms = parse_float(match.group(1), f"duration {text!r}") * {
        "ms": 1.0, "s": 1000.0, "us": 0.001}[match.group(2)]
    check_range(ms, f"duration {text!r}", 0, 86_400_000)  # at most a day
    return ms


def _crossing(bundle: Bundle) -> list[list[dict[str, Any]]]:
    """Manifest entries of the tensors crossing each cut: index c+1 for the cut after c."""
    stages = bundle.stages
    made_by = {t["name"]: -1 for t in bundle.manifest["inputs"]}
    entries = {t["name"]: t for t in bundle.manifest["inputs"]}
    for stage in stages:
        for t in stage["outputs"]:
            made_by.setdefault(t["name"], stage["index"])
            entries[t["name"]] = t
    result = []
    for c in range(-1, len(stages)):
        names = dict.fromkeys(t["name"] for s in stages[c + 1:] for t in s["inputs"]
                              if made_by.get(t["name"], -1) <= c)
        result.append([entries[n] for n in names])
    return result


def cut_elements(bundle: Bundle) -> list[int]:
    """Elements per sample crossing each cut: index c+1 for the cut after stage c."""
    return [sum(_elements(t) for t in crossing) for crossing in _crossing(bundle)]


def _elements(tensor: dict[str, Any]) -> int:
    itemsize = {"float32": 4, "int8": 1, "int32": 4, "int64": 8}.get(tensor["dtype"], 4)
    return tensor["bytes_per_sample"] // itemsize


DEFAULT_HOST = "127.0.0.1:8000"


def handoff_dtype(bundle: Bundle) -> str:
    """``int8`` when every stage has int8 files (an int8 head hands off int8), else float32."""
    return "int8" if bundle.has_int8_stages else "float32"


def _int8_io(bundle: Bundle) -> dict[str, dict[str, Any]]:
    """Tensor name -> its int8 manifest entry (shape as the int8 stages see it, quant)."""
    found: dict[str, dict[str, Any]] = {}
    for stage in bundle.stages:
        io = (stage.get("io") or {}).get("tflite_int8") or {}
        for t in [*io.get("inputs", []), *io.get("outputs", [])]:
            found.setdefault(t["name"], t)
    return found


@dataclass
class WireCost:
    """Bytes on the wire of one hand-off request (KServe v2 binary, `encoding.py`)."""

    rows: int              # rows (samples) per request
    row_bytes: int         # tensor bytes of one row
    header_bytes: int      # everything else in a request: request line, HTTP and JSON headers

    @property
    def request_bytes(self) -> int:
        return self.header_bytes + self.rows * self.row_bytes

    @property
    def per_sample(self) -> float:
        return self.request_bytes / self.rows if self.rows else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"rows_per_request": self.rows, "tensor_bytes_per_sample": self.row_bytes,
                "header_bytes_per_request": self.header_bytes,
                "bytes_per_request": self.request_bytes,
                "bytes_per_sample": self.per_sample}


def specs_wire_cost(specs: Sequence[TensorSpec], rows: int, model_name: str,
                    host: str = DEFAULT_HOST,
                    outputs: Sequence[str] = EEDGE_OUTPUTS) -> WireCost:
    """The cost of sending ``rows`` rows of these hand-off tensors in one request."""
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise InputDataError(f"rows per request must be a positive integer, got {rows!r}")
    if not specs:
        return WireCost(rows, 0, 0)
    row_bytes = sum(s.row_bytes for s in specs)
    total = request_bytes(specs, rows, outputs, model_name, host)
    return WireCost(rows, row_bytes, total - rows * row_bytes)


def wire_cost(bundle: Bundle, after_stage: int, rows: int = 1, dtype: str | None = None,
              model_name: str | None = None, host: str = DEFAULT_HOST) -> WireCost:
    """Bytes the client sends for the cut after ``after_stage`` (-1: the model's input),
    ``rows`` hand-offs per request, to model ``model_name`` (default: the name
    `split export` gives the tail) on ``host``."""
    crossing = _crossing(bundle)[after_stage + 1]
    wire = dtype or handoff_dtype(bundle)
    if wire == "int8":
        int8 = _int8_io(bundle)
        entries = [int8.get(t["name"], t) for t in crossing]
        quant = {n: t.get("quant") for n, t in int8.items()}
    else:
        entries, quant = crossing, {}
    specs = specs_from_manifest(entries, quant, wire)
    name = model_name or f"{bundle.manifest['model']['name']}_tail"
    return specs_wire_cost(specs, rows, name, host)


ALL_ON_SERVER = "server"
ALL_ON_DEVICE = "device"


def cut_name(after_stage: int, stages: int) -> str:
    """The `split export --after` value of the cut after ``after_stage``."""
    if after_stage < 0:
        return ALL_ON_SERVER
    return ALL_ON_DEVICE if after_stage >= stages - 1 else str(after_stage)


def parse_cut(text: str, stages: int) -> int | str:
    """An `--after` value -> a stage index (-1: all on the server, stages - 1: all on
    the device), or the text itself as a tensor name.

    Accepts every name `cut_name` gives, and the raw indices the planner's JSON
    holds (-1 and the last stage), so whatever `split plan` shows can be exported.
    """
    value = text.strip()
    if value.lower() == ALL_ON_SERVER:
        return -1
    if value.lower() == ALL_ON_DEVICE:
        return stages - 1
    if re.fullmatch(r"-?[0-9]+", value):
        index = int(value)
        if not -1 <= index < stages:
            raise InputDataError(f"no cut after stage {index}: the bundle has {stages} stages; "
                                 f"use {ALL_ON_SERVER}, 0..{stages - 2} or {ALL_ON_DEVICE}")
        return index
    return value


@dataclass
class CutOption:
    after_stage: int        # -1: all on the server; last stage: all on the device
    device: float           # expected time on the device
    transfer: float         # expected time on the link
    server: float           # expected time on the server
    total: float
    payload_bytes: int      # tensor bytes of one hand-off (a sample no device exit takes)
    expected_bytes: float   # bytes on the wire per sample on average (headers included)
    after: str = ""         # the `split export --after` value of this cut
    header_bytes: int = 0   # fixed bytes of one request (request line, HTTP, JSON header)
    wire_bytes: float = 0.0  # bytes on the wire per hand-off: payload + header / rows
    handoff_dtype: str = "int8"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan(bundle: Bundle, device: Sequence[float], server: Sequence[float],
         bandwidth_bps: float, rtt_ms: float, exit_rates: Sequence[float],
         rows_per_request: int = 1, dtype: str | None = None, model_name: str | None = None,
         host: str = DEFAULT_HOST) -> list[CutOption]:
    """Every stage-boundary cut with its expected latency (ms) and traffic."""
    stages = len(bundle.stages)
    if len(device) != stages or len(server) != stages:
        raise InputDataError(f"profiles describe {len(device)} and {len(server)} stages; the "
                             f"bundle has {stages}")
    reach = reach_probabilities(exit_rates, [e["stage"] for e in bundle.exits], stages) + [0.0]
    wire = dtype or handoff_dtype(bundle)
    options = []
    for c in range(-1, stages):
        on_device = sum(reach[k] * device[k] for k in range(c + 1))
        send = reach[c + 1] if c + 1 < stages else 0.0
        cost = wire_cost(bundle, c, rows_per_request, wire, model_name, host) \
            if c + 1 < stages else WireCost(rows_per_request, 0, 0)
        link = send * (rtt_ms + cost.per_sample * 8 / bandwidth_bps * 1e3) \
            if c + 1 < stages else 0.0
        on_server = sum(reach[k] * server[k] for k in range(c + 1, stages))
        options.append(CutOption(c, on_device, link, on_server, on_device + link + on_server,
                                 cost.row_bytes, send * cost.per_sample, cut_name(c, stages),
                                 cost.header_bytes, cost.per_sample, wire))
    return options


def best(options: Sequence[CutOption]) -> CutOption:
    return min(options, key=lambda o: (o.total, -o.after_stage))


def stage_latencies_ms(report: dict[str, Any]) -> list[float]:
    """Per-stage milliseconds from an `eedge profile --report` file (estimates for MCUs)."""
    try:
        if report["unit"] == "ms":
            return [float(s["value"]) for s in report["stages"]]
        return [float(s["estimates"]["ms"]) for s in report["stages"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputDataError(f"not a profile report ({exc}); make one with `eedge profile "
                             "--report`") from exc
