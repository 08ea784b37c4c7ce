"""Fuzz: mutated ``manifest.json`` files against every command that reads a bundle.

Each case copies a small demo-like bundle (the digits CNN, float and int8
stages, three exits), mutates its manifest (types swapped, numbers made NaN,
infinite, huge or negative, keys dropped or duplicated, strings with rich
markup and control characters, lists emptied or extended, deep nesting,
non-UTF-8 bytes, broken cross-references, swapped stage files) and, in about
half the cases, re-signs the file checksums so the mutation reaches past the
checksum check. Then ``inspect``, ``thresholds`` (show), ``run`` (ONNX Runtime
and eedge's int8 reference), ``calibrate --dry-run``, ``evaluate`` and
``codegen --target host`` must each end in a one-line error or a normal answer
(see harness.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fuzz.digits_bundle import build_digits_bundle
from fuzz.harness import FuzzTally, check_cli_case, seeds

pytestmark = pytest.mark.fuzz

SAMPLES = 8  # rows of the case data: enough for calibrate and evaluate
# calibrate's threshold search costs about a second on each case whose manifest stays valid
# (a 101 x 101 grid for two deciding exits), so the bounded default is smaller than the
# harness's; EEDGE_FUZZ_CASES (make fuzz) sets the count as for every fuzz test
DEFAULT_CASES = 25


@dataclass(frozen=True)
class Pristine:
    root: Path       # watched: nothing here may change except the case directory
    bundle: Path
    data: Path
    manifest: dict[str, Any]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    root = tmp_path_factory.mktemp("fuzz-manifest")
    bundle, data = build_digits_bundle(root / "pristine", samples=SAMPLES)
    manifest = json.loads((bundle / "manifest.json").read_text())
    (root / "cases").mkdir()
    return Pristine(root, bundle, data, manifest)


# --- JSON with things json.dumps cannot write: raw literals and duplicate keys ----------

class Raw:
    """A literal written as is (NaN, 1e999, a 5,000-digit integer, deep nesting)."""

    def __init__(self, text: str) -> None:
        self.text = text


class Pairs:
    """An object written with repeated keys (the last one wins in Python's json)."""

    def __init__(self, items: list[tuple[str, Any]]) -> None:
        self.items = items


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump(v)}" for k, v in value.items) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {dump(v)}" for k, v in value.items()) \
            + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump(v) for v in value) + "]"
    return json.dumps(value)


# --- where to mutate -------------------------------------------------------------------

Path_ = tuple[Any, ...]


def _paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, prefix + (i,))
    return found


def _get(root: Any, path: Path_) -> Any:
    for key in path:
        root = root[key]
    return root


def _set(root: Any, path: Path_, value: Any) -> None:
    _get(root, path[:-1])[path[-1]] = value


# paths a runtime or the code generator reads: mutated more often than the rest
HOT = ("threshold", "window_low", "criterion", "scale", "zero_point", "shape", "dtype", "name",
       "num_classes", "stage", "exit", "index", "members", "tensor", "inputs", "outputs",
       "layout", "files", "axis", "window", "rho", "role", "cut_tensors", "bytes_per_sample")

STRINGS = ["x[/]", "[bold red]boom[/]", "[/", "a\x00b", "\x1b[31mred\x1b[0m", "line\nbreak",
           "", " ", "é🙂", "../../etc/passwd", "stage0.onnx", "foo", "float64", "int4", "NCHW",
           "NHWC", "batch", "exit0", "relu", "input", "x" * 5000, "\ud800"]
NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e308", "-0.0", "5e-324",
           "0", "-1", "1", "2", "255", "-129", "128", "99", "2147483648", "9223372036854775808",
           str(10 ** 30), "1" * 4400, "0.5", "1.5", "-0.5", "1e-45", "3", "10"]


def _random_value(rng: random.Random) -> Any:
    kind = rng.randrange(8)
    if kind == 0:
        return Raw(rng.choice(NUMBERS))
    if kind == 1:
        return rng.choice(STRINGS)
    if kind == 2:
        return None
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return []
    if kind == 5:
        return {}
    if kind == 6:
        return [Raw(rng.choice(NUMBERS)) for _ in range(rng.randrange(1, 4))]
    return rng.choice([{"scale": [1.0], "zero_point": [0], "axis": None}, ["batch", 10],
                       {"criterion": "max_softmax", "threshold": 0.5}])


def _nested(rng: random.Random) -> Raw:
    depth = rng.choice([40, 200, 1000, 5000, 100_000])
    opener, closer = rng.choice([("[", "]"), ('{"a": ', "}")])
    return Raw(opener * depth + "1" + closer * depth)


Mutation = Callable[[random.Random, dict[str, Any], Path], Any]


def _pick(rng: random.Random, manifest: Any, hot: bool = True) -> Path_:
    paths = _paths(manifest)[1:]
    if hot and rng.random() < 0.7:
        preferred = [p for p in paths if any(isinstance(k, str) and k in HOT for k in p[-2:])]
        paths = preferred or paths
    return rng.choice(paths)


def m_replace(rng: random.Random, m: dict[str, Any], _b: Path) -> Any:
    _set(m, _pick(rng, m), _random_value(rng))
    return m


def m_number(rng: random.Random, m: dict[str, Any], _b: Path) -> Any:
    numeric = [p for p in _paths(m) if isinstance(_get(m, p), (int, float))
               and not isinstance(_get(m, p), bool)]
    path = rng.choice(numeric)
    old = _get(m, path)
    choice = rng.randrange(4)
    if choice == 0:
        _set(m, path, Raw(rng.choice(NUMBERS)))
    elif choice == 1:
        _set(m, path, -old if old else -1)
    elif choice == 2:
        _set(m, path, old * rng.choice([2, 10, 1000, 10 ** 9]) + rng.choice([0, 1]))
    else:
        _set(m, path, float(old) + rng.choice([0.5, 1e-3, -1e-3]))
    return m


def m_drop(rng: random.Random, m: dict[str, Any], _b: Path) -> Any:
    dict_paths = [p for p in _paths(m) if isinstance(_get(m, p), dict) and _get(m, p)]
    path = rng.choice(dict_paths)
    node = _get(m, path)
    node.pop(rng.choice(list(node)))
    return m


def m_duplicate_key(rng: random.Random, m: dict[str, Any], _b: Path) -> Any:
    dict_paths = [p for p in _paths(m) if isinstance(_get(m, p), dict) and _get(m, p)]
    path = rng.choice(dict_paths)
    node = _get(m, path)
    key = rng.choice(list(node))
    items = list(node.items())
    items.insert(rng.randrange(len(items) + 1), (key, _random_value(rng)))
    if path:
        _set(m, path, Pairs(items))
        return m
    return Pairs(items)


def m_string(rng: random.Random, m: dict[str, Any], _b: Path) -> Any:
    strings = [p for p in _paths(m) if isinstance(_get(m, p), str)]
    preferred = [p for p in strings if p[-1] in ("name", "dtype", "criterion", "layout",
                                                   "tensor", "method", "role")]
    path = rng.choice(preferred if preferred and rng.random() < 0.7 else strings)
    old = _get(m, path)
    new = rng.choice(STRINGS)
    _set(m, path, rng.choice([new, old + new, new + old]))
    return m


def m_list(rng: random.Random, m: dict[str, Any], _b: Path) -> Any:
    lists = [p for p in _paths(m) if isinstance(_get(m, p), list)]
    path = rng.choice(lists)
    node = _get(m, path)
    action = rng.randrange(4)
    if action == 0 or not node:
        node.clear()
    elif action == 1:
        node.append(copy.deepcopy(rng.choice(node)))
    elif action == 2:
        node.append(_random_value(rng))
    else:
        rng.shuffle(node)
    return m


def m_deep(rng: random.Random, m: dict[str, Any], _b: Path) -> Any:
    _set(m, _pick(rng, m, hot=False), _nested(rng))
    return m


def m_cross(rng: random.Random, m: dict[str, Any], _b: Path) -> Any:
    """Plausible but inconsistent: what a hand edit or a bad tool would write."""
    exits, stages = m["exits"], m["stages"]
    action = rng.randrange(12)
    k = rng.randrange(len(exits))
    s = rng.randrange(len(stages))
    if action == 0:
        m["ensemble"] = {"members": rng.choice([[1, 2], [0, 2], [2, 99], [1, 1], [0, 1, 2],
                                                 [2, 1], [-1, 2]]),
                         "aggregation": "mean_softmax",
                         "monitor": rng.choice([None, {"window": 8, "rho": 0.5},
                                                {"window": Raw("1" * 30), "rho": Raw("NaN")}])}
    elif action == 1:
        exits[k]["num_classes"] = rng.choice([1, 9, 11, 1000, 10 ** 30])
    elif action == 2:
        exits[k]["policy"]["window_low"] = Raw(rng.choice(["NaN", "0.1", "0.9", "1e999"]))
    elif action == 3:
        exits[k]["policy"]["threshold"] = Raw(rng.choice(["NaN", "-Infinity", "1.0000001",
                                                          "0", "1"]))
    elif action == 4:
        exits[k]["policy"]["criterion"] = rng.choice(["margin", "entropy", "max_softmax"])
    elif action == 5:
        exits[k]["tensor"] = rng.choice(["relu", "exit1", "nope", "input"])
    elif action == 6:
        exits[k]["stage"], stages[s]["exit"] = s, k
    elif action == 7:
        io = stages[s]["io"][rng.choice(list(stages[s]["io"]))]
        tensor = rng.choice(io["inputs"] + io["outputs"])
        if "quant" in tensor:
            field = rng.choice(["scale", "zero_point"])
            tensor["quant"][field] = rng.choice([[1.0], [0], [0.5, 0.5], [-128], [127], []])
        else:
            tensor["dtype"] = rng.choice(["int8", "float64", "int32", "uint8"])
    elif action == 8:
        io = stages[s]["io"][rng.choice(list(stages[s]["io"]))]
        tensor = rng.choice(io["inputs"] + io["outputs"])
        shape = tensor["shape"]
        if len(shape) > 1:
            shape[rng.randrange(1, len(shape))] = rng.choice([1, 2, 7, 65, 10 ** 6])
        else:
            shape.append(3)
    elif action == 9:
        io = stages[s]["io"][rng.choice(list(stages[s]["io"]))]
        tensors = rng.choice([io["inputs"], io["outputs"]])
        if len(tensors) > 1:
            tensors.reverse()
        else:
            tensors[0]["name"] = rng.choice(["relu", "max_pool2d", "other"])
    elif action == 10:
        m["inputs"][0]["layout"] = rng.choice(["NHWC", "NCL", None, "NCHW"])
        m["inputs"][0]["shape"] = rng.choice([["batch", 8, 8, 1], [1, 1, 8, 8], ["batch", 64],
                                              ["batch", 1, 8, 8]])
    else:
        m["split"] = rng.choice([{"requested": "stage0", "head_stages": [0],
                                  "tail_stages": [1, 2], "cut_tensors": [], "role": "head",
                                  "cut_bytes_per_sample": 0},
                                 {"requested": "x", "head_stages": [], "tail_stages": [9],
                                  "cut_tensors": [{"name": "nope", "shape": ["batch", 3],
                                                   "dtype": "float32",
                                                   "bytes_per_sample": 12}],
                                  "role": "tail", "cut_bytes_per_sample": 12}])
    return m


def m_swap_file(rng: random.Random, m: dict[str, Any], bundle: Path) -> Any:
    """Swap a stage file for another valid file of the bundle (re-signed below)."""
    names = sorted(p.name for p in bundle.iterdir() if p.name != "manifest.json")
    a = rng.choice(names)
    same_kind = [n for n in names if n != a and n.split(".", 1)[1] == a.split(".", 1)[1]]
    b = rng.choice(same_kind or names)
    data_a, data_b = (bundle / a).read_bytes(), (bundle / b).read_bytes()
    (bundle / a).write_bytes(data_b)
    if rng.random() < 0.5:
        (bundle / b).write_bytes(data_a)
    return m


MUTATIONS: list[Mutation] = [m_replace, m_number, m_drop, m_duplicate_key, m_string, m_list,
                             m_deep, m_cross, m_cross, m_cross, m_swap_file]


def _resign(manifest: Any, bundle: Path) -> None:
    """Recompute sha256/bytes of the listed files, so checksums pass again."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        return
    for name, entry in files.items():
        path = bundle / str(name)
        if isinstance(name, str) and "/" not in name and path.is_file() and \
                isinstance(entry, dict):
            data = path.read_bytes()
            entry["sha256"] = hashlib.sha256(data).hexdigest()
            entry["bytes"] = len(data)


def mutate_case(rng: random.Random, pristine: Pristine, bundle: Path) -> str:
    """Write a mutated manifest into ``bundle`` (a copy); return what was done."""
    manifest: Any = copy.deepcopy(pristine.manifest)
    done = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        mutation = rng.choice(MUTATIONS)
        if not isinstance(manifest, dict):
            break
        try:
            manifest = mutation(rng, manifest, bundle)
        except (IndexError, KeyError, TypeError, AttributeError, ValueError):
            continue  # an earlier mutation removed what this one edits
        done.append(mutation.__name__)
    if rng.random() < 0.5 or "m_swap_file" in done:
        _resign(manifest, bundle)
        done.append("re-signed")
    text = dump(manifest).encode("utf-8", "surrogatepass")
    if rng.random() < 0.08:  # byte-level damage: non-UTF-8, truncation, BOM
        action = rng.randrange(4)
        at = rng.randrange(len(text))
        if action == 0:
            text = text[:at] + rng.choice([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80"]) + text[at:]
        elif action == 1:
            text = text[:at]
        elif action == 2:
            text = b"\xef\xbb\xbf" + text
        else:
            text = text.replace(b"  ", b"\t", 3) + b"\x00"
        done.append(f"bytes{action}")
    (bundle / "manifest.json").write_bytes(text)
    return "+".join(done)


def _commands(bundle: Path, data: Path, case_dir: Path) -> list[list[str]]:
    b, d = str(bundle), str(data)
    return [["inspect", b],
            ["thresholds", b],
            ["run", b, "--input", d, "--runtime", "onnx"],
            ["run", b, "--input", d, "--runtime", "int8-reference"],
            ["calibrate", b, "--data", d, "--dry-run", "--max-accuracy-drop", "0.02"],
            ["evaluate", b, "--data", d],
            ["codegen", b, "--target", "host", "--out", str(case_dir / "fw")]]


def test_fuzz_manifest(pristine: Pristine, capsys: pytest.CaptureFixture[str]) -> None:
    tally = FuzzTally("manifest")
    started = time.perf_counter()
    for index, rng in enumerate(seeds("manifest", DEFAULT_CASES)):
        case_dir = pristine.root / "cases" / f"case{index}"
        bundle = case_dir / "bundle"
        shutil.copytree(pristine.bundle, bundle)
        what = f"case {index} ({mutate_case(rng, pristine, bundle)})"
        for args in _commands(bundle, pristine.data, case_dir):
            tally.add(check_cli_case(capsys, pristine.root, case_dir, args, what))
        shutil.rmtree(case_dir)
    with capsys.disabled():
        print(f"\n{tally.report()} in {time.perf_counter() - started:.1f} s")
