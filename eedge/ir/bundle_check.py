"""What a bundle's manifest claims, checked against itself and against its stage files.

Checksums prove the files are the ones the manifest lists, not that the
manifest describes them: a hand-edited input scale passes every checksum and
then quantizes every sample wrongly (98 % accuracy becomes 10 %, silently),
and a stage file swapped for another valid one (with its sha256 updated)
feeds tensors of the wrong shape to the runtimes. So a bundle load checks:

- cross-references a schema cannot express (:func:`check_cross_references`):
  exits, their stages and the ensemble point at each other; every stage
  input is a model input or an earlier stage's output of the same shape,
  dtype and quantization; an exit's tensor is (batch, num_classes); the model
  inputs have the shape and dtype the first stages read;
- each ONNX and TFLite stage file's own inputs and outputs (names, order,
  dtypes, shapes and, for TFLite, scale and zero point) against the
  manifest's description of that file (:func:`check_stage_files`).

Only the files' input/output declarations are parsed: the ONNX protobuf is
walked to the graph's ``input``/``output`` fields (initializers are skipped,
not decoded), and the TFLite flatbuffer is read through its accessors for the
subgraph's input and output tensors only. Results are cached by the file's
verified sha256, so loading a bundle again (export, calibrate and run load it
several times) costs nothing.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import BundleError

TFLITE_FORMATS = ("tflite", "tflite_int8")
FILE_FORMATS = ("onnx", *TFLITE_FORMATS)
_FIX = "the manifest does not describe its files (edited by hand, or a file replaced): " \
       "re-export the bundle"


def _name(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…'"


def _fail(where: str, detail: str) -> BundleError:
    return BundleError(f"{where}: {detail}; {_FIX}")


# --- cross-references inside the manifest -------------------------------------------------

def check_cross_references(manifest: Mapping[str, Any], where: str) -> None:
    """Raise BundleError unless the manifest's sections agree with each other.

    Expects a manifest that passed the schema (types and ranges are known).
    """
    stages = manifest["stages"]
    _check_stage_entries(stages, where)
    _check_tensor_sizes(manifest, where)
    _check_exits(manifest, where)
    formats = set.intersection(*(set(s["io"]) for s in stages))
    inputs = {t["name"]: t for t in manifest["inputs"]}
    if len(inputs) != len(manifest["inputs"]):
        raise _fail(where, "two model inputs have the same name")
    tail = (manifest["split"] or {}).get("role") == "tail"
    _check_chain(where, "", [(s["inputs"], s["outputs"]) for s in stages], inputs, tail)
    for fmt in sorted(formats):
        _check_chain(where, fmt, [(s["io"][fmt]["inputs"], s["io"][fmt]["outputs"])
                                  for s in stages], inputs, tail)
    _check_ensemble(manifest, where)
    _check_split(manifest, formats, where)


def _check_stage_entries(stages: Sequence[Mapping[str, Any]], where: str) -> None:
    for i, stage in enumerate(stages):
        if stage["index"] != i:
            raise BundleError(f"{where}: stage {i} has index {stage['index']}; stages must be "
                              "listed in order")
        missing_io = [f for f in stage["files"] if f not in stage.get("io", {})]
        if missing_io:
            raise BundleError(f"{where}: stage {i} has no input/output description for "
                              f"{', '.join(missing_io)}; re-export the bundle")
        if not stage.get("io"):
            raise _fail(where, f"stage {i} describes no stage files")
        for fmt, io in stage["io"].items():
            if fmt.startswith("tvm_") and "onnx" in stage["io"] and io != stage["io"]["onnx"]:
                raise _fail(where, f"stage {i}: the {fmt} library is compiled from the ONNX "
                                   "stage, but their inputs/outputs differ")


def _all_tensors(manifest: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    found = [("model input", t) for t in manifest["inputs"]]
    for stage in manifest["stages"]:
        label = f"stage {stage['index']}"
        found += [(label, t) for t in stage["inputs"] + stage["outputs"]]
        for fmt, io in stage["io"].items():
            found += [(f"{label} ({fmt})", t) for t in io["inputs"] + io["outputs"]]
    found += [("cut tensor", t) for t in (manifest["split"] or {}).get("cut_tensors", [])]
    return found


def _check_tensor_sizes(manifest: Mapping[str, Any], where: str) -> None:
    """Only the batch may be symbolic; bytes_per_sample is what the shape and dtype say."""
    for label, t in _all_tensors(manifest):
        dims = t["shape"][1:]
        if any(isinstance(d, str) for d in dims):
            raise _fail(where, f"{label} tensor {_name(t['name'])} has shape {t['shape']}: only "
                               "the first (batch) dimension may be symbolic")
        elements = math.prod(dims) if dims else 1
        expected = elements * np.dtype(t["dtype"]).itemsize
        if t["bytes_per_sample"] != expected:
            raise _fail(where, f"{label} tensor {_name(t['name'])} claims "
                               f"{t['bytes_per_sample']} bytes per sample, but its shape "
                               f"{t['shape']} of {t['dtype']} takes {expected}")
        if t.get("quant") and t["dtype"] != "int8":  # the schema allows one scale and zp
            raise _fail(where, f"{label} tensor {_name(t['name'])} is {t['dtype']} but has int8 "
                               "quantization parameters")


def _check_exits(manifest: Mapping[str, Any], where: str) -> None:
    stages, exits = manifest["stages"], manifest["exits"]
    previous = -1
    for k, entry in enumerate(exits):
        if entry["index"] != k:
            raise _fail(where, f"exit {k} is listed with index {entry['index']}; exits must be "
                               "listed in order")
        s = entry["stage"]
        if s >= len(stages) or stages[s]["exit"] != k:
            raise BundleError(f"{where}: exit {k} points at stage {s}, which does not "
                              "produce it")
        if s <= previous:
            raise _fail(where, f"exit {k} is at stage {s}, not after exit {k - 1}'s stage "
                               f"{previous}")
        previous = s
        stage = stages[s]
        described = [("", stage["outputs"])] + [(f" ({fmt})", io["outputs"])
                                                 for fmt, io in stage["io"].items()]
        for label, outputs in described:
            exit_tensor = outputs[0]
            if exit_tensor["name"] != entry["tensor"]:
                raise _fail(where, f"exit {k} is tensor {_name(entry['tensor'])}, but stage "
                                   f"{s}{label} lists {_name(exit_tensor['name'])} first")
            shape = exit_tensor["shape"]
            gate = entry.get("gate")
            columns = entry["num_classes"] + (1 if gate else 0)  # a gate is one more column
            if len(shape) != 2 or shape[-1] != columns:
                raise _fail(where, f"exit {k} has num_classes {entry['num_classes']}"
                                   f"{' and a gate' if gate else ''}, but its tensor{label} "
                                   f"has shape {shape} (expected [batch, {columns}])")
            deciding = k < len(exits) - 1 or (manifest["split"] or {}).get("role") == "head"
            if entry["policy"]["criterion"] == "gate" and not gate and deciding:
                raise _fail(where, f"exit {k} uses the gate criterion but has no gate (export "
                                   "the model with --gates, or choose another criterion)")
            if gate and gate["column"] != entry["num_classes"]:
                raise _fail(where, f"exit {k}'s gate is column {gate['column']}; a gate is "
                                   f"the last column ({entry['num_classes']})")
            if gate and gate.get("quant") and exit_tensor.get("quant") and \
                    _comparable(exit_tensor)[3][:2] != (tuple(gate["quant"]["scale"]),
                                                       tuple(gate["quant"]["zero_point"])):
                raise _fail(where, f"exit {k}'s gate quantization differs from its int8 "
                                   f"tensor{label}'s; re-export the bundle")
    for stage in stages:
        k = stage["exit"]
        if k is not None and (k >= len(exits) or exits[k]["stage"] != stage["index"]):
            raise _fail(where, f"stage {stage['index']} produces exit {k}, which the exits do "
                               "not list at that stage")
    role = (manifest["split"] or {}).get("role")
    if role != "head" and stages[-1]["exit"] != len(exits) - 1:
        raise _fail(where, f"the last stage must produce the final exit (exit "
                           f"{len(exits) - 1}); only a split head bundle ends without it")


def _comparable(t: Mapping[str, Any]) -> tuple[Any, ...]:
    quant = t.get("quant") or None
    key = None if quant is None else (tuple(quant["scale"]), tuple(quant["zero_point"]),
                                      quant.get("axis"))
    return t["name"], tuple(t["shape"]), t["dtype"], key


def _check_chain(where: str, fmt: str, stages: Sequence[tuple[Sequence[Mapping[str, Any]],
                                                             Sequence[Mapping[str, Any]]]],
                 model_inputs: Mapping[str, Mapping[str, Any]], tail: bool) -> None:
    """Every stage input is a model input or an earlier output, described identically."""
    label = f" ({fmt})" if fmt else ""
    known: dict[str, tuple[Any, ...]] = {}
    for index, (inputs, outputs) in enumerate(stages):
        names = [t["name"] for t in inputs] + [t["name"] for t in outputs]
        if len(set(names)) != len(names):
            raise _fail(where, f"stage {index}{label} lists a tensor twice among its inputs "
                               "and outputs")
        for t in inputs:
            name = t["name"]
            if name in known:
                if known[name] != _comparable(t):
                    raise _fail(where, f"stage {index}{label} reads {_name(name)} as "
                                       f"{t['shape']} {t['dtype']}{_quant_text(t)}, but it "
                                       "was described differently where it was made")
            elif name in model_inputs:
                _check_model_input(where, fmt, index, model_inputs[name], t, tail)
                known[name] = _comparable(t)
            else:
                raise _fail(where, f"stage {index}{label} reads {_name(name)}, which is neither "
                                   "a model input nor an output of an earlier stage")
        for t in outputs:
            if t["name"] in known or t["name"] in model_inputs:
                raise _fail(where, f"stage {index}{label} outputs {_name(t['name'])}, which "
                                   "already exists")
            known[t["name"]] = _comparable(t)


def _quant_text(t: Mapping[str, Any]) -> str:
    quant = t.get("quant")
    if not quant:
        return ""
    return f" scale {_numbers(quant['scale'])} zero point {_numbers(quant['zero_point'])}"


def _numbers(values: Sequence[float]) -> str:
    shown = ", ".join(f"{v:.8g}" for v in values[:4])
    return f"[{shown}{', …' if len(values) > 4 else ''}]"


def channels_last_shape(shape: Sequence[Any], layout: str | None) -> list[Any]:
    """The shape :func:`eedge.ir.layout.to_channels_last` gives an array of ``shape``."""
    if layout == "NCHW" and len(shape) == 4:
        return [shape[0], shape[2], shape[3], shape[1]]
    if layout == "NLC" and len(shape) == 3:
        return [shape[0], 1, shape[1], shape[2]]
    if layout == "NCL" and len(shape) == 3:
        return [shape[0], 1, shape[2], shape[1]]
    return list(shape)


def _check_model_input(where: str, fmt: str, stage: int, user: Mapping[str, Any],
                       read: Mapping[str, Any], tail: bool) -> None:
    """The user's input (manifest ``inputs``) becomes what the stage reads.

    The cascade converts NCHW/NCL inputs to channels-last for TFLite stages and
    quantizes float inputs for int8 stages; anything else must match as is. A
    tail bundle's inputs are hand-offs, which arrive in the layout of the runtime
    that made them (raw), so only their size per sample must agree.
    """
    label = f" ({fmt})" if fmt else ""
    expected = channels_last_shape(user["shape"], user.get("layout")) \
        if fmt in TFLITE_FORMATS else list(user["shape"])
    if tail and fmt in TFLITE_FORMATS:
        # (N, T, D) tokens are stored (N, 1, T, D) by the lowering: the rank may differ
        same = math.prod(read["shape"][1:]) == math.prod(user["shape"][1:])
    else:
        same = list(read["shape"]) == expected
    if not same:
        raise _fail(where, f"model input {_name(user['name'])} has shape {user['shape']} "
                           f"({user.get('layout') or 'no layout'}), but stage {stage}{label} "
                           f"reads it as {read['shape']}")
    quantized = read["dtype"] == "int8" and read.get("quant") and user["dtype"] != "int8"
    if read["dtype"] != user["dtype"] and not quantized:
        raise _fail(where, f"model input {_name(user['name'])} is {user['dtype']}, but stage "
                           f"{stage}{label} reads {read['dtype']}")


def _check_ensemble(manifest: Mapping[str, Any], where: str) -> None:
    ensemble = manifest.get("ensemble")
    if not ensemble:
        return
    exits = manifest["exits"]
    members = list(ensemble["members"])
    expected = list(range(len(exits) - len(members), len(exits)))
    if members != expected:
        raise _fail(where, f"ensemble members {members[:8]} must be the last "
                           f"{len(members)} exits in order ({expected[:8]} here, of "
                           f"{len(exits)} exits)")
    classes = {exits[k]["num_classes"] for k in members}
    if len(classes) != 1:
        raise _fail(where, f"ensemble members {members} have different numbers of classes "
                           f"{sorted(classes)}")


def _check_split(manifest: Mapping[str, Any], formats: set[str], where: str) -> None:
    split = manifest["split"]
    if not split:
        return
    stages = manifest["stages"]
    role = split.get("role")
    cut = [t["name"] for t in split["cut_tensors"]]
    if role is None:
        for key in ("head_stages", "tail_stages"):
            bad = [s for s in split[key] if s >= len(stages)]
            if bad:
                raise _fail(where, f"split {key} names stage {bad[0]}; the bundle has "
                                   f"{len(stages)}")
    elif role == "head":
        for fmt in sorted(formats):
            made = {t["name"] for s in stages for t in s["io"][fmt]["outputs"]}
            made |= {t["name"] for t in manifest["inputs"]}  # a cascade's tail reads the input
            missing = [name for name in cut if name not in made]
            if missing:
                raise _fail(where, f"cut tensor {_name(missing[0])} is not an output of any "
                                   f"stage ({fmt}) of this head bundle")
    elif [t["name"] for t in manifest["inputs"]] != cut:
        raise _fail(where, "a tail bundle's inputs must be its cut tensors")


# --- the stage files themselves ----------------------------------------------------------

@dataclass(frozen=True)
class FileTensor:
    """One input or output as the stage file declares it."""

    name: str
    shape: tuple[int | str | None, ...]   # str: a symbolic dim; None: unknown (ONNX)
    dtype: str
    scale: tuple[float, ...] = ()         # TFLite quantization; empty when none
    zero_point: tuple[int, ...] = ()


@dataclass(frozen=True)
class FileIO:
    inputs: tuple[FileTensor, ...]
    outputs: tuple[FileTensor, ...]


_CACHE: dict[tuple[Any, ...], FileIO] = {}
_CACHE_LIMIT = 512


def check_stage_files(manifest: Mapping[str, Any], path: Path, verified: bool) -> None:
    """Each ONNX/TFLite stage file declares the inputs and outputs the manifest lists.

    ``verified``: the files' sha256 were just checked, so the manifest's sha256
    identifies the content and can key the cache.
    """
    for stage in manifest["stages"]:
        for fmt, name in stage["files"].items():
            if fmt not in FILE_FORMATS:
                continue  # compiled libraries (tvm_*) declare no inputs we could read
            file_path = path / name
            where = f"{path}: {name} (stage {stage['index']}, {fmt})"
            io = _file_io(file_path, fmt, manifest["files"][name]["sha256"] if verified
                          else None, where)
            described = stage["io"][fmt]
            _compare(where, "input", io.inputs, described["inputs"], fmt)
            _compare(where, "output", io.outputs, described["outputs"], fmt)


def _file_io(file_path: Path, fmt: str, sha256: str | None, where: str) -> FileIO:
    try:
        if sha256 is not None:
            key: tuple[Any, ...] = (fmt, sha256)
        else:
            stat = file_path.stat()
            key = (fmt, str(file_path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        raise BundleError(f"{where}: the file is missing; re-export the bundle") from None
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    try:
        data = file_path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{where}: cannot read the file ({exc.strerror or exc})") from None
    reader = read_onnx_io if fmt == "onnx" else read_tflite_io
    try:
        io = reader(data)
    except BundleError as exc:
        raise BundleError(f"{where}: {exc}; the file is not the stage the manifest describes: "
                          "re-export the bundle") from None
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
    _CACHE[key] = io
    return io


def _compare(where: str, kind: str, found: Sequence[FileTensor],
             described: Sequence[Mapping[str, Any]], fmt: str) -> None:
    if len(found) != len(described):
        raise _fail(where, f"the file has {len(found)} {kind}s, the manifest lists "
                           f"{len(described)}")
    for i, (f, d) in enumerate(zip(found, described)):
        if f.name != d["name"]:
            raise _fail(where, f"{kind} {i} of the file is {_name(f.name)}, the manifest says "
                               f"{_name(d['name'])}")
        what = f"{kind} {_name(f.name)}"
        if f.dtype != d["dtype"]:
            raise _fail(where, f"{what} is {f.dtype} in the file, {d['dtype']} in the manifest")
        if not _same_shape(f.shape, d["shape"], fmt):
            shown = [d if d is not None else "?" for d in f.shape]
            raise _fail(where, f"{what} has shape {shown} in the file, {d['shape']} in the "
                               "manifest")
        if fmt in TFLITE_FORMATS:
            _compare_quant(where, what, f, d.get("quant"))


def _same_shape(found: Sequence[int | str | None], described: Sequence[Any], fmt: str) -> bool:
    if len(found) != len(described):
        return False
    for i, (f, d) in enumerate(zip(found, described)):
        if isinstance(d, str):
            # ONNX: any symbol or an unknown dim; TFLite stores a symbolic batch as 1 (or -1)
            ok = (f is None or isinstance(f, str)) if fmt == "onnx" else (i == 0 and f in (1, -1))
        else:
            ok = f == d
        if not ok:
            return False
    return True


def _compare_quant(where: str, what: str, f: FileTensor,
                   described: Mapping[str, Any] | None) -> None:
    if described is None:
        if f.scale:
            raise _fail(where, f"{what} is quantized in the file (scale {_numbers(f.scale)}) "
                               "but not in the manifest")
        return
    scales = tuple(float(np.float32(s)) for s in described["scale"])
    zero_points = tuple(int(z) for z in described["zero_point"])
    same = scales == f.scale and zero_points == f.zero_point
    if not same:
        raise _fail(where, f"{what} has scale {_numbers(f.scale)} zero point "
                           f"{_numbers(f.zero_point)} in the file, scale {_numbers(scales)} "
                           f"zero point {_numbers(zero_points)} in the manifest")


# --- reading only the input/output declarations --------------------------------------------

def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise BundleError("malformed ONNX file (a truncated or overlong varint)")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


Field = tuple[int, int, Any]  # field number, wire type, value (int, or (start, end) of bytes)


def _fields(buf: bytes, start: int, end: int, wanted: set[int]) -> list[Field]:
    """The ``wanted`` fields of one protobuf message, in order; the others are skipped."""
    found: list[Field] = []
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        value: Any = None
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            value = (pos, pos + length)
            pos += length
        else:
            raise BundleError(f"malformed ONNX file (wire type {wire})")
        if pos > end:
            raise BundleError("malformed ONNX file (a field runs past its message)")
        if field in wanted and value is not None:
            found.append((field, wire, value))
    return found


def _one(fields: list[Field], number: int, wire: int) -> Any:
    """The last occurrence of a scalar field (protobuf's rule), or None."""
    values = [v for f, w, v in fields if f == number and w == wire]
    return values[-1] if values else None


# onnx.TensorProto.DataType -> numpy name, for the types a manifest may name
_ONNX_TYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64",
               9: "bool", 10: "float16", 11: "float64"}


def _text(buf: bytes, span: tuple[int, int]) -> str:
    return bytes(buf[span[0]:span[1]]).decode("utf-8", "replace")


def _value_info(buf: bytes, start: int, end: int) -> FileTensor:
    """A ValueInfoProto: name (1), type (2) -> tensor_type (1) -> elem_type (1), shape (2)."""
    info = _fields(buf, start, end, {1, 2})
    name_span = _one(info, 1, 2)
    name = _text(buf, name_span) if name_span else ""
    elem_type, dims = 0, []
    type_span = _one(info, 2, 2)
    tensor_span = _one(_fields(buf, *type_span, {1}), 1, 2) if type_span else None
    if tensor_span:
        tensor = _fields(buf, *tensor_span, {1, 2})
        elem_type = _one(tensor, 1, 0) or 0
        shape_span = _one(tensor, 2, 2)
        for _, wire, dim_span in (_fields(buf, *shape_span, {1}) if shape_span else []):
            if wire != 2:
                continue
            dim = _fields(buf, *dim_span, {1, 2})
            value, param = _one(dim, 1, 0), _one(dim, 2, 2)
            if value is not None:
                dims.append(value - (1 << 64) if value >= 1 << 63 else value)
            else:
                dims.append(_text(buf, param) if param else None)
    dtype = _ONNX_TYPES.get(elem_type, f"ONNX type {elem_type}")
    return FileTensor(name, tuple(dims), dtype)


def read_onnx_io(data: bytes) -> FileIO:
    """The graph inputs and outputs of an ONNX model, without decoding anything else.

    The protobuf wire format is walked by hand to ModelProto.graph (7) and its
    input (11) and output (12) fields: initializers and nodes are skipped by their
    length, and neither onnx nor protobuf needs importing.
    """
    inputs: list[FileTensor] = []
    outputs: list[FileTensor] = []
    for _, wire, graph in _fields(data, 0, len(data), {7}):
        if wire != 2:
            continue
        for field, io_wire, (start, end) in _fields(data, *graph, {11, 12}):
            if io_wire == 2:
                tensor = _value_info(data, start, end)
                (inputs if field == 11 else outputs).append(tensor)
    if not outputs:
        raise BundleError("not an ONNX model with a graph (no graph outputs found)")
    return FileIO(tuple(inputs), tuple(outputs))


def read_tflite_io(data: bytes) -> FileIO:
    """Subgraph 0's input and output tensors of a TFLite flatbuffer.

    Read with a few bounds-checked offset lookups rather than the generated
    schema bindings: importing those loads TFLite Micro's interpreter (about
    60 ms), which ``eedge run`` with ONNX Runtime or LiteRT never needs.
    """
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise BundleError("not a TFLite flatbuffer (file identifier TFL3 missing)")
    flat = _Flat(bytes(data))
    model = flat.root()
    subgraphs = flat.tables(model, 2)              # Model.subgraphs
    if not subgraphs:
        raise BundleError("the TFLite file has no subgraph")
    graph = subgraphs[0]
    tensors = flat.tables(graph, 0)                # SubGraph.tensors

    def tensor(index: int) -> FileTensor:
        if not 0 <= index < len(tensors):
            raise BundleError(f"the TFLite file's subgraph refers to tensor {index} of "
                              f"{len(tensors)}")
        t = tensors[index]
        raw = flat.string(t, 3)                    # Tensor.name
        name = raw.decode("utf-8", "replace") if raw else f"tensor{index}"
        shape = flat.numbers(t, 0, "i")            # Tensor.shape
        signature = flat.numbers(t, 7, "i")        # Tensor.shape_signature
        if shape and len(signature) == len(shape) and signature[0] == -1:
            shape = (-1,) + shape[1:]
        kind = flat.scalar(t, 1, "b", 0)           # Tensor.type
        quant = flat.table(t, 4)                   # Tensor.quantization
        scale: tuple[float, ...] = ()
        zero_point: tuple[int, ...] = ()
        if quant is not None:
            scale = tuple(float(v) for v in flat.numbers(quant, 2, "f"))
            zero_point = tuple(int(v) for v in flat.numbers(quant, 3, "q"))
        dtype = _TFLITE_TYPES.get(kind, f"TFLite type {kind}")
        return FileTensor(name, tuple(int(d) for d in shape), dtype, scale,
                          zero_point if scale else ())

    inputs = tuple(tensor(i) for i in flat.numbers(graph, 1, "i"))    # SubGraph.inputs
    outputs = tuple(tensor(i) for i in flat.numbers(graph, 2, "i"))   # SubGraph.outputs
    return FileIO(inputs, outputs)


# tflite::TensorType -> numpy name
_TFLITE_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool",
                 7: "int16", 9: "int8", 10: "float64"}


class _Flat:
    """Just enough of the flatbuffer format to read tables, vectors and strings, checked."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _unpack(self, fmt: str, pos: int) -> Any:
        size = struct.calcsize("<" + fmt)
        if pos < 0 or pos + size > len(self.data):
            raise BundleError("malformed TFLite file (an offset points outside it)")
        return struct.unpack_from("<" + fmt, self.data, pos)[0]

    def root(self) -> int:
        return self._unpack("I", 0)

    def _field(self, table: int, index: int) -> int | None:
        vtable = table - self._unpack("i", table)
        vtable_size = self._unpack("H", vtable)
        slot = 4 + 2 * index
        if slot + 2 > vtable_size:
            return None
        offset = self._unpack("H", vtable + slot)
        return table + offset if offset else None

    def scalar(self, table: int, index: int, fmt: str, default: Any) -> Any:
        pos = self._field(table, index)
        return default if pos is None else self._unpack(fmt, pos)

    def table(self, table: int, index: int) -> int | None:
        pos = self._field(table, index)
        return None if pos is None else pos + self._unpack("I", pos)

    def _vector(self, table: int, index: int, item: int) -> tuple[int, int]:
        pos = self._field(table, index)
        if pos is None:
            return 0, 0
        start = pos + self._unpack("I", pos)
        count = self._unpack("I", start)
        if start + 4 + count * item > len(self.data):
            raise BundleError("malformed TFLite file (a vector runs past its end)")
        return start + 4, count

    def tables(self, table: int, index: int) -> list[int]:
        start, count = self._vector(table, index, 4)
        return [start + 4 * i + self._unpack("I", start + 4 * i) for i in range(count)]

    def numbers(self, table: int, index: int, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize("<" + fmt)
        start, count = self._vector(table, index, size)
        return struct.unpack_from(f"<{count}{fmt}", self.data, start) if count else ()

    def string(self, table: int, index: int) -> bytes:
        start, count = self._vector(table, index, 1)
        return self.data[start:start + count]
