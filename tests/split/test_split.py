"""The legacy EEHO hand-off encoding (strictness, fuzzing; still decoded by the server's
``eedge_handoff`` input) and the cut planner (against brute force, with the bytes the
client's wire format puts on the link)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from eedge.errors import EedgeError, InputDataError  # noqa: E402
from eedge.split.encoding import HandoffTensor, decode, encode  # noqa: E402
from eedge.split.planner import (best, cut_elements, parse_bandwidth,  # noqa: E402
                                 parse_duration_ms, plan, wire_cost)


def sample_tensors() -> list[HandoffTensor]:
    rng = np.random.default_rng(0)
    return [HandoffTensor("h1", rng.integers(-128, 128, (2, 8, 8, 8), dtype=np.int8), 0.05, -3),
            HandoffTensor("skip", rng.standard_normal((2, 16)).astype(np.float32))]


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_and_expected_specs(compress: bool) -> None:
    tensors = sample_tensors()
    decoded = decode(encode(tensors, compress))
    for t in tensors:
        assert np.array_equal(decoded[t.name].array, t.array)
        assert decoded[t.name].zero_point == t.zero_point
    spec = {"h1": {"shape": ["N", 8, 8, 8], "dtype": "int8",
                   "quant": {"scale": [0.05], "zero_point": [-3]}},
            "skip": {"shape": ["N", 16], "dtype": "float32"}}
    decode(encode(tensors), spec)
    with pytest.raises(InputDataError, match="shape"):
        decode(encode(tensors), {**spec, "skip": {"shape": ["N", 15], "dtype": "float32"}})
    with pytest.raises(InputDataError, match="different"):
        decode(encode(tensors), {**spec, "h1": {**spec["h1"], "quant": {"scale": [0.06],
                                                                          "zero_point": [-3]}}})
    with pytest.raises(InputDataError, match="expects"):
        decode(encode(tensors[:1]), spec)


def test_limits() -> None:
    payload = encode(sample_tensors())
    with pytest.raises(InputDataError, match="exceeds"):
        decode(payload, max_bytes=100)
    bomb = encode([HandoffTensor("z", np.zeros((1, 1 << 20), np.int8))], compress=True)
    with pytest.raises(InputDataError, match="limit"):
        decode(bomb, max_bytes=64 << 10)


def test_fuzzed_payloads_are_rejected_quickly() -> None:
    base = encode(sample_tensors())
    rng = np.random.default_rng(7)
    cases = [base[:n] for n in range(0, len(base), 37)]
    for _ in range(2000):
        mutated = bytearray(base)
        for pos in rng.integers(0, len(mutated), rng.integers(1, 6)):
            mutated[pos] = int(rng.integers(256))
        cases.append(bytes(mutated))
    start = time.perf_counter()
    accepted = 0
    for payload in cases:
        try:
            decode(payload)
            accepted += 1
        except EedgeError:
            pass
    assert accepted <= 1  # only an unlucky no-op mutation could survive the checksum
    assert time.perf_counter() - start < 10


def test_units() -> None:
    assert parse_bandwidth("2Mbit/s") == 2e6
    assert parse_bandwidth("10MB/s") == 80e6
    assert parse_bandwidth("500 kbit/s") == 5e5
    assert parse_duration_ms("20ms") == 20 and parse_duration_ms("1s") == 1000
    with pytest.raises(InputDataError):
        parse_bandwidth("fast")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import onnx
    from conftest import exported_onnx

    from eedge.export import export_onnx

    path = tmp_path_factory.mktemp("split") / "residual.onnx"
    onnx.save(exported_onnx("residual"), path)
    return export_onnx(path, path.parent / "bundle").bundle


def brute_force(bundle, device, server, bps, rtt, exit_index, rows=1):  # type: ignore[no-untyped-def]
    """Per-sample simulation of every cut; returns the mean latency per cut.

    A sample that leaves the device sends its float32 hand-off (this bundle has no
    int8 stages) and its share of one request's header (``rows`` samples a request)."""
    stages = len(bundle.stages)
    exit_stage = np.array([e["stage"] for e in bundle.exits])[exit_index]
    elements = cut_elements(bundle)
    header = [wire_cost(bundle, c, rows).header_bytes for c in range(-1, stages - 1)] + [0]
    totals = []
    for c in range(-1, stages):
        sent = elements[c + 1] * 4 + header[c + 1] / rows
        latency = []
        for e in exit_stage:
            if e <= c:
                latency.append(sum(device[: e + 1]))
            else:
                latency.append(sum(device[: c + 1]) + rtt + sent * 8 / bps * 1e3 +
                               sum(server[c + 1: e + 1]))
        totals.append(float(np.mean(latency)))
    return totals


def test_planner_matches_brute_force_across_a_bandwidth_sweep(bundle) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    exit_index = rng.choice(3, size=500, p=[0.5, 0.3, 0.2])
    rates = [float(np.mean(exit_index == k)) for k in range(3)]
    device, server = [2.0, 3.0, 5.0], [0.1, 0.15, 0.25]
    choices = []
    for bps in np.logspace(3, 9, 25):
        options = plan(bundle, device, server, bps, 1.0, rates)
        expected = brute_force(bundle, device, server, bps, 1.0, exit_index)
        assert [o.total for o in options] == pytest.approx(expected)
        batched = plan(bundle, device, server, bps, 1.0, rates, rows_per_request=16)
        assert [o.total for o in batched] == pytest.approx(
            brute_force(bundle, device, server, bps, 1.0, exit_index, rows=16))
        assert best(options).after_stage == int(np.argmin(expected)) - 1
        choices.append(best(options).after_stage)
    # slow links keep everything on the device, fast ones send the input to the server
    assert choices[0] == 2 and choices[-1] == -1
    assert choices == sorted(choices, reverse=True)


def test_cut_bytes_follow_the_graph(bundle) -> None:  # type: ignore[no-untyped-def]
    elements = cut_elements(bundle)
    # input 3x8x8; after stage0 one 8x8x8 map (read by stages 1 and 2); after stage1
    # the main path and the skip from stage0 cross; nothing after the last stage
    assert elements == [3 * 64, 8 * 64, 2 * 8 * 64, 0]


def test_planner_counts_the_request_header(bundle) -> None:  # type: ignore[no-untyped-def]
    """Bytes per hand-off = tensor bytes + a fixed header per request (amortized by
    rows per request); int8 when asked, float32 for a bundle without int8 stages."""
    options = plan(bundle, [1.0] * 3, [1.0] * 3, 1e6, 10.0, [0.5, 0.3, 0.2])
    assert [o.handoff_dtype for o in options] == ["float32"] * 4
    assert [o.payload_bytes for o in options] == [4 * e for e in cut_elements(bundle)]
    for o in options[:-1]:
        # request line, 4 headers, JSON naming the tensors and the two outputs asked for
        assert 300 < o.header_bytes < 700
        assert o.wire_bytes == o.payload_bytes + o.header_bytes
    assert options[-1].wire_bytes == options[-1].header_bytes == 0  # nothing is sent
    one, many = wire_cost(bundle, 0, 1), wire_cost(bundle, 0, 100)
    assert many.row_bytes == one.row_bytes == 8 * 64 * 4
    # 100 rows: the header grows by the digits of the row count and sizes, not per row
    assert one.header_bytes <= many.header_bytes <= one.header_bytes + 8
    assert many.per_sample < one.row_bytes + one.header_bytes / 50
    longer = wire_cost(bundle, 0, 1, model_name="x" * 40, host="inference.example.com:443")
    assert longer.header_bytes > one.header_bytes
    with pytest.raises(InputDataError, match="int8"):
        wire_cost(bundle, 0, dtype="int8")  # no int8 stages: no quantization to send
    with pytest.raises(InputDataError, match="rows per request"):
        wire_cost(bundle, 0, 0)


def test_split_plan_reports_bytes_on_the_wire(capsys, tmp_path: Path, bundle) -> None:  # type: ignore[no-untyped-def]
    import json

    from cli_runner import run_cli as run

    reports = []
    for name, ms in (("d", [2.0, 3.0, 5.0]), ("s", [0.1, 0.15, 0.25])):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"unit": "ms", "stages": [{"value": v} for v in ms]}))
        reports.append(str(path))
    args = ["split", "plan", str(bundle.path), "--device-profile", reports[0],
            "--server-profile", reports[1], "--exit-rates", "0.5,0.3,0.2"]
    code, out, err = run(capsys, *args, "--rows-per-request", "4", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["wire"]["handoff_dtype"] == "float32" and shown["wire"]["rows_per_request"] == 4
    cut = shown["options"][1]
    cost = wire_cost(bundle, 0, 4)
    assert cut["payload_bytes"] == cost.row_bytes
    assert cut["header_bytes"] == cost.header_bytes
    assert cut["wire_bytes"] == cost.per_sample
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "wire" in out and "header" in out and "hand-off" in out
    code, _, err = run(capsys, *args, "--handoff-dtype", "int8")
    assert code == InputDataError.exit_code and "int8" in err
