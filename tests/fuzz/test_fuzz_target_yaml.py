"""Fuzz: mutated target YAML files through ``codegen --target`` and ``profile --target``.

Bases are the shipped targets (host, linux-ssh, mcu-qemu, mcu-serial). Mutations:
bytes (flips, non-UTF-8, truncation), values (wrong types, NaN/inf, huge and
negative numbers, 5000-digit integers, long strings, control characters, rich
markup, Tcl and shell metacharacters), keys (dropped, unknown, kind swapped) and
YAML itself (aliases and "billion laughs", merge keys, deep nesting, tags,
several documents, duplicate keys, oversized files). Every case must end in a
one-line error or a normal answer (harness.check_cli_case).

The profile drivers stop where they would leave the machine: the SSH connect,
the QEMU run and the firmware build for a board are stubbed with a TargetError,
so no case opens a network connection, a serial port or a flash tool, and the
YAML still goes through loading, validation and the driver's use of its fields
up to that point (project generation included).
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from fuzz.harness import FuzzTally, check_cli_case, seeds
from fuzz.small_models import tiny_int8_bundle

pytestmark = pytest.mark.fuzz

VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2 ** 31, 2 ** 64, 10 ** 30, -(10 ** 30), 1.5, 1.0,
    float("nan"), float("inf"), -float("inf"), 1e308, "", "x" * 5000, "[/]", "[bold]x[/bold]",
    "a\x00b", "line\nbreak", "{x}", "a}; exec rm -rf x; {", "$(rm -rf x)", "`id`", "../../etc",
    "-rf", "socket://127.0.0.1:9", "/dev/zero", "\u202e\u0000", [], [1, 2], {}, {"a": {"b": 1}},
    "2001-12-14", "0x1F", "0o17", "1e3", "~",
]
KINDS = ["host", "linux-ssh", "mcu-qemu", "mcu-serial", "toaster", "", "HOST"]


def _stub(message: str):  # type: ignore[no-untyped-def]
    from eedge.errors import TargetError

    def stub(*_args: Any, **_kwargs: Any) -> Any:
        raise TargetError(f"fuzz stub: {message}")
    return stub


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, prefix + (key,))
    return found


def _set(data: dict, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


def _yaml_attack(rng: random.Random, text: str) -> tuple[str | bytes, str]:
    kind = rng.choice(["laughs", "merge", "deep", "tag", "documents", "duplicate", "big",
                       "digits", "binary", "set"])
    if kind == "laughs":
        levels = rng.randint(2, 12)
        anchors = ["&a0 [l,l,l,l,l,l,l,l,l]"] + [
            f"&a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
        where = rng.choice(["description", "name", "board", "extra"])
        return text + f"{where}: [{', '.join(anchors)}]\n", f"billion laughs ({levels} levels)"
    if kind == "merge":
        return "base: &b {clock_hz: 1}\n" + text + "<<: *b\n", "merge key"
    if kind == "deep":
        depth = rng.choice([40, 200, 5000])
        return text + "description: " + "[" * depth + "]" * depth + "\n", f"nesting {depth}"
    if kind == "tag":
        tag = rng.choice(["!!python/object/apply:os.system ['true']", "!!python/name:os.system",
                          "!custom x", "!!float nope", "!!int 0xZZ"])
        return text + f"description: {tag}\n", f"tag {tag}"
    if kind == "documents":
        return text + "---\n" + text, "two documents"
    if kind == "duplicate":
        return text + text.splitlines()[0] + "\n", "duplicate key"
    if kind == "big":
        return text + "#" * rng.choice([70_000, 1 << 20]) + "\n", "oversized"
    if kind == "digits":
        return text + f"clock_hz: {'9' * rng.choice([4301, 5000, 20000])}\n", "huge integer"
    if kind == "binary":
        return text + "description: !!binary aGVsbG8=\n", "binary"
    return text + "description: !!set {a, b}\n", "set"


def mutate(text: str, rng: random.Random) -> tuple[str | bytes, str]:
    """One mutation of a target YAML; returns the file content and what was done."""
    kind = rng.choices(["bytes", "value", "key", "yaml"], weights=[2, 6, 2, 3])[0]
    if kind == "bytes":
        data = bytearray(text.encode())
        how = rng.choice(["flip", "latin1", "truncate", "nul"])
        if how == "flip":
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif how == "latin1":
            data[rng.randrange(len(data))] = rng.choice([0xFF, 0xE9, 0xC3, 0x80])
        elif how == "truncate":
            data = data[:rng.randrange(len(data))]
        else:
            data.insert(rng.randrange(len(data)), 0)
        return bytes(data), f"bytes {how}"
    if kind == "yaml":
        return _yaml_attack(rng, text)
    data = yaml.safe_load(text)
    if kind == "key":
        how = rng.choice(["drop", "unknown", "kind"])
        paths = _paths(data)
        if how == "drop":
            path = rng.choice(paths)
            parent = data
            for key in path[:-1]:
                parent = parent[key]
            del parent[path[-1]]
            note = f"dropped {'/'.join(map(str, path))}"
        elif how == "unknown":
            data[rng.choice(["clock_mhz", "x" * 300, "[/]", "ssh_host", 7])] = 1
            note = "unknown key"
        else:
            data["kind"] = rng.choice(KINDS)
            note = f"kind {data['kind']}"
    else:
        notes = []
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(_paths(data))
            value = rng.choice(VALUES)
            if isinstance(value, str) and rng.random() < 0.3:
                value = value * rng.randint(2, 50)
            _set(data, path, value)
            notes.append(f"{'/'.join(map(str, path))}={str(value)[:20]!r}")
        note = ", ".join(notes)
    return yaml.safe_dump(data, allow_unicode=True), note


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    from eedge.targets import TARGETS_DIR

    root = tmp_path_factory.mktemp("fuzz-target-yaml")
    bundle = tiny_int8_bundle(root / "pristine")
    texts = [p.read_text() for p in sorted(TARGETS_DIR.glob("*.yaml"))]
    return root, bundle, texts


def test_fuzz_target_yaml(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                          fuzz_root: tuple[Path, Path, list[str]]) -> None:
    import eedge.codegen.device_run
    import eedge.profiling.serial_driver
    import eedge.profiling.ssh

    monkeypatch.setattr(eedge.profiling.ssh, "connect", _stub("no SSH connections"))
    monkeypatch.setattr(eedge.codegen.device_run, "run_on_target", _stub("no QEMU runs"))
    monkeypatch.setattr(eedge.profiling.serial_driver, "build", _stub("no board builds"))
    root, bundle, texts = fuzz_root
    model = bundle / "model.int8.tflite"
    tally = FuzzTally("target-yaml")
    start = time.perf_counter()
    for index, rng in enumerate(seeds("target-yaml")):
        content, what = mutate(rng.choice(texts), rng)
        case = root / f"case{index}"
        case.mkdir()
        target = case / rng.choice(["t.yaml", "t.yml"])
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
        label = f"case {index} ({what})"
        commands = [["codegen", str(model), "--target", str(target), "--out", str(case / "p")]]
        if rng.random() < 0.5:
            commands.append(["profile", str(bundle), "--target", str(target), "--repeats", "2",
                             "--warmup", "0", "--json"])
        for args in commands:
            tally.add(check_cli_case(capsys, root, case, args, label))
        shutil.rmtree(case)
    with capsys.disabled():
        print(f"\n{tally.report()} in {time.perf_counter() - start:.1f} s")
