"""Fuzz: mutated and malicious ONNX files through ``eedge export``.

The base is a small three-exit CNN (small_models.py). Mutations: the serialized
protobuf truncated, bit-flipped or overwritten; initializers with wrong element
types, huge, zero or negative dims, too little or too much data; external data
pointing outside the model's folder (absolute paths, ``..``, symlinks), at
missing files or past the end of a file; cyclic graphs, duplicate outputs,
missing initializers and inputs; unknown operators and domains, missing or
absurd opsets and IR versions; broken attributes (strides 0, negative pads,
huge groups, wrong types); inputs with huge, zero or negative dims and other
element types; exits removed or naming nothing; names with control characters
and rich markup. Each case runs ``export case/m.onnx --out case/b`` (in a
third of the cases with ``--format onnx,tflite --int8``) through
harness.check_cli_case.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from fuzz.harness import FuzzTally, check_cli_case, seeds
from fuzz.small_models import calibration, tiny_cnn

pytestmark = pytest.mark.fuzz

SECRET = "outside-secret.bin"  # a file next to the case folder that external data may name


def _external(model: onnx.ModelProto, rng: random.Random, case: Path) -> str:
    init = rng.choice(list(model.graph.initializer))
    location = rng.choice([f"../{SECRET}", str(case.parent / SECRET), "/etc/passwd",
                           "/dev/zero", "missing.bin", "data.bin", "link.bin", "", ".",
                           "a/../../" + SECRET, "data.bin\x00x"])
    if location in ("data.bin", "link.bin"):
        raw = init.raw_data or np.zeros(1, np.float32).tobytes()
        (case / "data.bin").write_bytes(raw[:rng.choice([0, 3, len(raw)])] + b"\x00" * 8)
        if location == "link.bin" and not (case / "link.bin").is_symlink():
            os.symlink(case.parent / SECRET, case / "link.bin")
    init.ClearField("raw_data")
    del init.float_data[:]
    init.data_location = TensorProto.EXTERNAL
    entries = {"location": location}
    if rng.random() < 0.5:
        entries["offset"] = str(rng.choice([0, 3, 1 << 40, -1]))
    if rng.random() < 0.5:
        entries["length"] = str(rng.choice([0, 4, 1 << 40, -4, "x"]))
    del init.external_data[:]
    for key, value in entries.items():
        init.external_data.add(key=key, value=value)
    return f"external data {init.name} -> {location!r} {entries}"


def _initializer(model: onnx.ModelProto, rng: random.Random) -> str:
    init = rng.choice(list(model.graph.initializer))
    how = rng.choice(["dtype", "dims", "short", "long", "remove", "duplicate", "nan"])
    if how == "dtype":
        init.data_type = rng.choice([0, TensorProto.STRING, TensorProto.BOOL,
                                     TensorProto.FLOAT16, TensorProto.INT64, TensorProto.DOUBLE,
                                     TensorProto.COMPLEX64, 999])
    elif how == "dims":
        del init.dims[:]
        init.dims.extend(rng.choice([[1 << 40], [0], [-3, 2], [1] * 40, [3, 1 << 31],
                                     [2 ** 62, 2 ** 62], []]))
    elif how == "short":
        init.raw_data = init.raw_data[:rng.randrange(max(len(init.raw_data), 1))]
    elif how == "long":
        init.raw_data = init.raw_data + b"\x01" * rng.choice([1, 4, 4096])
    elif how == "remove":
        model.graph.initializer.remove(init)
    elif how == "duplicate":
        model.graph.initializer.append(init)
    else:
        values = np.frombuffer(init.raw_data, np.float32).copy()
        values[rng.randrange(len(values))] = rng.choice([np.nan, np.inf, 3e38])
        init.raw_data = values.tobytes()
    return f"initializer {init.name}: {how}"


def _graph(model: onnx.ModelProto, rng: random.Random) -> str:
    g = model.graph
    nodes = list(g.node)
    if not nodes:
        return "graph: no node left"
    node = rng.choice(nodes)
    how = rng.choice(["self-cycle", "cycle", "unknown-op", "domain", "drop-node", "dup-output",
                      "rename-input", "no-outputs", "bad-output", "dup-graph-output",
                      "reorder", "name"])
    if how == "self-cycle":
        node.input[0] = node.output[0]
    elif how == "cycle":
        later = nodes[rng.randrange(nodes.index(node), len(nodes))]
        node.input[0] = later.output[0]
    elif how == "unknown-op":
        node.op_type = rng.choice(["FooBar", "Loop", "If", "Scan", "NonMaxSuppression", ""])
    elif how == "domain":
        node.domain = rng.choice(["com.evil", "ai.onnx.ml", "com.microsoft", "\x00"])
    elif how == "drop-node":
        g.node.remove(node)
    elif how == "dup-output":
        rng.choice(nodes).output[0] = node.output[0]
    elif how == "rename-input" and node.input:
        node.input[rng.randrange(len(node.input))] = rng.choice(["nope", "", "input"])
    elif how == "no-outputs":
        del g.output[:]
    elif how == "bad-output" and g.output:
        g.output[rng.randrange(len(g.output))].name = rng.choice(["nowhere", "input", "c0.w"])
    elif how == "dup-graph-output" and g.output:
        g.output.append(g.output[0])
    elif how == "reorder":
        shuffled = nodes[:]
        rng.shuffle(shuffled)
        del g.node[:]
        g.node.extend(shuffled)
    elif how == "name":
        new = rng.choice(["[/]", "a\x00b", "\x1b[31mred", "x" * 5000, "exit0"])
        if rng.random() < 0.5:
            node.name = new
        else:
            old = node.output[0]
            node.output[0] = new
            for other in nodes:
                for i, name in enumerate(other.input):
                    if name == old:
                        other.input[i] = new
            for out in g.output:
                if out.name == old:
                    out.name = new
    return f"graph {how} at {node.name or node.op_type}"


def _attribute(model: onnx.ModelProto, rng: random.Random) -> str:
    convs = [n for n in model.graph.node if n.attribute]
    if not convs:
        return "attribute: no node with attributes left"
    node = rng.choice(convs)
    name = rng.choice(["strides", "pads", "kernel_shape", "group", "dilations", "axis",
                       "transB", "auto_pad", "alpha"])
    value = rng.choice([[0, 0], [-1, -1, -1, -1], [1 << 31, 1], [1], [1, 1, 1], 0, -1, 1 << 40, 2.5,
                        "SAME_UPPER", "NOTSET", "bogus", [7, 7]])
    for attr in list(node.attribute):
        if attr.name == name:
            node.attribute.remove(attr)
    node.attribute.append(helper.make_attribute(name, value))
    return f"attribute {node.op_type}.{name}={str(value)[:20]}"


def _signature(model: onnx.ModelProto, rng: random.Random) -> str:
    how = rng.choice(["input-dims", "input-type", "opset", "ir", "no-input", "two-inputs"])
    if not model.graph.input:
        return "signature: no input left"
    x = model.graph.input[0]
    if how == "input-dims":
        dims = x.type.tensor_type.shape.dim
        dim = dims[rng.randrange(len(dims))]
        value = rng.choice([0, -1, 1 << 40, 7, 1, "M"])
        if isinstance(value, str):
            dim.dim_param = value
        else:
            dim.dim_value = value
    elif how == "input-type":
        x.type.tensor_type.elem_type = rng.choice([0, TensorProto.STRING, TensorProto.INT8,
                                                   TensorProto.DOUBLE, 999])
    elif how == "opset":
        del model.opset_import[:]
        if rng.random() < 0.8:
            model.opset_import.append(helper.make_opsetid(rng.choice(["", "com.evil"]),
                                                          rng.choice([1, 7, 12, 99, -1])))
    elif how == "ir":
        model.ir_version = rng.choice([0, 1, 3, 99, -1])
    elif how == "no-input":
        del model.graph.input[:]
    else:
        model.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT,
                                                               [1, 4]))
    return f"signature {how}"


def _bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    how = rng.choice(["truncate", "flip", "overwrite", "garbage"])
    buf = bytearray(data)
    if how == "truncate":
        cut = rng.randrange(len(buf))
        return bytes(buf[:cut]), f"truncated to {cut}"
    if how == "flip":
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        return bytes(buf), "bit flips"
    if how == "overwrite":
        pos = rng.randrange(len(buf) - 8)
        buf[pos:pos + 8] = bytes(rng.getrandbits(8) for _ in range(8))
        return bytes(buf), f"8 bytes at {pos}"
    return bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 100, 4096]))), "garbage"


def build_case(base: onnx.ModelProto, rng: random.Random, case: Path) -> str:
    """Write case/m.onnx (and any side files); return what was done."""
    model = onnx.ModelProto()
    model.CopyFrom(base)
    notes = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        mutation: Any = rng.choices([_external, _initializer, _graph, _attribute, _signature],
                                    weights=[2, 3, 4, 2, 2])[0]
        try:
            notes.append(mutation(model, rng, case) if mutation is _external
                         else mutation(model, rng))
        except (IndexError, ValueError) as exc:  # an earlier mutation left nothing to aim at
            notes.append(f"{mutation.__name__} skipped ({type(exc).__name__})")
    data = model.SerializeToString()
    if rng.random() < 0.25:
        data, note = _bytes(data, rng)
        notes.append(note)
    (case / "m.onnx").write_bytes(data)
    return "; ".join(notes)


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, onnx.ModelProto]:
    root = tmp_path_factory.mktemp("fuzz-onnx")
    (root / SECRET).write_bytes(b"secret" * 100)
    np.save(root / "calib.npy", calibration(batch=16))
    return root, tiny_cnn()


def test_fuzz_onnx(capsys: pytest.CaptureFixture[str],
                   fuzz_root: tuple[Path, onnx.ModelProto]) -> None:
    root, base = fuzz_root
    tally = FuzzTally("onnx")
    start = time.perf_counter()
    for index, rng in enumerate(seeds("onnx")):
        case = root / f"case{index}"
        case.mkdir()
        what = build_case(base, rng, case)
        args = ["export", str(case / "m.onnx"), "--out", str(case / "b")]
        if rng.random() < 0.33:
            args += ["--format", "onnx,tflite", "--int8", "--calib", str(root / "calib.npy")]
        tally.add(check_cli_case(capsys, root, case, args, f"case {index} ({what})"))
        shutil.rmtree(case)
    with capsys.disabled():
        print(f"\n{tally.report()} in {time.perf_counter() - start:.1f} s")
