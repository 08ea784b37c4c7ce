"""Per-op profiles (`eedge profile --per-op`): the build, QEMU's sums, the CLI, the host.

Measured on the small three-stage bundle (QEMU mps2-an386, -icount shift=0, 40
instructions per SysTick tick): the kernels of a stage sum to its firmware-timed
total minus the exit decision (int8 softmax score and argmax over the exit's logits,
about 1.9k instructions here, the same in every stage), and the instrumented build's
stage totals exceed the normal build's by at most one tick per timed op (the two
SysTick reads and the counter updates, about 30 instructions per op).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "codegen"))
sys.path.insert(0, str(Path(__file__).parents[1]))

from int8_bundles import int8_bundle  # noqa: E402
from qemu_board import qemu_serial_board  # noqa: E402
from zoo import example_input  # noqa: E402

from cli_runner import run_cli as cli  # noqa: E402
from eedge.codegen.model_source import load_codegen_model  # noqa: E402
from eedge.codegen.project import generate_project  # noqa: E402
from eedge.profiling.drivers import profile_qemu  # noqa: E402
from eedge.profiling.per_op import build_op_report, profile_ops  # noqa: E402
from eedge.targets import load_target  # noqa: E402

PER_TICK = 40


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return int8_bundle("sequential", tmp_path_factory.mktemp("per-op"))


def _unwrap(profiled: str) -> str:
    """The profiled model.c with its instrumentation taken out again."""
    text = re.sub(r"static uint32_t eedge_prof\[.*?\n#endif\n\n", "", profiled, flags=re.S)
    text = text.replace("    eedge_prof_dump();\n", "")
    return re.sub(r"\{ const uint32_t eedge_p0 = eedge_platform_ticks\(\); (.*?); "
                  r"eedge_prof\[\d+\] \+= eedge_platform_ticks\(\) - eedge_p0; "
                  r"\+\+eedge_prof_n\[\d+\]; \}", r"\1", text)


def test_disabled_build_is_unchanged(bundle, tmp_path: Path  # type: ignore[no-untyped-def]
                                      ) -> None:
    target = load_target("qemu-cortex-m4")
    model = load_codegen_model(bundle.path)
    plain = generate_project(model, target, tmp_path / "plain")
    off = generate_project(model, target, tmp_path / "off", profile_ops=False)
    on = generate_project(model, target, tmp_path / "on", profile_ops=True)
    assert plain.files == off.files and "op_labels" not in json.loads(
        (plain.path / "eedge-project.json").read_text())
    for name in plain.files:
        assert (plain.path / name).read_bytes() == (off.path / name).read_bytes(), name
        if name not in ("model.c", "eedge-project.json"):
            assert (plain.path / name).read_bytes() == (on.path / name).read_bytes(), name
    source = (plain.path / "model.c").read_text()
    assert "eedge_prof" not in source
    profiled = (on.path / "model.c").read_text()
    # the per-op build adds only the timers: taken out, the production model.c remains
    assert profiled.count("eedge_platform_ticks(); ") == len(on.op_labels) == 13
    assert _unwrap(profiled) == source
    assert [lb["op"] for lb in on.op_labels[:4]] == ["CONV_2D", "AVERAGE_POOL_2D", "RESHAPE",
                                                     "FULLY_CONNECTED"]
    assert on.op_labels[0]["macs"] > 0 and on.op_labels[1]["macs"] == 0


def test_qemu_per_op_sums_add_up_to_the_stage(bundle) -> None:  # type: ignore[no-untyped-def]
    target = load_target("qemu-cortex-m4")
    x = example_input(seed=3, batch=1)
    report = build_op_report(profile_ops(bundle.path, target, x))
    normal = profile_qemu(bundle, target, x, lambda _m: None)
    assert report["unit"] == "instructions" and len(report["stages"]) == len(normal.stages) == 3
    outside = []
    for stage, whole in zip(report["stages"], normal.stages):
        n_ops = len(stage["ops"])
        # two runs per sample (stage by stage, then eedge_infer): means in half ticks
        assert all(o["value"] % (PER_TICK / 2) == 0 and o["runs"] == 2 for o in stage["ops"])
        # timer overhead: at most one tick per timed op on the stage's own total
        assert 0 <= stage["measured_total"] - whole.value <= PER_TICK * n_ops
        outside.append(whole.value - stage["ops_total"])
        assert stage["macs"] == whole.macs
    # what the kernels leave out is the exit decision (a table-driven score of 10 classes,
    # about 300 instructions), the same in every stage
    assert all(100 <= v <= 1000 for v in outside), outside
    assert max(outside) - min(outside) <= PER_TICK * 5
    conv = next(r for r in report["by_type"] if r["op"] == "CONV_2D")
    assert conv["share"] > 0.8 and 1 < conv["per_mac"] < 10


def test_per_op_cli_table_json_plot(capsys, bundle,  # type: ignore[no-untyped-def]
                                    tmp_path: Path) -> None:
    data = tmp_path / "x.npz"
    np.savez(data, x=example_input(seed=5, batch=2))
    code, out, err = cli(capsys, "profile", str(bundle.path), "--target", "qemu-cortex-m4",
                         "--per-op", "--data", str(data), "--plot", str(tmp_path / "p.png"),
                         "--report", str(tmp_path / "r.json"))
    assert code == 0, err
    assert "stage 2 (instructions)" in out and "instr/MAC" in out and "by op type" in out
    assert "CONV_2D" in out and "40 instructions" in out
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "r.json").read_text())
    code, out, err = cli(capsys, "profile", str(bundle.path), "--target", "qemu-cortex-m4",
                         "--per-op", "--data", str(data), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report == saved  # exact and repeatable
    assert {r["op"] for r in report["by_type"]} >= {"CONV_2D", "FULLY_CONNECTED"}
    code, _, err = cli(capsys, "profile", str(bundle.path), "--target", "rpi4", "--per-op")
    assert code != 0 and "--per-op" in err


def test_host_per_op(capsys, bundle) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli(capsys, "profile", str(bundle.path), "--target", "host", "--per-op",
                         "--repeats", "100", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["unit"] == "ticks" and "clock()" in report["note"]
    assert report["environment"]["runs"] == 100
    # each sample runs every stage twice (stage by stage, then eedge_infer)
    assert all(o["runs"] == 200 for s in report["stages"] for o in s["ops"])
    assert report["by_type"][0]["op"] == "CONV_2D" and report["by_type"][0]["value"] > 0


def test_serial_board_per_op_through_qemu_uart(bundle, tmp_path: Path  # type: ignore[no-untyped-def]
                                               ) -> None:
    """The board path as tests/profiling/test_serial.py runs it: QEMU's UART on a socket."""
    board, start_qemu = qemu_serial_board(tmp_path)
    x = example_input(seed=3, batch=1)
    serial = build_op_report(profile_ops(bundle.path, board, x, repeats=2,
                                         flasher=start_qemu))
    qemu = build_op_report(profile_ops(bundle.path, load_target("qemu-cortex-m4"), x))
    assert serial["unit"] == "cycles" and serial["environment"]["bad_frames"] == 0
    assert [o["runs"] for s in serial["stages"] for o in s["ops"]] == [4] * 13
    # the same kernels and timer in the same QEMU: SysTick ticks of 40 instructions each,
    # equal to QEMU's per-op counts within one tick (other inputs, another harness)
    on_board = [o["value"] * PER_TICK for s in serial["stages"] for o in s["ops"]]
    in_qemu = [o["value"] for s in qemu["stages"] for o in s["ops"]]
    assert np.allclose(on_board, in_qemu, rtol=0, atol=PER_TICK), (on_board, in_qemu)
    assert all(s["measured_total"] > s["ops_total"] for s in serial["stages"])


KWS = Path(__file__).parents[3] / "shared" / "models" / "mlperf_tiny" / "kws_ref_model.tflite"


@pytest.mark.skipif(not KWS.is_file(), reason="MLPerf Tiny models not present")
def test_per_op_of_a_tflite_file(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli(capsys, "profile", str(KWS), "--target", "qemu-cortex-m4", "--per-op",
                         "--json")
    assert code == 0, err
    report = json.loads(out)
    (stage,) = report["stages"]
    assert len(stage["ops"]) == 13 and stage["macs"] > 2_000_000
    # kernels plus the final softmax's exit decision: the stage's whole count
    assert 0 <= stage["measured_total"] - stage["ops_total"] <= 10_000
    assert [r["op"] for r in report["by_type"][:2]] == ["CONV_2D", "DEPTHWISE_CONV_2D"]


@pytest.mark.skipif(not KWS.is_file(), reason="../shared/models/mlperf_tiny is absent")
def test_per_op_of_the_portable_build(capsys) -> None:  # type: ignore[no-untyped-def]
    """--no-dsp profiles the portable kernels (what a Cortex-M0+/M3 would run): the same
    ops, each slower than with the SIMD path."""
    reports = {}
    for flag in ("--dsp", "--no-dsp"):
        code, out, err = cli(capsys, "profile", str(KWS), "--target", "qemu-cortex-m4",
                             "--per-op", flag, "--json")
        assert code == 0, err
        reports[flag] = json.loads(out)
    simd, portable = reports["--dsp"], reports["--no-dsp"]
    assert simd["environment"]["dsp"] is True and portable["environment"]["dsp"] is False
    by_type = {r["op"]: r["value"] for r in simd["by_type"]}
    for row in portable["by_type"]:
        if row["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            assert row["value"] > by_type[row["op"]], row
