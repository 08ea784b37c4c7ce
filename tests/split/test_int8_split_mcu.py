"""int8 split end to end: the head on a Cortex-M4 (QEMU mps2-an386, DSP build, its UART
on a local TCP socket), `eedge split bridge` reading its frames, `eedge serve` running the
int8 tail. Decisions must equal the unsplit int8 cascade (the int8 reference, which is
bit-exact with the C runtime) sample for sample.

Models: the demo's 3-exit digits CNN (seeded weights, calibrated on digits) cut after
stage 0 (1,024-byte hand-off, three HANDOFF frames), the same bundle exported with
`--split-after` at that tensor, and a MobileNetV1-0.25 96x96 VWW-like model (MLPerf
Tiny's VWW size; 36,864-byte hand-off after its first block).
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parents[1] / "profiling"))
sys.path.insert(0, str(Path(__file__).parent))

from qemu_board import qemu_serial_board  # noqa: E402
from serve_helpers import serve_process  # noqa: E402

from eedge.errors import TargetError  # noqa: E402
from eedge.ir.bundle import Bundle, load_bundle  # noqa: E402
from eedge.profiling.serial_protocol import DONE, HELLO, SAMPLE, encode  # noqa: E402
from eedge.runtime.cascade import Cascade  # noqa: E402
from eedge.split.bridge import HANDOFF, Bridge  # noqa: E402

RUNTIME = "int8-reference"


def _tools() -> None:
    import shutil

    missing = [t for t in ("qemu-system-arm", "arm-none-eabi-gcc") if not shutil.which(t)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


def _with_median_thresholds(bundle: Bundle, x: np.ndarray) -> Bundle:
    """Thresholds at the int8 exits' median confidence: about half the samples leave
    each early exit (so both the device and the server decide some)."""
    from eedge.policies.apply import write_thresholds
    from eedge.policies.criteria import confidence

    logits = Cascade(bundle, runtime=RUNTIME).run_all_exits(x)
    return write_thresholds(bundle, [float(np.median(confidence(lg))) for lg in logits[:-1]]
                            + [None], "test")


def _cli(*args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "eedge.cli.main", *args, "--json"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo's digits CNN (seeded), int8 on digits, split after stage 0 by the CLI."""
    import torch

    from eedge.examples.digits import load_digits_splits
    from eedge.examples.digits_model import build_model
    from eedge.export import export_torch

    _tools()
    root = tmp_path_factory.mktemp("digits")
    data = load_digits_splits(seed=0)
    torch.manual_seed(0)
    bundle = export_torch(build_model().eval(), data.x_train[:2], root / "bundle", name="digits",
                          int8=True, calibration=data.x_train[:256]).bundle
    bundle = _with_median_thresholds(bundle, data.x_val)
    summary = _cli("split", "export", str(bundle.path), "--after", "0", "--out",
                   str(root / "split"))
    return {"root": root, "bundle": bundle, "x": data.x_test[:40], "summary": summary}


def run_split(root: Path, head: Path, tail: Path, x: np.ndarray) -> tuple[Any, float]:
    """Build the head firmware for the QEMU board, serve the tail, run the bridge."""
    from eedge.codegen.inputs import device_samples
    from eedge.codegen.model_source import load_codegen_model
    from eedge.codegen.project import generate_project
    from eedge.codegen.toolchain import build
    from eedge.profiling.serial_driver import open_serial

    model = load_codegen_model(head)
    info = model.graph.tensors[model.input]
    samples = device_samples(x, tuple(int(d) for d in info.shape), model.input_quant.scale[0],
                             model.input_quant.zero_point[0], model.input_layout)
    target, start_qemu = qemu_serial_board(root)
    project = generate_project(model, target, root / "head-fw", samples, force=True)
    assert project.dsp  # the SMLAD kernels
    elf = build(project).binary
    with serve_process(tail, "--runtime", RUNTIME, grpc=False) as served:
        started = time.monotonic()
        qemu = start_qemu(elf)
        try:
            port = open_serial(target.get("serial_port"), int(target.get("baud")))
            try:
                with Bridge(head, served.url, served.name) as bridge:
                    report = bridge.run(port, timeout_s=120)
            finally:
                port.close()
        finally:
            qemu.kill()
            qemu.wait(timeout=30)
        return report, time.monotonic() - started


def check_against_unsplit(report: Any, bundle: Bundle, head: Bundle, x: np.ndarray) -> None:
    whole = Cascade(bundle, runtime=RUNTIME).infer(x)
    assert [s.index for s in report.samples] == list(range(len(x)))
    assert np.array_equal(report.exit_index, whole.exit_index)
    assert np.array_equal(report.predictions, whole.predictions)
    on_server = [s for s in report.samples if s.decided_on == "server"]
    assert 0 < len(on_server) < len(x)  # both sides decide some samples
    assert all(s.exit_index >= len(head.exits) for s in on_server)
    assert report.bad_frames == 0
    cut_bytes = sum(t["bytes_per_sample"] for s in head.stages
                    for t in s["io"]["tflite_int8"]["outputs"]
                    if t["name"] in {c["name"] for c in head.manifest["split"]["cut_tensors"]})
    assert all(s.handoff_bytes == cut_bytes for s in on_server)
    chunks = -(-cut_bytes // 480)
    sample_frame = 7 + 12 + 4 * len(head.stages)
    assert all(s.uart_bytes == sample_frame + cut_bytes + chunks * (7 + 12) for s in on_server)
    assert all(s.uart_bytes == sample_frame for s in report.samples if s.decided_on == "device")


def test_export_keeps_int8_stages_and_one_quantization(digits: dict[str, Any]) -> None:
    head = load_bundle(digits["root"] / "split" / "head")
    tail = load_bundle(digits["root"] / "split" / "tail")
    assert all("tflite_int8" in s["files"] for s in [*head.stages, *tail.stages])
    handoff = digits["summary"]["int8_handoff"]
    [(name, q)] = handoff.items()
    made = {t["name"]: t for t in head.stages[-1]["io"]["tflite_int8"]["outputs"]}
    assert made[name]["quant"]["scale"][0] == q["scale"]
    assert made[name]["quant"]["zero_point"][0] == q["zero_point"]
    # the quantization of the unsplit bundle's tensor, not a new calibration
    source = digits["bundle"].manifest["quantization"]["tensors"][name]
    assert (source["scale"], source["zero_point"]) == (q["scale"], q["zero_point"])
    x = digits["x"]
    local = Cascade(head, runtime=RUNTIME).infer(x)
    whole = Cascade(digits["bundle"], runtime=RUNTIME).infer(x)
    decided = local.exit_index >= 0
    assert np.array_equal(local.predictions[decided], whole.predictions[decided])


def test_head_on_qemu_bridge_and_tail_server_equal_the_unsplit_cascade(
        digits: dict[str, Any]) -> None:
    root, x = digits["root"], digits["x"]
    report, seconds = run_split(root, root / "split" / "head", root / "split" / "tail", x)
    check_against_unsplit(report, digits["bundle"], load_bundle(root / "split" / "head"), x)
    assert seconds < 300
    summary = report.summary()
    assert summary["handoff_bytes_per_sample"] == 16 * 8 * 8  # stage 0's 16x8x8 int8 output
    print(f"\ndigits CNN on QEMU: {json.dumps(summary)}")


def test_cli_codegen_qemu_cortex_m4_and_split_bridge(digits: dict[str, Any]) -> None:
    """The commands a user runs: `eedge codegen HEAD --target qemu-cortex-m4`, QEMU with
    the UART on TCP, `eedge split bridge HEAD socket://... --server URL --json`."""
    from qemu_board import free_port

    from eedge.codegen.toolchain import require_tool

    root, x = digits["root"], digits["x"][:12]
    head, tail = root / "split" / "head", root / "split" / "tail"
    np.save(root / "x12.npy", x)
    _cli("codegen", str(head), "--target", "qemu-cortex-m4", "--inputs", str(root / "x12.npy"),
         "--out", str(root / "fw-m4"))
    subprocess.run(["make", "-s", "-C", str(root / "fw-m4")], check=True, timeout=600,
                   capture_output=True)
    port = free_port()
    with serve_process(tail, "--runtime", RUNTIME, grpc=False) as served:
        qemu = subprocess.Popen(
            [require_tool("qemu-system-arm"), "-M", "mps2-an386", "-nographic", "-monitor",
             "none", "-semihosting-config", "enable=on,target=native", "-serial",
             f"tcp:127.0.0.1:{port},server=on,wait=on", "-icount", "shift=0", "-kernel",
             str(root / "fw-m4" / "build" / "firmware.elf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            report = _cli("split", "bridge", str(head), f"socket://127.0.0.1:{port}",
                          "--server", served.url, "--model", served.name, "--timeout", "120")
        finally:
            qemu.kill()
            qemu.wait(timeout=30)
    whole = Cascade(digits["bundle"], runtime=RUNTIME).infer(x)
    assert [s["exit_index"] for s in report["samples"]] == whole.exit_index.tolist()
    assert [s["prediction"] for s in report["samples"]] == whole.predictions.tolist()
    summary = report["summary"]
    assert summary["samples"] == len(x) and 0 < summary["decided_on_server"] < len(x)
    assert summary["handoff_bytes_per_sample"] == 1024 and summary["bad_frames"] == 0


def test_source_exported_with_split_after(digits: dict[str, Any],
                                          tmp_path: Path) -> None:
    """`eedge export --int8 --split-after T` then `split export --after T`: same halves."""
    from eedge.examples.digits import load_digits_splits

    name = digits["summary"]["cut_tensors"][0]
    source = digits["bundle"].manifest["model"]["files"]["onnx"]
    data = load_digits_splits(seed=0)
    np.savez(tmp_path / "calib.npz", x=data.x_train[:256])
    _cli("export", str(digits["bundle"].path / source), "--out", str(tmp_path / "b"), "--int8",
         "--calib", str(tmp_path / "calib.npz"), "--split-after", name)
    bundle = load_bundle(tmp_path / "b")
    bundle = _with_median_thresholds(bundle, data.x_val)
    assert bundle.manifest["split"]["requested"] == name
    _cli("split", "export", str(bundle.path), "--after", name, "--out", str(tmp_path / "s"))
    head, tail = load_bundle(tmp_path / "s" / "head"), load_bundle(tmp_path / "s" / "tail")
    assert all("tflite_int8" in s["files"] for s in [*head.stages, *tail.stages])
    x = digits["x"][:20]
    report, _ = run_split(tmp_path, head.path, tail.path, x)
    check_against_unsplit(report, bundle, head, x)


def test_tensor_cut_inside_an_int8_stage_says_how_to_reexport(digits: dict[str, Any],
                                                               tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "eedge.cli.main", "split", "export",
                           str(digits["bundle"].path), "--after", "no_such_tensor", "--out",
                           str(tmp_path / "s")], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "--int8 --calib DATA --split-after no_such_tensor" in proc.stderr.replace("\n", " ")


@pytest.fixture(scope="module")
def vww(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """MobileNetV1 (alpha 0.25) at 96x96x3, two classes, an exit after the first block."""
    import torch
    from zoo import VWWLikeNet

    from eedge.export import export_torch
    from eedge.split.bundles import export_halves

    _tools()

    def images(n: int) -> np.ndarray:
        """Noise of varying contrast around a per-image colour (the seeded, untrained
        model's exit is confident on some and not on others; plain noise all look alike)."""
        x = rng.uniform(-1, 1, (n, 3, 96, 96)) * rng.uniform(0.05, 1, (n, 1, 1, 1)) + \
            rng.uniform(-1, 1, (n, 3, 1, 1))
        return np.clip(x, -1, 1).astype(np.float32)

    root = tmp_path_factory.mktemp("vww")
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    calib = images(64)
    bundle = export_torch(VWWLikeNet().eval(), calib[:2], root / "bundle", name="vww_like",
                          int8=True, calibration=calib).bundle
    bundle = _with_median_thresholds(bundle, images(64))
    head, tail = export_halves(bundle, 0, root / "split")
    return {"root": root, "bundle": bundle, "head": head, "tail": tail, "x": images(20)}


def test_mlperf_sized_model_head_on_qemu(vww: dict[str, Any]) -> None:
    report, seconds = run_split(vww["root"], vww["head"].path, vww["tail"].path, vww["x"])
    check_against_unsplit(report, vww["bundle"], vww["head"], vww["x"])
    assert report.summary()["handoff_bytes_per_sample"] == 48 * 48 * 16
    assert seconds < 600
    print(f"\nVWW-like on QEMU: {json.dumps(report.summary())}")


# ---- the bridge's framing, without a device ----------------------------------------------

class FakePort(io.BytesIO):
    def read(self, size: int = 1) -> bytes:  # type: ignore[override]
        return super().read(size)


def test_bridge_refuses_a_lost_handoff_frame(digits: dict[str, Any]) -> None:
    """A hand-off whose frames do not join up (a chunk lost on the wire) is an error naming
    the sample, never a wrong tensor sent to the server."""
    head = load_bundle(digits["root"] / "split" / "head")
    stages = len(head.stages)
    sample = struct.pack("<Iii", 0, -1, 0) + bytes(4 * stages)
    total = 1024
    chunk0 = struct.pack("<III", 0, 0, total) + bytes(480)
    chunk2 = struct.pack("<III", 0, 960, total) + bytes(64)  # the middle chunk is missing
    stream = (encode(HELLO, bytes([1, stages])) + encode(SAMPLE, sample) +
              encode(HANDOFF, chunk0) + encode(HANDOFF, chunk2) + encode(DONE, b""))

    class NoServer(Bridge):
        def __init__(self) -> None:  # the framing fails before any request
            self.head, self.head_exits, self.total = head, len(head.exits), total

    with pytest.raises(TargetError, match="sample 0: hand-off frame .* at byte 960"):
        NoServer().run(FakePort(stream), timeout_s=5)
