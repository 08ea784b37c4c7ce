"""Target descriptions (``targets/*.yaml``): validated, with units in the field names.

A target's ``kind`` selects its driver: ``host``, ``linux-ssh`` (a Raspberry
Pi), ``mcu-qemu`` (an emulated Cortex-M) or ``mcu-serial`` (a real board).
Unknown keys, missing fields and wrong types are errors that name the field,
so a typo in a user's YAML never silently falls back to a default.

A target file is user input: it is read with a size bound, as UTF-8, by a
YAML loader without aliases (nested aliases expand exponentially, a "billion
laughs") and with a nesting bound, numbers must be finite and in range, and
error messages quote the user's text only shortened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from eedge.errors import TargetError
from eedge.resources import data_dir, require_dir

TARGETS_DIR = data_dir("targets")
CPUS = ["cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55",
        "cortex-a53", "cortex-a72", "cortex-a76"]
_COMMON = {"name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
           "kind": {"type": "string"}, "description": {"type": "string"}}
MAX_TARGET_BYTES = 64 << 10
MAX_NESTING = 32
_POSITIVE = {"type": "integer", "minimum": 1, "maximum": 1 << 53}
_MCU_BYTES = {"type": "integer", "minimum": 1, "maximum": 1 << 32}  # a 32-bit address space
_CLOCK = {"type": "integer", "minimum": 1, "maximum": 10**11}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
# openocd runs `-f FILE` as the Tcl command `script {FILE}`: no braces, backslashes, newlines
_TCL_SAFE = {"type": "string", "pattern": r"^[^{}\\\n\r\x00]+$"}
_MCU = {**_COMMON, "cpu": {"enum": CPUS}, "fpu": {"enum": ["none", "fpv4-sp-d16", "fpv5-d16",
                                                          "fpv5-sp-d16"]},
        "dsp": {"type": "boolean"}, "mve": {"type": "boolean"},
        "clock_hz": _CLOCK, "flash_bytes": _MCU_BYTES,
        "ram_bytes": _MCU_BYTES,
        "cycles_per_instruction": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000},
        "flash_origin": {"type": "string", "pattern": "^0x[0-9a-fA-F]{1,8}$"},
        "ram_origin": {"type": "string", "pattern": "^0x[0-9a-fA-F]{1,8}$"},
        # a part whose reset vector table cannot sit at the start of its code memory
        # (mps3-an547: it boots from ITCM, code lives in SRAM) names where it goes
        "vector_origin": {"type": "string", "pattern": "^0x[0-9a-fA-F]{1,8}$"}}
# QEMU machines eedge runs, with the (secure-alias where the core boots secure) base of
# their first CMSDK APB UART, the serial profiler's port: from QEMU 7.2's hw/arm/mps2.c and
# mps2-tz.c, checked by writing to it in each machine.
QEMU_UART_BASES = {"mps2-an385": 0x40004000, "mps2-an386": 0x40004000,
                   "mps2-an500": 0x40004000, "mps2-an505": 0x50200000,
                   "mps3-an547": 0x59303000}
SCHEMAS: dict[str, dict[str, Any]] = {
    "host": {"type": "object", "additionalProperties": False, "required": ["name", "kind"],
             "properties": _COMMON},
    "mcu-qemu": {
        "type": "object", "additionalProperties": False,
        "required": ["name", "kind", "cpu", "fpu", "clock_hz", "flash_bytes", "ram_bytes",
                     "qemu"],
        "properties": {**_MCU, "qemu": {
            "type": "object", "additionalProperties": False, "required": ["machine"],
            "properties": {"machine": {"enum": list(QEMU_UART_BASES)},
                           # not always an integer: mps3-an547's 32 MHz SysTick is 31.25
                           "instructions_per_tick": {"type": "number", "exclusiveMinimum": 0,
                                                     "maximum": 1 << 20}}}}},
    "mcu-serial": {
        "type": "object", "additionalProperties": False,
        "required": ["name", "kind", "cpu", "fpu", "clock_hz", "flash_bytes", "ram_bytes",
                     "board", "flash_tool", "serial_port", "baud"],
        "properties": {**_MCU, "board": {"type": "string"},
                       "flash_tool": {"enum": ["pyocd", "openocd", "st-flash"]},
                       "pyocd_target": {"type": "string",
                                        "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]*$"},
                       "openocd_config": _TCL_SAFE,
                       "serial_port": {"type": "string"}, "baud": _POSITIVE,
                       "timer": {"enum": ["dwt", "systick"]},
                       "uart": {"enum": ["board", "cmsdk-apb"]}}},
    "linux-ssh": {
        "type": "object", "additionalProperties": False,
        "required": ["name", "kind", "ssh", "python", "runtime"],
        "properties": {**_COMMON, "cpu": {"enum": CPUS}, "clock_hz": _CLOCK,
                       "ram_bytes": _POSITIVE, "python": {"type": "string"},
                       "runtime": {"enum": ["onnxruntime", "litert"]},
                       "tvm_rpc": {"type": "object", "additionalProperties": False,
                                   "required": ["host", "port"],
                                   "properties": {"host": {"type": "string"}, "port": _PORT,
                                                  "library": {"enum": ["host", "rpi4"]},
                                                  "number": _POSITIVE,
                                                  "start_over_ssh": {"type": "boolean"}}},
                       "ssh": {"type": "object", "additionalProperties": False,
                               "required": ["host", "user", "key"],
                               "properties": {"host": {"type": "string"}, "port": _PORT,
                                              "user": {"type": "string"},
                                              "key": {"type": "string"},
                                              "known_hosts": {"type": "string"}}}}},
}


@dataclass(frozen=True)
class Target:
    name: str
    kind: str
    data: dict[str, Any]
    path: Path

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def is_mcu(self) -> bool:
        return self.kind in ("mcu-qemu", "mcu-serial")


def _short(text: str, limit: int = 120) -> str:
    """User text quoted in a message, cut to LIMIT characters (never a whole document)."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


class _TargetLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` without aliases and with a nesting bound.

    A target file never needs ``*alias``: nested aliases are the "billion laughs"
    (600 bytes that expand to gigabytes in anything that walks or prints the
    result), so they are refused while composing, before anything is built.
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in a target file; write the "
                "value out", self.peek_event().start_mark)
        if self._depth >= MAX_NESTING:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_NESTING} levels",
                self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark or exc.context_mark
        return f"{exc.problem}" + (f" (line {mark.line + 1})" if mark is not None else "")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _read_yaml(path: Path) -> Any:
    """Parse a target file: bounded size, UTF-8, no aliases; every failure a TargetError."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_TARGET_BYTES + 1)
    except OSError as exc:
        raise TargetError(f"cannot read target file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_TARGET_BYTES:
        raise TargetError(f"{path} is larger than {MAX_TARGET_BYTES // 1024} KiB; a target "
                          "file is a short YAML mapping")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TargetError(f"{path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                          f"{exc.start}); save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=_TargetLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise TargetError(f"{path} is not valid YAML: {_short(_yaml_problem(exc))}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer beyond 4300 digits
        raise TargetError(f"{path} is not a usable target file: "
                          f"{_short(str(exc) or type(exc).__name__)}") from None


_INTEGER_CHECKER = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool))
# 1.0 is not an integer here: it would reach the linker script as "LENGTH = 1.0"
_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator,
                                          type_checker=_INTEGER_CHECKER)


def _check_values(value: Any, where: str, field: str = "(top level)", depth: int = 0) -> None:
    """Finite numbers, no NUL or control characters (outside descriptions), bounded depth."""
    if depth > MAX_NESTING:
        raise TargetError(f"{where}: field {_short(field, 80)} is nested too deeply")
    if isinstance(value, float) and not math.isfinite(value):
        raise TargetError(f"{where}: field {_short(field, 80)}: {value} is not a finite number")
    if isinstance(value, str):
        allowed = "\n\t" if field == "description" else ""
        if any(ord(c) < 32 and c not in allowed for c in value):
            raise TargetError(f"{where}: field {_short(field, 80)} contains a control "
                              "character (NUL, newline, ...)")
    elif isinstance(value, dict):
        for key, item in value.items():
            name = str(key) if field == "(top level)" else f"{field}/{key}"
            _check_values(item, where, name, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_values(item, where, f"{field}/{i}", depth + 1)


def _validate(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TargetError(f"{where}: a target file must be a YAML mapping")
    _check_values(data, where)
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in SCHEMAS:
        raise TargetError(f"{where}: kind must be one of {', '.join(SCHEMAS)}, got "
                          f"{_short(repr(kind), 60)}")
    error = jsonschema.exceptions.best_match(_Validator(SCHEMAS[kind]).iter_errors(data))
    if error is not None:
        field = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise TargetError(f"{where}: field {_short(field, 80)}: {_short(error.message)}")
    return data


def load_target(name_or_path: str | Path) -> Target:
    """A shipped target by name (``qemu-cortex-m4``) or a user's YAML file."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = require_dir(TARGETS_DIR) / f"{text}.yaml"
        if not path.is_file():
            raise TargetError(f"unknown target {_short(repr(text), 80)}; known targets: "
                              f"{', '.join(t.name for t in list_targets())} (or give a YAML path)")
    if not path.is_file():
        raise TargetError(f"target file {path} does not exist")
    return target_from_data(_read_yaml(path), path)


def target_from_data(data: Any, where: Path) -> Target:
    """A target from an already-parsed mapping (e.g. the copy a generated project keeps).

    ``where`` names the file the mapping came from, for messages.
    """
    data = _validate(data, str(where))
    return Target(name=data["name"], kind=data["kind"], data=data, path=where)


def list_targets() -> list[Target]:
    """The shipped targets; a missing directory is an error, never an empty list."""
    return [load_target(p) for p in sorted(require_dir(TARGETS_DIR).glob("*.yaml"))]
