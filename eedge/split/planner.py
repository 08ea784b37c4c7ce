"""Where to cut a model between a device and a server, for a given link.

For a cut after stage c, a sample runs stages 0..c on the device; if one of
their exits takes it, the network is never touched. Otherwise the int8
hand-off crosses the link (one round trip plus bytes / bandwidth) and the
server runs the remaining stages, with their exits. So, with P(k) the share
of samples that reach stage k:
    E[latency] = sum_{k<=c} P(k) d_k + P(c+1) (rtt + bytes_c / bw) + sum_{k>c} P(k) s_k
Cut c = -1 sends the input itself; c = last stage keeps everything on the
device. Bytes are int8 (one byte per element), as the hand-off encoding sends.

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
from eedge.numbers import check_range, parse_float
from eedge.ir.bundle import Bundle
from eedge.profiling.stats import reach_probabilities

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


def cut_elements(bundle: Bundle) -> list[int]:
    """Elements per sample crossing each cut: index c+1 for the cut after stage c."""
    stages = bundle.stages
    made_by = {t["name"]: -1 for t in bundle.manifest["inputs"]}
    sizes = {t["name"]: _elements(t) for t in bundle.manifest["inputs"]}
    for stage in stages:
        for t in stage["outputs"]:
            made_by.setdefault(t["name"], stage["index"])
            sizes[t["name"]] = _elements(t)
    result = []
    for c in range(-1, len(stages)):
        crossing = {t["name"] for s in stages[c + 1:] for t in s["inputs"]
                    if made_by.get(t["name"], -1) <= c}
        result.append(sum(sizes[t] for t in crossing))
    return result


def _elements(tensor: dict[str, Any]) -> int:
    itemsize = {"float32": 4, "int8": 1, "int32": 4, "int64": 8}.get(tensor["dtype"], 4)
    return tensor["bytes_per_sample"] // itemsize


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
    payload_bytes: int      # bytes sent for a sample that does not exit on the device
    expected_bytes: float   # bytes sent per sample on average
    after: str = ""         # the `split export --after` value of this cut

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan(bundle: Bundle, device: Sequence[float], server: Sequence[float],
         bandwidth_bps: float, rtt_ms: float, exit_rates: Sequence[float]) -> list[CutOption]:
    """Every stage-boundary cut with its expected latency (ms) and traffic."""
    stages = len(bundle.stages)
    if len(device) != stages or len(server) != stages:
        raise InputDataError(f"profiles describe {len(device)} and {len(server)} stages; the "
                             f"bundle has {stages}")
    reach = reach_probabilities(exit_rates, [e["stage"] for e in bundle.exits], stages) + [0.0]
    elements = cut_elements(bundle)
    options = []
    for c in range(-1, stages):
        on_device = sum(reach[k] * device[k] for k in range(c + 1))
        send = reach[c + 1]
        payload = elements[c + 1]
        link = send * (rtt_ms + payload * 8 / bandwidth_bps * 1e3) if c + 1 < stages else 0.0
        on_server = sum(reach[k] * server[k] for k in range(c + 1, stages))
        options.append(CutOption(c, on_device, link, on_server, on_device + link + on_server,
                                 payload if c + 1 < stages else 0,
                                 send * payload if c + 1 < stages else 0.0,
                                 cut_name(c, stages)))
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
