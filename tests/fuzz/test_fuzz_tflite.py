"""Fuzz: mutated ``.tflite`` files through ``eedge export`` and ``eedge codegen``.

Bases: the int8 files eedge writes (a stage file and the whole model of a small
three-exit CNN, see small_models.py) and, when ``../shared/models/mlperf_tiny``
is there, the MLPerf Tiny int8 reference models nobody here wrote. Mutations:
bit flips, truncation, 4-byte overwrites anywhere, and writes aimed through the
flatbuffer accessors at the fields runtimes trust: quantization scales and zero
points, quantized dimensions, shapes, tensor types, buffer indices, buffer data
(weights, biases, RESHAPE targets), operator tensor and opcode indices, and
builtin options. Each case runs ``export X.tflite --out case/b`` and ``codegen
X.tflite --target host --out case/p``; harness.check_cli_case asserts the
bad-input contract (never exit 1, one stderr line, nothing outside the case).
"""

from __future__ import annotations

import random
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from fuzz.harness import FuzzTally, check_cli_case, seeds
from fuzz.small_models import tiny_int8_bundle

pytestmark = pytest.mark.fuzz

MLPERF = Path(__file__).resolve().parents[3] / "shared" / "models" / "mlperf_tiny"
MLPERF_MODELS = ("kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite",
                 "vww_96_int8.tflite")


@dataclass(frozen=True)
class Field:
    """One scalar of the flatbuffer: what it is, where it sits, its struct format."""

    kind: str
    pos: int
    fmt: str


INTERESTING: dict[str, list[float | int]] = {
    "scale": [0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e-45, 1e-38, 2.0 ** -101,
              2.0 ** -99, 1e-12, 1e-6, 1.0, 255.0, 1e12, 2.0 ** 99, 2.0 ** 101, 3.4e38],
    "zero_point": [0, 1, -1, 127, -128, 128, -129, 255, 1 << 31, -(1 << 31), -1_962_934_400,
                   (1 << 63) - 1, -(1 << 63)],
    "shape": [0, 1, 2, 3, -1, 7, 64, 4096, (1 << 24) + 1, (1 << 31) - 1, -(1 << 31)],
    "quant_dim": [0, 1, 2, 3, 4, -1, 100, (1 << 31) - 1],
    "index": [-1, 0, 1, 2, 3, 5, 10, 100, (1 << 31) - 1, -(1 << 31)],
    "type": list(range(-1, 18)),
    "options": [0, 1, 2, 3, 4, 6, 255, 0x7FFFFFFF, 0xFFFFFFFF],
}
_FORMAT_KIND = {"<f": "scale", "<q": "zero_point"}


def _vector_fields(tab: object, slot: int, kind: str, fmt: str) -> list[Field]:
    o = tab.Offset(slot)  # type: ignore[attr-defined]
    if not o:
        return []
    start, count = tab.Vector(o), tab.VectorLen(o)  # type: ignore[attr-defined]
    size = struct.calcsize(fmt)
    return [Field(kind, start + i * size, fmt) for i in range(count)]


def _scalar_field(tab: object, slot: int, kind: str, fmt: str) -> list[Field]:
    o = tab.Offset(slot)  # type: ignore[attr-defined]
    return [Field(kind, tab.Pos + o, fmt)] if o else []  # type: ignore[attr-defined]


def model_fields(data: bytes) -> list[Field]:
    """The scalars worth aiming at, found with the generated accessors (vtable slots)."""
    from eedge.tflite_schema import schema as S

    buf = bytearray(data)
    model = S.Model.GetRootAs(buf, 0)
    graph = model.Subgraphs(0)
    found: list[Field] = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        found += _vector_fields(t._tab, 4, "shape", "<i")
        found += _scalar_field(t._tab, 6, "type", "<b")
        found += _scalar_field(t._tab, 8, "index", "<I")
        q = t.Quantization()
        if q is not None:
            found += _vector_fields(q._tab, 8, "scale", "<f")
            found += _vector_fields(q._tab, 10, "zero_point", "<q")
            found += _scalar_field(q._tab, 16, "quant_dim", "<i")
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        found += _scalar_field(op._tab, 4, "index", "<I")
        found += _vector_fields(op._tab, 6, "index", "<i")
        found += _vector_fields(op._tab, 8, "index", "<i")
        options = op.BuiltinOptions()
        if options is not None:
            found += [Field("options", options.Pos + k, "<I") for k in range(-8, 16, 4)
                      if 0 <= options.Pos + k <= len(data) - 4]
    found += _vector_fields(graph._tab, 6, "index", "<i")
    found += _vector_fields(graph._tab, 8, "index", "<i")
    for i in range(1, model.BuffersLength()):
        found += _vector_fields(model.Buffers(i)._tab, 4, "data", "<b")
    return found


def _write(data: bytearray, f: Field, value: float | int) -> None:
    size = struct.calcsize(f.fmt)
    if f.fmt == "<f":
        data[f.pos:f.pos + size] = struct.pack("<f", value)
        return
    bits = 8 * size
    data[f.pos:f.pos + size] = (int(value) & ((1 << bits) - 1)).to_bytes(size, "little")


def mutate(base: bytes, fields: list[Field], rng: random.Random) -> tuple[bytes, str]:
    """One mutation of BASE; returns the bytes and a short description for messages."""
    data = bytearray(base)
    kind = rng.choices(["flip", "truncate", "overwrite", "aimed", "aimed_many"],
                       weights=[2, 1, 2, 6, 2])[0]
    if kind == "flip":
        count = rng.randint(1, 8)
        for _ in range(count):
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
        return bytes(data), f"{count} bit flips"
    if kind == "truncate":
        cut = rng.randrange(len(data))
        return bytes(data[:cut]), f"truncated to {cut} bytes"
    if kind == "overwrite":
        pos = rng.randrange(0, len(data) - 4)
        value = rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, len(data), rng.getrandbits(32)])
        data[pos:pos + 4] = value.to_bytes(4, "little")
        return bytes(data), f"4 bytes at {pos} = {value:#x}"
    notes = []
    for _ in range(1 if kind == "aimed" else rng.randint(2, 6)):
        wanted = rng.choice(["scale", "zero_point", "shape", "quant_dim", "type", "index",
                             "data", "options", "scale", "zero_point"])
        pool = [f for f in fields if f.kind == wanted] or fields
        f = rng.choice(pool)
        if f.kind == "data":
            value: float | int = rng.choice([0, 1, -1, 127, -128, rng.randint(-128, 127)])
        elif f.kind == "scale" and rng.random() < 0.3:
            value = struct.unpack("<f", bytes(data[f.pos:f.pos + 4]))[0] * rng.choice(
                [2.0 ** 40, 2.0 ** -40, -1.0, 1e30])
        else:
            value = rng.choice(INTERESTING[f.kind])
        _write(data, f, value)
        notes.append(f"{f.kind}@{f.pos}={value}")
    return bytes(data), "aimed " + ", ".join(notes)


@dataclass(frozen=True)
class Base:
    name: str
    data: bytes
    fields: list[Field]


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Base]]:
    root = tmp_path_factory.mktemp("fuzz-tflite")
    bundle = tiny_int8_bundle(root / "pristine")
    files = [bundle / "model.int8.tflite", bundle / "stage0.int8.tflite",
             bundle / "stage1.int8.tflite"]
    if MLPERF.is_dir():
        files += [MLPERF / name for name in MLPERF_MODELS if (MLPERF / name).is_file()]
    bases = []
    for path in files:
        data = path.read_bytes()
        bases.append(Base(path.name, data, model_fields(data)))
    return root, bases


def test_fuzz_tflite(capsys: pytest.CaptureFixture[str], fuzz_root: tuple[Path, list[Base]]
                     ) -> None:
    root, bases = fuzz_root
    tally = FuzzTally("tflite")
    start = time.perf_counter()
    for index, rng in enumerate(seeds("tflite")):
        # the small files are cheap to export: most cases use them, a quarter an MLPerf model
        own = [b for b in bases if not b.name.startswith(MLPERF_MODELS)]
        base = rng.choice(bases if rng.random() < 0.25 else own)
        data, what = mutate(base.data, base.fields, rng)
        case = root / f"case{index}"
        case.mkdir()
        model = case / "x.tflite"
        model.write_bytes(data)
        label = f"case {index} ({base.name}: {what})"
        for args in (["export", str(model), "--out", str(case / "b")],
                     ["codegen", str(model), "--target", "host", "--out", str(case / "p")]):
            tally.add(check_cli_case(capsys, root, case, args, label))
        shutil.rmtree(case)
    with capsys.disabled():
        print(f"\n{tally.report()} in {time.perf_counter() - start:.1f} s")
