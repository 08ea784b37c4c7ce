"""``eedge codegen | build | flash | targets``: the microcontroller path."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import click
from rich.table import Table

from eedge.cli.options import FiniteFloat
from eedge.cli.console import (debug_option, json_option, out_console, print_json,
                               progress_status)
from eedge.cli.tables import human_bytes
from eedge.errors import InputDataError, TargetError, ToolchainError
from eedge.io.arrays import load_array


@click.command("codegen")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--target", "-t", "target_name", default="qemu-cortex-m4", show_default=True,
              help="Target name (see `eedge targets`) or a target YAML file.")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True,
              help="Project directory to create.")
@click.option("--opt", type=click.Choice(["O2", "Os", "O3"]), default="O2", show_default=True,
              help="Compiler optimization level.")
@click.option("--dsp/--no-dsp", default=None,
              help="Use the Cortex-M SIMD (SMLAD) path (default: when the target has DSP).")
@click.option("--inputs", type=click.Path(path_type=Path),
              help="Test inputs embedded in MCU firmware (.npy or .npz x; float or int8).")
@click.option("--exits", "extra_exits", metavar="TENSOR,...",
              help="For a .tflite source: tensors that are early exits.")
@click.option("--budget-macs", type=FiniteFloat(min=0, min_open=True),
              help="Budget-aware firmware: adapt thresholds on the device to average this "
                   "many MACs per inference (max_softmax and margin criteria).")
@click.option("--force", is_flag=True, help="Replace an existing project.")
@json_option
@debug_option
def codegen(source: Path, target_name: str, out: Path, opt: str, dsp: bool | None,
            inputs: Path | None, extra_exits: str | None, budget_macs: float | None,
            force: bool, as_json: bool) -> None:
    """Generate a standalone C99 project for an int8 BUNDLE or .tflite SOURCE.

    \b
    Examples:
      eedge codegen demo-out/bundle --target qemu-cortex-m4 --out fw
      eedge codegen kws_ref_model.tflite --target stm32l4r5 --out kws-fw --opt Os
    """
    from eedge.codegen.inputs import device_samples
    from eedge.codegen.model_source import load_codegen_model
    from eedge.codegen.project import generate_project
    from eedge.targets import load_target

    target = load_target(target_name)
    exits = [e.strip() for e in extra_exits.split(",")] if extra_exits else None
    model = load_codegen_model(source, exits)
    if budget_macs is not None:
        if any(c == "entropy" for c in model.criteria):
            raise InputDataError("the on-device budget policy works with max_softmax and "
                                 "margin thresholds, not entropy")
        from eedge.policies.budget import IntegerBudgetController

        IntegerBudgetController(budget_macs, model.exit_costs)  # checks it can be met
        model.budget = {"macs": budget_macs}
    samples = None
    if inputs is not None:
        info = model.graph.tensors[model.input]
        samples = device_samples(load_array(inputs), tuple(int(d) for d in info.shape),
                                 model.input_quant.scale[0], model.input_quant.zero_point[0],
                                 model.input_layout)
    project = generate_project(model, target, out, samples, opt, dsp, force)
    summary = {"project": str(project.path), "target": target.name, "port": project.port,
               "arena_bytes": project.arena_bytes, "weight_bytes": project.weight_bytes,
               "dsp": project.dsp, "stages": len(project.stage_outputs),
               "test_inputs": project.test_inputs}
    if as_json:
        print_json(summary)
        return
    out_console.print(f"wrote {project.path} for {target.name} ({project.port} port, "
                      f"{'DSP' if project.dsp else 'portable'} kernels, -{opt}): "
                      f"{len(project.stage_outputs)} stages, arena "
                      f"{human_bytes(project.arena_bytes)}, weights "
                      f"{human_bytes(project.weight_bytes)}; build with `eedge build {out}` "
                      f"or `make -C {out}`")


def size_report(project_path: Path, sanitize: bool = False) -> dict:
    """Build a project and check it against its target's flash and RAM.

    ``sanitize`` builds with the sanitizers instead: ASan and UBSan on the host, UBSan
    in trap mode for microcontrollers.
    """
    from eedge.codegen.project import STACK_BYTES, GeneratedProject
    from eedge.codegen.toolchain import build

    project = GeneratedProject.load(project_path)
    target = project.load_target()
    result = build(project, sanitize=sanitize)
    report = {"project": str(project_path), "target": target.name, "binary": str(result.binary),
              "arena_bytes": project.arena_bytes, "weight_bytes": project.weight_bytes}
    if sanitize:
        report["sanitizers"] = (["address", "undefined"] if project.port == "host"
                                else ["undefined (trap)"])
    if project.port != "host":
        ram = result.data_bytes + result.bss_bytes + STACK_BYTES
        test_bytes = project.test_inputs * project.input_bytes
        report.update(flash_bytes=result.flash_bytes, test_input_bytes=test_bytes,
                      quant_param_bytes=project.quant_param_bytes,
                      code_bytes=(result.flash_bytes - project.weight_bytes - test_bytes -
                                  project.quant_param_bytes),
                      static_ram_bytes=result.data_bytes + result.bss_bytes,
                      stack_reserved_bytes=STACK_BYTES, ram_bytes=ram,
                      flash_limit_bytes=target.get("flash_bytes"),
                      ram_limit_bytes=target.get("ram_bytes"))
        if result.flash_bytes > target.get("flash_bytes"):
            raise TargetError(f"the firmware needs {result.flash_bytes} bytes of flash; "
                              f"{target.name} has {target.get('flash_bytes')}: choose a "
                              "smaller model or a bigger part")
        if ram > target.get("ram_bytes"):
            raise TargetError(f"the firmware needs {ram} bytes of RAM (arena "
                              f"{project.arena_bytes}, stack {STACK_BYTES}); {target.name} has "
                              f"{target.get('ram_bytes')}")
    return report


@click.command("build")
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--sanitize", is_flag=True,
              help="Build with sanitizers: host projects get build/model-sanitized (ASan and "
                   "UBSan), firmware build/firmware-sanitized.elf (UBSan, trapping).")
@json_option
@debug_option
def build_cmd(project: Path, sanitize: bool, as_json: bool) -> None:
    """Compile a generated PROJECT and report flash and RAM against its target.

    \b
    Examples:
      eedge build fw
      eedge build host-fw --sanitize
    """
    with progress_status("building" + (" with sanitizers" if sanitize else ""), quiet=as_json):
        report = size_report(project, sanitize)
    if as_json:
        print_json(report)
        return
    table = Table(title=f"{report['target']}: {report['binary']}")
    table.add_column("what")
    table.add_column("bytes", justify="right")
    table.add_column("limit", justify="right")
    for key, limit in (("flash_bytes", "flash_limit_bytes"), ("weight_bytes", None),
                       ("quant_param_bytes", None), ("test_input_bytes", None),
                       ("code_bytes", None), ("static_ram_bytes", None), ("arena_bytes", None),
                       ("stack_reserved_bytes", None), ("ram_bytes", "ram_limit_bytes")):
        if key in report:
            table.add_row(key.replace("_bytes", "").replace("_", " "), str(report[key]),
                          str(report[limit]) if limit else "")
    out_console.print(table)


def tcl_word(text: str) -> str:
    """TEXT as one literal Tcl word: brace-quoted, so `[cmd]`, `$var`, `;` and spaces stay text.

    Inside braces Tcl substitutes nothing, except that braces must balance and a
    backslash-newline is still folded; a path holding a brace, a backslash or a
    control character cannot be brace-quoted safely and is refused.
    """
    if any(c in "{}\\" or ord(c) < 32 or c == "\x7f" for c in text):
        raise TargetError(f"cannot pass {text!r} to openocd's Tcl safely (it contains a brace, "
                          "a backslash or a control character); move the project to a path "
                          "without them")
    return "{" + text + "}"


def flash_command(target_data: dict, elf: Path) -> list[str]:
    """The flash tool's argv (no shell); ELF made absolute so it never reads as an option."""
    elf = elf.absolute()
    tool = target_data["flash_tool"]
    if tool == "pyocd":
        pyocd_target = str(target_data.get("pyocd_target", target_data["board"]))
        if pyocd_target.startswith("-"):
            raise TargetError(f"target {target_data['name']}: pyocd target {pyocd_target!r} "
                              "starts with '-'; set pyocd_target to pyocd's target name")
        return ["pyocd", "flash", "--target", pyocd_target, str(elf)]
    if tool == "openocd":
        config = target_data.get("openocd_config")
        if not config:
            raise TargetError(f"target {target_data['name']} uses openocd but sets no "
                              "openocd_config")
        return ["openocd", "-f", config, "-c", f"program {tcl_word(str(elf))} verify reset exit"]
    return ["st-flash", "--reset", "write", str(elf.with_suffix(".bin")), "0x08000000"]


@click.command("flash")
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print the flash command instead of running it.")
@json_option
@debug_option
def flash(project: Path, dry_run: bool, as_json: bool) -> None:
    """Build PROJECT and flash it to its board (pyocd, openocd or st-flash, per target).

    \b
    Examples:
      eedge codegen bundle --target stm32f767 --out fw && eedge flash fw --dry-run
    """
    from eedge.codegen.project import GeneratedProject

    meta = GeneratedProject.load(project)
    target = meta.load_target()
    if target.kind != "mcu-serial":
        raise TargetError(f"{target.name} is not a board ({target.kind}); flash needs an "
                          "mcu-serial target such as stm32f767")
    report = size_report(project)
    command = flash_command(target.data, Path(report["binary"]))
    if dry_run:
        if as_json:
            print_json({"command": command, **report})
        else:
            click.echo(shlex.join(command))  # plain text: copy-pasteable, never wrapped
        return
    import shutil

    if shutil.which(command[0]) is None:
        raise ToolchainError(f"{command[0]} is not installed (pip install pyocd, or apt-get "
                             f"install openocd / stlink-tools); the command would be: "
                             f"{shlex.join(command)}")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        raise ToolchainError(f"flashing failed ({command[0]} exit {proc.returncode}): "
                             f"{message[-1] if message else 'no output'}; is the board "
                             "connected?")
    out_console.print(f"flashed {report['binary']} to {target.name}")


@click.command("targets")
@json_option
@debug_option
def targets(as_json: bool) -> None:
    """List the shipped target descriptions (targets/*.yaml).

    \b
    Example:
      eedge targets --json
    """
    from eedge.targets import list_targets

    found = list_targets()
    if as_json:
        print_json([t.data for t in found])
        return
    table = Table(title="targets")
    for column in ("name", "kind", "cpu", "clock", "flash", "RAM"):
        table.add_column(column)
    for t in found:
        table.add_row(t.name, t.kind, t.get("cpu", "-"),
                      f"{t.get('clock_hz') / 1e6:.0f} MHz" if t.get("clock_hz") else "-",
                      human_bytes(t.get("flash_bytes")) if t.get("flash_bytes") else "-",
                      human_bytes(t.get("ram_bytes")) if t.get("ram_bytes") else "-")
    out_console.print(table)
