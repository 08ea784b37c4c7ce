"""Target descriptions (``targets/*.yaml``): validated, with units in the field names.

A target's ``kind`` selects its driver: ``host``, ``linux-ssh`` (a Raspberry
Pi), ``mcu-qemu`` (an emulated Cortex-M) or ``mcu-serial`` (a real board).
Unknown keys, missing fields and wrong types are errors that name the field,
so a typo in a user's YAML never silently falls back to a default.
"""

from __future__ import annotations

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
_POSITIVE = {"type": "integer", "minimum": 1}
_MCU = {**_COMMON, "cpu": {"enum": CPUS}, "fpu": {"enum": ["none", "fpv4-sp-d16", "fpv5-d16",
                                                          "fpv5-sp-d16"]},
        "dsp": {"type": "boolean"}, "clock_hz": _POSITIVE, "flash_bytes": _POSITIVE,
        "ram_bytes": _POSITIVE, "cycles_per_instruction": {"type": "number", "exclusiveMinimum": 0},
        "flash_origin": {"type": "string", "pattern": "^0x[0-9a-fA-F]{1,8}$"},
        "ram_origin": {"type": "string", "pattern": "^0x[0-9a-fA-F]{1,8}$"}}
SCHEMAS: dict[str, dict[str, Any]] = {
    "host": {"type": "object", "additionalProperties": False, "required": ["name", "kind"],
             "properties": _COMMON},
    "mcu-qemu": {
        "type": "object", "additionalProperties": False,
        "required": ["name", "kind", "cpu", "fpu", "clock_hz", "flash_bytes", "ram_bytes",
                     "qemu"],
        "properties": {**_MCU, "qemu": {
            "type": "object", "additionalProperties": False, "required": ["machine"],
            "properties": {"machine": {"enum": ["mps2-an385", "mps2-an386", "mps2-an500",
                                                "mps2-an505"]},
                           "instructions_per_tick": _POSITIVE}}}},
    "mcu-serial": {
        "type": "object", "additionalProperties": False,
        "required": ["name", "kind", "cpu", "fpu", "clock_hz", "flash_bytes", "ram_bytes",
                     "board", "flash_tool", "serial_port", "baud"],
        "properties": {**_MCU, "board": {"type": "string"},
                       "flash_tool": {"enum": ["pyocd", "openocd", "st-flash"]},
                       "pyocd_target": {"type": "string"}, "openocd_config": {"type": "string"},
                       "serial_port": {"type": "string"}, "baud": _POSITIVE,
                       "timer": {"enum": ["dwt", "systick"]},
                       "uart": {"enum": ["board", "cmsdk-apb"]}}},
    "linux-ssh": {
        "type": "object", "additionalProperties": False,
        "required": ["name", "kind", "ssh", "python", "runtime"],
        "properties": {**_COMMON, "cpu": {"enum": CPUS}, "clock_hz": _POSITIVE,
                       "ram_bytes": _POSITIVE, "python": {"type": "string"},
                       "runtime": {"enum": ["onnxruntime", "litert"]},
                       "tvm_rpc": {"type": "object", "additionalProperties": False,
                                   "required": ["host", "port"],
                                   "properties": {"host": {"type": "string"}, "port": _POSITIVE,
                                                  "library": {"enum": ["host", "rpi4"]},
                                                  "number": _POSITIVE,
                                                  "start_over_ssh": {"type": "boolean"}}},
                       "ssh": {"type": "object", "additionalProperties": False,
                               "required": ["host", "user", "key"],
                               "properties": {"host": {"type": "string"}, "port": _POSITIVE,
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


def _validate(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TargetError(f"{where}: a target file must be a YAML mapping")
    kind = data.get("kind")
    if kind not in SCHEMAS:
        raise TargetError(f"{where}: kind must be one of {', '.join(SCHEMAS)}, got {kind!r}")
    try:
        jsonschema.validate(data, SCHEMAS[kind])
    except jsonschema.ValidationError as exc:
        field = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise TargetError(f"{where}: field {field}: {exc.message}") from None
    return data


def load_target(name_or_path: str | Path) -> Target:
    """A shipped target by name (``qemu-cortex-m4``) or a user's YAML file."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = require_dir(TARGETS_DIR) / f"{text}.yaml"
        if not path.is_file():
            raise TargetError(f"unknown target {text!r}; known targets: "
                              f"{', '.join(t.name for t in list_targets())} (or give a YAML path)")
    if not path.is_file():
        raise TargetError(f"target file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TargetError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return target_from_data(data, path)


def target_from_data(data: Any, where: Path) -> Target:
    """A target from an already-parsed mapping (e.g. the copy a generated project keeps).

    ``where`` names the file the mapping came from, for messages.
    """
    data = _validate(data, str(where))
    return Target(name=data["name"], kind=data["kind"], data=data, path=where)


def list_targets() -> list[Target]:
    """The shipped targets; a missing directory is an error, never an empty list."""
    return [load_target(p) for p in sorted(require_dir(TARGETS_DIR).glob("*.yaml"))]
