"""Build generated projects and run them: natively on the host, or in QEMU.

Both runners return the same thing: every stage's output bytes and the
cascade's decision per sample, which tests compare with the reference
executor, plus (in QEMU) per-stage ticks and the stack high-water mark.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eedge.codegen.project import SANITIZED_BINARY, SANITIZED_ELF, GeneratedProject
from eedge.errors import TargetError, ToolchainError
from eedge.targets import Target

APT_HINT = ("install it with: apt-get install -y --no-install-recommends gcc-arm-none-eabi "
            "libnewlib-arm-none-eabi qemu-system-arm (or run `make setup`)")


@dataclass
class SampleResult:
    stage_outputs: list[list[np.ndarray]]
    exit_index: int
    class_index: int
    confidence: int
    stages_run: int
    stage_ticks: list[int] = field(default_factory=list)
    rejected: bool = False
    monitor_flag: bool = False


@dataclass
class BuildResult:
    binary: Path
    text_bytes: int = 0
    data_bytes: int = 0
    bss_bytes: int = 0

    @property
    def flash_bytes(self) -> int:
        return self.text_bytes + self.data_bytes


@dataclass
class RunResult:
    samples: list[SampleResult]
    stack_bytes: int | None = None


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolchainError(f"{name} is not installed; {APT_HINT}")
    return path


def build(project: GeneratedProject, jobs: int = 2, sanitize: bool = False) -> BuildResult:
    """Run the project's Makefile; compiler errors become a ToolchainError.

    ``sanitize`` builds with the sanitizers (``make sanitize``): the same
    outputs, but undefined behaviour in the runtime (and on the host, any
    out-of-bounds access: AddressSanitizer) stops it with a report; firmware
    traps into the fault handler instead.
    """
    require_tool("make")
    require_tool("gcc" if project.port == "host" else "arm-none-eabi-gcc")
    command = ["make", "-C", str(project.path), f"-j{jobs}"]
    if sanitize:
        makefile = project.path / "Makefile"
        if not makefile.is_file() or "\nsanitize:" not in makefile.read_text(errors="replace"):
            raise TargetError(f"{project.path} was generated without a sanitizer build; "
                              "run `eedge codegen` again")
        command.append("sanitize")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        overflow = re.search(r"region [`']?(\w+)'? overflowed by (\d+) bytes",
                             proc.stderr + proc.stdout)
        if overflow:
            raise TargetError(f"the firmware does not fit {project.target}: "
                              f"{overflow.group(2)} bytes of {overflow.group(1)} too many; "
                              "choose a smaller model or a bigger part")
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines()
                 if "error:" in ln or "undefined reference" in ln or "cannot find" in ln]
        lines.sort(key=lambda ln: "collect2" in ln)  # the linker's summary line says least
        detail = lines[0] if lines else (proc.stderr or proc.stdout).strip()[-300:]
        raise ToolchainError(f"building {project.path} failed: {detail}")
    if project.port == "host":
        return BuildResult(project.path / (SANITIZED_BINARY if sanitize else "build/model"))
    elf = project.path / (SANITIZED_ELF if sanitize else "build/firmware.elf")
    return BuildResult(elf, *elf_sizes(elf))


def elf_sizes(elf: Path) -> tuple[int, int, int]:
    """(text, data, bss) from arm-none-eabi-size, excluding the reserved stack."""
    size = require_tool("arm-none-eabi-size")
    proc = subprocess.run([size, "-A", str(elf)], capture_output=True, text=True, check=True)
    sections = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    text = sum(v for k, v in sections.items() if k in (".text", ".ARM.exidx", ".rodata"))
    data = sections.get(".data", 0)
    bss = sections.get(".bss", 0)
    return text, data, bss


def run_host(project: GeneratedProject, binary: Path, samples: np.ndarray) -> RunResult:
    data = np.ascontiguousarray(samples, dtype=np.int8).reshape(len(samples), -1)
    if data.shape[1] != project.input_bytes:
        raise ToolchainError(f"samples have {data.shape[1]} bytes; the model takes "
                             f"{project.input_bytes}")
    proc = subprocess.run([str(binary)], input=data.tobytes(), capture_output=True, timeout=600)
    findings = sanitizer_findings(proc.stderr.decode(errors="replace"))
    if proc.returncode != 0 or findings:
        detail = findings[0] if findings else proc.stderr.decode(errors="replace")[-300:]
        raise ToolchainError(f"{binary} exited with {proc.returncode}: {detail}")
    out = proc.stdout
    per_sample = sum(b for stage in project.stage_outputs for _, b in stage) + 24
    if len(out) != per_sample * len(data):
        raise ToolchainError(f"{binary} wrote {len(out)} bytes; expected {per_sample * len(data)}")
    results = []
    for n in range(len(data)):
        chunk = out[n * per_sample:(n + 1) * per_sample]
        pos = 0
        stages = []
        for stage in project.stage_outputs:
            tensors = []
            for _, size in stage:
                tensors.append(np.frombuffer(chunk[pos:pos + size], np.int8).copy())
                pos += size
            stages.append(tensors)
        exit_index, class_index, confidence, stages_run, rejected, flag = np.frombuffer(
            chunk[pos:pos + 24], "<i4")
        results.append(SampleResult(stages, int(exit_index), int(class_index), int(confidence),
                                    int(stages_run), rejected=bool(rejected),
                                    monitor_flag=bool(flag)))
    return RunResult(results)


_SANITIZER_REPORT = re.compile(r"runtime error:|ERROR: (Address|Leak|Undefined)Sanitizer")


def sanitizer_findings(stderr: str) -> list[str]:
    """The lines of a sanitizer build's stderr that report a finding (UBSan, ASan, LSan)."""
    return [ln.strip() for ln in stderr.splitlines() if _SANITIZER_REPORT.search(ln)]


def qemu_command(target: Target, elf: Path) -> list[str]:
    qemu = require_tool("qemu-system-arm")
    return [qemu, "-M", target.get("qemu")["machine"], "-nographic", "-monitor", "none",
            "-serial", "none", "-semihosting-config", "enable=on,target=native",
            "-icount", "shift=0", "-kernel", str(elf)]


_LINE = re.compile(r"^(O|D|STACK|END)\b(.*)$")


def run_qemu(project: GeneratedProject, target: Target, elf: Path,
             timeout_s: float = 600) -> RunResult:
    """Run the firmware (with its embedded test inputs) and parse what it prints."""
    try:
        proc = subprocess.run(qemu_command(target, elf), capture_output=True, text=True,
                              timeout=timeout_s, stdin=subprocess.DEVNULL,
                              env={**os.environ, "QEMU_AUDIO_DRV": "none"})
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"QEMU did not finish within {timeout_s:.0f} s") from exc
    console = proc.stdout + proc.stderr  # QEMU prints semihosting output on stderr
    if proc.returncode != 0 or "\nEND" not in console:
        raise ToolchainError(f"the firmware failed in QEMU (exit {proc.returncode}): "
                             f"{console.strip()[-300:]}")
    chunks: dict[int, dict[int, dict[int, list[bytes]]]] = {}  # long outputs span lines
    decisions: dict[int, list[int]] = {}
    stack = None
    for line in console.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        kind, rest = match.group(1), match.group(2).split()
        if kind == "O":
            n, s, i = int(rest[0]), int(rest[1]), int(rest[2])
            data = bytes.fromhex(rest[3]) if len(rest) > 3 else b""
            chunks.setdefault(n, {}).setdefault(s, {}).setdefault(i, []).append(data)
        elif kind == "D":
            decisions[int(rest[0])] = [int(v) for v in rest[1:]]
        elif kind == "STACK":
            stack = int(rest[0])
    samples = []
    for n in sorted(decisions):
        d = decisions[n]
        per_stage = chunks.get(n, {})
        stages = [[np.frombuffer(b"".join(per_stage[s][i]), np.int8) for i in sorted(per_stage[s])]
                  for s in sorted(per_stage)]
        sizes = [[out.size for out in stage] for stage in stages]
        if sizes != [[size for _, size in stage] for stage in project.stage_outputs]:
            raise ToolchainError(f"the firmware printed stage outputs of {sizes} bytes for "
                                 f"sample {n}; the model's are "
                                 f"{[[b for _, b in st] for st in project.stage_outputs]}")
        samples.append(SampleResult(stages, d[0], d[1], d[2], d[5], d[6:6 + d[5]],
                                    rejected=bool(d[3]), monitor_flag=bool(d[4])))
    return RunResult(samples, stack)
