"""Profile on a real board: build, flash, and read per-stage ticks over its serial port.

The firmware sends framed records (see serial_protocol.py) after each inference.
A physical port exists before the board is flashed, so it is opened first; a
``socket://`` port is a TCP bridge that appears once the device runs (QEMU's
UART in the tests), so it is opened after "flashing" started it. Either way the
reading code is the same, which is what the tests exercise.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from eedge.codegen.inputs import device_samples
from eedge.codegen.model_source import load_codegen_model
from eedge.codegen.project import generate_project
from eedge.codegen.toolchain import build
from eedge.errors import TargetError, ToolchainError
from eedge.ir.bundle import Bundle
from eedge.profiling.drivers import Progress, StageProfile, StageProfiles
from eedge.profiling.serial_protocol import FrameReader, read_profile
from eedge.targets import Target

Flasher = Callable[[Path], Any]
PROFILE_SAMPLES = 5
READ_TIMEOUT_S = 30.0


def flash_with_tool(target: Target) -> Flasher:
    """The target's flash tool (pyocd / openocd / st-flash), as `eedge flash` runs it."""
    from eedge.cli.firmware_cmds import flash_command

    def flash(elf: Path) -> None:
        command = flash_command(target.data, elf)
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except FileNotFoundError as exc:
            raise ToolchainError(f"{command[0]} is not installed; cannot flash "
                                 f"{target.name}") from exc
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise ToolchainError(f"flashing {target.name} failed: "
                                 f"{lines[-1] if lines else 'no output'}; is it connected?")
    return flash


def open_serial(url: str, baud: int, wait_s: float = 10.0) -> Any:
    """Open the port; a socket:// bridge gets a few seconds to start listening."""
    import serial

    deadline = time.monotonic() + (wait_s if url.startswith("socket://") else 0.0)
    while True:
        try:
            return serial.serial_for_url(url, baudrate=baud, timeout=0.2)
        except (serial.SerialException, OSError, ValueError) as exc:
            if time.monotonic() >= deadline:
                raise TargetError(f"cannot open serial port {url}: {exc}; set serial_port in "
                                  "the target YAML") from exc
            time.sleep(0.05)


def flash_and_read(target: Target, elf: Path, flasher: Flasher, say: Progress,
                   what: str) -> dict[str, Any]:
    """Flash ``elf`` and read the board's framed profile from its serial port.

    A real port is opened before flashing so no early frame is lost; QEMU's
    UART socket (``socket://``) only exists once the emulator runs.
    """
    url, baud = target.get("serial_port"), int(target.get("baud"))
    port = session = None
    try:
        if not url.startswith("socket://"):
            port = open_serial(url, baud)
        say(f"flashing {target.name}")
        session = flasher(elf)
        if port is None:
            port = open_serial(url, baud)
        say(f"reading {what} from {url}")
        return read_profile(FrameReader(port, READ_TIMEOUT_S))
    finally:
        if port is not None:
            port.close()
        if session is not None and hasattr(session, "terminate"):
            session.terminate()
            session.wait(timeout=10)


def profile_serial(bundle: Bundle, target: Target, x: np.ndarray, say: Progress,
                   flasher: Flasher | None = None, dsp: bool | None = None) -> StageProfiles:
    model = load_codegen_model(bundle.path)
    model.thresholds = [None] * len(model.thresholds)  # time every stage
    info = model.graph.tensors[model.input]
    samples = device_samples(x[:PROFILE_SAMPLES], tuple(int(d) for d in info.shape),
                             model.input_quant.scale[0], model.input_quant.zero_point[0],
                             model.input_layout)
    flasher = flasher or flash_with_tool(target)
    url, baud = target.get("serial_port"), int(target.get("baud"))
    with tempfile.TemporaryDirectory(prefix="eedge-serial-") as tmp:
        say(f"building firmware for {target.name}")
        project = generate_project(model, target, Path(tmp) / "fw", samples, dsp=dsp,
                                   serial_frames=True)
        elf = build(project).binary
        result = flash_and_read(target, elf, flasher, say, "stage timings")
    if not result["samples"]:
        raise TargetError("the board reported no inferences")
    ticks = np.array([s["stage_ticks"] for s in result["samples"]], dtype=np.float64)
    clock = float(target.get("clock_hz"))
    stages = []
    for stage, column in zip(bundle.stages, ticks.T):
        cycles = float(np.median(column))
        stages.append(StageProfile(stage["index"], stage["name"], stage["macs"], cycles,
                                   {"cycles_median": cycles, "cycles_min": float(column.min()),
                                    "cycles_max": float(column.max()), "runs": len(column)},
                                   {"ms": cycles / clock * 1e3}))
    env = {"serial_port": url, "baud": baud, "board": target.get("board"),
           "timer": target.get("timer", "dwt"), "samples": len(result["samples"]),
           "bad_frames": result["bad_frames"],
           "estimate_basis": f"ms = cycles / {clock / 1e6:g} MHz"}
    return StageProfiles(target.name, target.kind, "cycles", "eedge C runtime", stages, env)
