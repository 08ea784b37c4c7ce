"""Run a model's generated C runtime on a target: the host (gcc) or QEMU.

Generates the project in a temporary directory (the user's inputs embedded
for MCU targets), builds it, runs it, and returns per-sample decisions and
per-stage ticks. This is what `eedge run --target` and the demo use.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eedge.codegen.inputs import device_samples
from eedge.codegen.model_source import CodegenModel, load_codegen_model
from eedge.codegen.project import STACK_BYTES, GeneratedProject, generate_project
from eedge.codegen.toolchain import BuildResult, RunResult, build, run_host, run_qemu
from eedge.errors import TargetError
from eedge.progress import Say, quiet_say
from eedge.targets import Target


@dataclass
class DeviceRun:
    target: str
    project: GeneratedProject
    build: BuildResult
    run: RunResult
    instructions_per_tick: int | None

    @property
    def exit_index(self) -> np.ndarray:
        return np.array([s.exit_index for s in self.run.samples])

    @property
    def predictions(self) -> np.ndarray:
        return np.array([s.class_index for s in self.run.samples])

    def mean_stage_ticks(self) -> list[float]:
        """Mean ticks of each stage over the samples that ran it."""
        stages = len(self.project.stage_outputs)
        totals = np.zeros(stages)
        counts = np.zeros(stages)
        for s in self.run.samples:
            for k, t in enumerate(s.stage_ticks):
                totals[k] += t
                counts[k] += 1
        return [float(t / c) if c else 0.0 for t, c in zip(totals, counts)]

    def summary(self) -> dict[str, Any]:
        ticks = self.mean_stage_ticks()
        data: dict[str, Any] = {
            "target": self.target, "samples": len(self.run.samples),
            "exit_index": self.exit_index.tolist(), "predictions": self.predictions.tolist(),
            "arena_bytes": self.project.arena_bytes, "scratch_bytes": self.project.scratch_bytes,
            "weight_bytes": self.project.weight_bytes,
            "dsp": self.project.dsp,
            # what an inference needs: the arena, the kernels' scratch buffer (TFLM's arena
            # holds its scratch too) and the painted stack (none measured on the host)
            "ram_bytes": self.project.arena_bytes + self.project.scratch_bytes +
            (self.run.stack_bytes or 0)}
        if self.project.port != "host":
            test_bytes = self.project.test_inputs * self.project.input_bytes
            data.update(stage_ticks_mean=ticks, flash_bytes=self.build.flash_bytes,
                        quant_param_bytes=self.project.quant_param_bytes,
                        test_input_bytes=test_bytes,
                        code_bytes=self.build.flash_bytes - self.project.weight_bytes -
                        self.project.quant_param_bytes - test_bytes,
                        static_ram_bytes=self.build.data_bytes + self.build.bss_bytes,
                        stack_used_bytes=self.run.stack_bytes, stack_reserved_bytes=STACK_BYTES)
            if self.instructions_per_tick:
                data["stage_instructions_mean"] = [t * self.instructions_per_tick for t in ticks]
        return data


def run_on_target(source: Path | CodegenModel, target: Target, x: np.ndarray,
                  optimize: str = "O2", dsp: bool | None = None,
                  workdir: Path | None = None, say: Say | None = None) -> DeviceRun:
    """Generate, build and run; ``say`` names each phase (QEMU alone can take seconds)."""
    say = say or quiet_say
    if target.kind not in ("host", "mcu-qemu"):
        raise TargetError(f"`run --target` executes on the host or in QEMU; {target.name} is "
                          f"{target.kind}: use `eedge flash` for boards")
    model = source if isinstance(source, CodegenModel) else load_codegen_model(Path(source))
    info = model.graph.tensors[model.input]
    samples = device_samples(x, tuple(int(d) for d in info.shape), model.input_quant.scale[0],
                             model.input_quant.zero_point[0], model.input_layout)
    with tempfile.TemporaryDirectory(prefix="eedge-fw-", dir=workdir) as tmp:
        out = Path(tmp) / "project"
        say(f"generating the C project for {target.name}")
        project = generate_project(model, target, out,
                                   samples if target.kind != "host" else None, optimize, dsp,
                                   serial_frames=False)  # the O/D lines, also for a split head
        say("compiling with " + ("gcc" if target.kind == "host" else "arm-none-eabi-gcc"))
        built = build(project)
        count = f"{len(samples)} sample{'' if len(samples) == 1 else 's'}"
        if target.kind == "host":
            say(f"running {count} on the host")
            result = run_host(project, built.binary, samples)
        else:
            say(f"running {count} in QEMU ({target.get('qemu')['machine']})")
            result = run_qemu(project, target, built.binary)
    ipt = (target.get("qemu") or {}).get("instructions_per_tick")
    return DeviceRun(target.name, project, built, result, ipt)
