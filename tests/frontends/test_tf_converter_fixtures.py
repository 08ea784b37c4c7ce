"""int8 .tflite files made by TensorFlow's own converter, fed through eedge end to end.

eedge's writer and the hand-built test files only show eedge what eedge
would write. These fixtures (tests/fixtures/tflite, made by
scripts/make_tf_fixtures.py with TFLiteConverter full-integer quantization)
carry what Google's converter really emits: its op versions, fused
activations, scalar constants, broadcast MULs, output order. Each file must
load, run bit-exact against tflite-micro (the oracle, DESIGN.md), generate C
that gives the same bytes, and export through the CLI.

While an operator is still missing from eedge, the file's tests xfail with
the reader's exact message, but only for the operators listed in
MISSING_OPS: the list is checked against the reader both ways, so it fails
as soon as an operator is added and its entry not removed.

Run this module as a script (``python tests/frontends/test_tf_converter_fixtures.py
FILE.tflite``) to print the operator facts of a file without TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest

from eedge.codegen.device_run import run_on_target
from eedge.codegen.model_source import load_codegen_model
from eedge.errors import EedgeError, UnsupportedOpError
from eedge.frontends.tflite_frontend import SUPPORTED_BUILTINS, load_tflite
from eedge.ir.graph import Graph
from eedge.ops import registry
from eedge.reference.executor import execute
from eedge.runtime.interpreters import LiteRTModel, TFLMModel
from eedge.targets import load_target
from eedge.tflite_schema import schema as S

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tflite"
N_INPUTS = 128   # >= 100 inputs compared per check
MAX_TOTAL_BYTES = 1 << 20

_OP_NAMES = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
_TYPES = {v: k for k, v in vars(S.TensorType).items() if not k.startswith("_")}
_ACTIVATIONS = {v: k for k, v in vars(S.ActivationFunctionType).items()
                if not k.startswith("_")}


# ---------------------------------------------------------------- dumping the facts
@dataclass(frozen=True)
class OpFact:
    """One operator as the converter wrote it."""

    index: int
    name: str
    version: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    options: str

    def __str__(self) -> str:
        return (f"{self.index:3d} {self.name} v{self.version}  {', '.join(self.inputs)} -> "
                f"{', '.join(self.outputs)}  {self.options}")


def _tensor_text(model: S.ModelT, graph: S.SubGraphT, index: int) -> str:
    if index < 0:
        return "(none)"
    t = graph.tensors[index]
    shape = "x".join(str(int(d)) for d in (t.shape if t.shape is not None else [])) or "scalar"
    text = f"{_TYPES[t.type].lower()}[{shape}]"
    q = t.quantization
    if q is not None and q.scale is not None and len(q.scale) == 1:
        text += f" s={float(q.scale[0]):.6g} zp={int(q.zeroPoint[0])}"
    elif q is not None and q.scale is not None:
        text += f" per-channel({len(q.scale)}, axis {q.quantizedDimension})"
    data = model.buffers[t.buffer].data
    if data is not None and len(data):
        text += " const"
        if len(data) <= 32 and t.type == S.TensorType.INT32:
            text += "=" + str(np.frombuffer(bytes(bytearray(data)), "<i4").tolist())
        elif len(data) == 1 and t.type == S.TensorType.INT8:
            text += "=" + str(int(np.frombuffer(bytes(bytearray(data)), np.int8)[0]))
    return text


def _options_text(options: object) -> str:
    if options is None:
        return ""
    fields = []
    for key, value in sorted(vars(options).items()):
        if key == "fusedActivationFunction":
            value = _ACTIVATIONS.get(value, value)
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        fields.append(f"{key}={value}")
    return f"{type(options).__name__[:-1]}({', '.join(fields)})"


def describe(data: bytes) -> tuple[list[OpFact], list[str], list[str]]:
    """The operators (name, version, operand shapes and quantization, options) and the
    subgraph's input and output tensors, read with the schema bindings eedge ships."""
    model = S.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph = model.subgraphs[0]
    facts = []
    for i, op in enumerate(graph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        name = _OP_NAMES[max(code.builtinCode, code.deprecatedBuiltinCode)]
        facts.append(OpFact(i, name, int(code.version),
                            tuple(_tensor_text(model, graph, int(j)) for j in op.inputs),
                            tuple(_tensor_text(model, graph, int(j)) for j in op.outputs),
                            _options_text(op.builtinOptions)))
    ends = [[f"{graph.tensors[int(j)].name.decode()}: {_tensor_text(model, graph, int(j))}"
             for j in indices] for indices in (graph.inputs, graph.outputs)]
    return facts, ends[0], ends[1]


def op_versions(data: bytes) -> dict[str, int]:
    return {f.name: f.version for f in describe(data)[0]}


def dump(path: Path) -> str:
    facts, inputs, outputs = describe(path.read_bytes())
    lines = [f"{path.name} ({path.stat().st_size} bytes)", *(f"  in  {t}" for t in inputs),
             *(f"  out {t}" for t in outputs)]
    return "\n".join(lines + [f"  {f}" for f in facts])


# ---------------------------------------------------------------- the fixture list
def _sums() -> dict[str, str]:
    lines = (FIXTURES / "SHA256SUMS").read_text().splitlines()
    return {name.strip(): digest for digest, name in (line.split(None, 1) for line in lines)}


FILES = sorted(_sums()) if (FIXTURES / "SHA256SUMS").is_file() else []

# What the converter (TensorFlow 2.21) wrote: operator -> version. Pinned so a
# regenerated fixture that changes the ops is noticed and the README updated.
CONVERTER_OPS: dict[str, dict[str, int]] = {
    "elu.tflite": {"CONV_2D": 3, "DEQUANTIZE": 2, "ELU": 1, "FULLY_CONNECTED": 4, "MEAN": 2,
                   "QUANTIZE": 1},
    "gated_kws.tflite": {"CONV_2D": 3, "FULLY_CONNECTED": 4, "LOGISTIC": 2, "MEAN": 2, "MUL": 2,
                         "RESHAPE": 1, "TANH": 2},
    "mobilenetv3_tiny.tflite": {"ADD": 2, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 3,
                                "FULLY_CONNECTED": 4, "HARD_SWISH": 1, "MEAN": 2, "MUL": 2},
    "prelu.tflite": {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "PRELU": 1,
                     "RESHAPE": 1},
    "reduce_minmax.tflite": {"CONCATENATION": 2, "CONV_2D": 3, "FULLY_CONNECTED": 4, "MAXIMUM": 2,
                             "MEAN": 2, "MINIMUM": 2, "QUANTIZE": 1, "REDUCE_MAX": 2, "SUB": 2,
                             "SUM": 2},
    "se_resnet_tiny.tflite": {"ADD": 2, "CONV_2D": 3, "FULLY_CONNECTED": 4, "LOGISTIC": 2,
                              "MEAN": 2, "MUL": 2},
    "shuffle_split.tflite": {"CONCATENATION": 2, "CONV_2D": 3, "DEPTHWISE_CONV_2D": 3,
                             "FULLY_CONNECTED": 4, "MEAN": 2, "RESHAPE": 1, "SPLIT": 2,
                             "TRANSPOSE": 4},
    "upsample_leaky.tflite": {"CONV_2D": 3, "FULLY_CONNECTED": 4, "LEAKY_RELU": 1, "RESHAPE": 1,
                              "RESIZE_BILINEAR": 3, "RESIZE_NEAREST_NEIGHBOR": 3,
                              "TRANSPOSE_CONV": 3},
    "upsample_tile.tflite": {"CONV_2D": 3, "MEAN": 2, "RESHAPE": 1, "TILE": 3},
}

# Operators eedge does not read yet, per file. Must equal what the reader lacks:
# remove an entry when its operator is registered (the tests fail until then).
MISSING_OPS: dict[str, set[str]] = {"upsample_tile.tflite": {"TILE"}}


def test_fixtures_exist_and_match_sha256sums() -> None:
    on_disk = sorted(p.name for p in FIXTURES.glob("*.tflite"))
    assert on_disk and on_disk == FILES, "SHA256SUMS and tests/fixtures/tflite disagree"
    for name, digest in _sums().items():
        actual = hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest()
        assert actual == digest, f"{name} changed: regenerate SHA256SUMS and the README facts"


def test_fixtures_are_small() -> None:
    sizes = {name: (FIXTURES / name).stat().st_size for name in FILES}
    assert all(s < 100_000 for s in sizes.values()), sizes
    assert sum(sizes.values()) < MAX_TOTAL_BYTES


@pytest.mark.parametrize("name", FILES)
def test_converter_ops_are_the_pinned_ones(name: str) -> None:
    assert op_versions((FIXTURES / name).read_bytes()) == CONVERTER_OPS[name]


def test_readme_dump_is_current() -> None:
    """The README's op dump is what the op implementers read: it must describe these bytes."""
    text = (FIXTURES / "README.md").read_text()
    block = text.split("<!-- dump -->\n```\n", 1)[1].split("\n```\n<!-- /dump -->", 1)[0]
    assert block == "\n\n".join(dump(FIXTURES / n) for n in FILES), (
        "regenerate the README's dump: python tests/frontends/test_tf_converter_fixtures.py")


def test_the_pins_cover_every_file() -> None:
    assert sorted(CONVERTER_OPS) == FILES and set(MISSING_OPS) <= set(FILES)



# ---------------------------------------------------------------- end to end
# The oracle per file: TFLite Micro (DESIGN.md), except where it cannot run the file.
LITERT_ORACLE = {
    "upsample_tile.tflite": "TFLite Micro has no TILE kernel; the file has no "
                            "FULLY_CONNECTED, so LiteRT BUILTIN_REF is bit-exact here",
}

# Known limits of eedge that are not a missing operator: (file, test) -> the error's text.
# Strict like MISSING_OPS: the test fails once the limit is gone.
KNOWN_LIMITS: dict[tuple[str, str], str] = {
    # (file, "c" | "export") -> the error that test still expects. TF 2.21 cannot quantize
    # ELU and leaves DEQUANTIZE -> float ELU -> QUANTIZE: the code generator turns that
    # island into one table (eedge.codegen.byte_chains), so elu.tflite is no longer listed.
}


def _unsupported_ops(data: bytes) -> set[str]:
    return {f.name for f in describe(data)[0]
            if f.name not in SUPPORTED_BUILTINS and registry.builtin(f.name) is None}


def _load(name: str) -> tuple[Graph, bytes]:
    """load_tflite, or a strict xfail naming the operator eedge lacks (see MISSING_OPS)."""
    path = FIXTURES / name
    missing = _unsupported_ops(path.read_bytes())
    expected = MISSING_OPS.get(name, set())
    assert missing == expected, (f"{name}: eedge lacks {sorted(missing) or 'nothing'} but "
                                 f"MISSING_OPS says {sorted(expected) or 'nothing'}: update it")
    try:
        graph, _ = load_tflite(path)   # the reader orders exits by the serving signature
        return graph, path.read_bytes()  # the oracles run the converter's own file
    except UnsupportedOpError as exc:
        if any(op in str(exc) for op in missing):
            pytest.xfail(f"{name}: {exc}")
        raise


@contextmanager
def _limit(name: str, test: str) -> Iterator[None]:
    """Runs the body; a KNOWN_LIMITS error becomes an xfail, a vanished limit a failure."""
    text = KNOWN_LIMITS.get((name, test))
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - only a listed message is turned into an xfail
        if text is not None and text in str(exc):
            pytest.xfail(f"{name}: {exc}")
        raise
    if text is not None:
        pytest.fail(f"{name}: {test} passes now; remove it from KNOWN_LIMITS")


def _inputs(shape: tuple[int, ...]) -> np.ndarray:
    """Real digits (quantized as the converter's input scale 1/255, zero point -128 would),
    then uniform random bytes that reach every input value."""
    from sklearn.datasets import load_digits
    images = load_digits().images[:N_INPUTS // 2] / 16.0
    factor = shape[1] // 8
    images = np.kron(images, np.ones((1, factor, factor)))[..., None]
    real = np.clip(np.round(images * 255.0) - 128, -128, 127).astype(np.int8)
    rng = np.random.default_rng(17)
    noise = rng.integers(-128, 128, (N_INPUTS - len(real),) + shape[1:], dtype=np.int8)
    return np.concatenate([real.reshape((-1,) + shape[1:]), noise])


def _oracle(name: str, data: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    """The oracle's outputs by eedge's tensor name (subgraph order is not exit order)."""
    model = S.ModelT.InitFromPackedBuf(bytearray(data), 0)
    names = reader_names(model)
    outputs = [names[int(i)] for i in model.subgraphs[0].outputs]
    if name in LITERT_ORACLE:
        arrays = LiteRTModel(data, reference=True).run([x])
    else:
        arrays = TFLMModel(data, len(outputs)).run([x])
    return dict(zip(outputs, arrays, strict=True))


def reader_names(model: S.ModelT) -> list[str]:
    """Tensor names as eedge's reader gives them (a repeated name gets ``#index``)."""
    names: list[str] = []
    for i, t in enumerate(model.subgraphs[0].tensors):
        tname = t.name.decode() if t.name else f"tensor{i}"
        names.append(tname if tname not in names else f"{tname}#{i}")
    return names


def early_exits(data: bytes) -> list[str] | None:
    """The early exits in depth order, from the SignatureDef, when the subgraph's output
    order differs from it: TF 2.21's converter lists Keras output 1 (the final classifier)
    before output 0 (the early exit) in the subgraph, while the signature keeps Keras's
    order (output_0, output_1). A user passes the same names with ``--exits``."""
    model = S.ModelT.InitFromPackedBuf(bytearray(data), 0)
    names = reader_names(model)
    subgraph = [names[int(i)] for i in model.subgraphs[0].outputs]
    if not model.signatureDefs:
        return None
    entries = sorted(model.signatureDefs[0].outputs, key=lambda t: t.name)
    signature = [names[int(t.tensorIndex)] for t in entries]
    return signature[:-1] if signature != subgraph else None


def _reference(graph: Graph, x: np.ndarray) -> list[np.ndarray]:
    """eedge's int8 reference, sample by sample (the files' RESHAPEs are batch-1)."""
    rows = [execute(graph, {graph.inputs[0].name: x[i:i + 1]}) for i in range(len(x))]
    return [np.concatenate([r[e] for r in rows]) for e in graph.exits]


def with_every_op_output(data: bytes) -> bytes:
    """The same model with every operator's output made a subgraph output, and the names
    eedge's reader gives those tensors (a repeated name gets ``#index``), so an oracle
    that keeps no intermediates (TFLite Micro) shows them all."""
    model = S.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph = model.subgraphs[0]
    outputs = [int(op.outputs[0]) for op in graph.operators]
    graph.outputs = np.array(outputs, dtype=np.int32)
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def first_mismatching_op(name: str, graph: Graph, data: bytes, sample: np.ndarray) -> str:
    """The first node whose int8 output differs from the oracle's tensor of the same name."""
    theirs = _oracle(name, with_every_op_output(data), sample)
    ours = execute(graph, {graph.inputs[0].name: sample})
    for i, node in enumerate(graph.nodes):
        out = node.outputs[0]
        if out in theirs and out in ours:
            a, b = ours[out].astype(int), theirs[out].reshape(ours[out].shape).astype(int)
            if not np.array_equal(a, b):
                return (f"node {i} {node.op_type} ({out}): {int((a != b).sum())} bytes differ, "
                        f"max |diff| {int(np.abs(a - b).max())}")
    return "no intermediate tensor differs"


def _assert_equal(name: str, ours: list[np.ndarray], theirs: dict[str, np.ndarray],
                  graph: Graph, data: bytes, x: np.ndarray, what: str) -> None:
    for exit_name, a in zip(graph.exits, ours, strict=True):
        b = theirs[exit_name].reshape(a.shape)
        if not np.array_equal(a, b):
            rows = np.flatnonzero((a != b).reshape(len(a), -1).any(axis=1))
            where = first_mismatching_op(name, graph, data, x[rows[0]:rows[0] + 1])
            pytest.fail(f"{name} exit {exit_name}: {what} differs on {int((a != b).sum())} "
                        f"bytes in {len(rows)} of {len(x)} inputs; first mismatching op: {where}")


@pytest.mark.parametrize("name", FILES)
def test_reader_accepts(name: str) -> None:
    graph, _ = _load(name)
    assert graph.dialect == "tflite" and graph.exits


@pytest.mark.parametrize("name", FILES)
def test_int8_reference_equals_the_oracle(name: str) -> None:
    graph, data = _load(name)
    x = _inputs(tuple(graph.inputs[0].shape))
    with _limit(name, "reference"):
        ours = _reference(graph, x)
    theirs = _oracle(name, data, x)
    _assert_equal(name, ours, theirs, graph, data, x, "eedge's int8 reference vs the oracle")


@pytest.mark.parametrize("name", FILES)
def test_host_c_equals_the_oracle(name: str, tmp_path: Path) -> None:
    graph, data = _load(name)
    x = _inputs(tuple(graph.inputs[0].shape))
    with _limit(name, "c"):
        model = load_codegen_model(FIXTURES / name)
        run = run_on_target(model, load_target("host"), x, workdir=tmp_path)
    device = [_stage_tensor(run, e) for e in graph.exits]
    theirs = _oracle(name, data, x)
    _assert_equal(name, device, theirs, graph, data, x, "the host C build vs the oracle")


def _stage_tensor(run: Any, tensor: str) -> np.ndarray:
    for k, stage in enumerate(run.project.stage_outputs):
        for j, (t, _) in enumerate(stage):
            if t == tensor:
                return np.stack([s.stage_outputs[k][j].reshape(-1) for s in run.run.samples])
    raise AssertionError(f"{tensor} is no stage output of the generated project")


@pytest.mark.parametrize("name", FILES)
def test_cli_export(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_runner import run_cli   # tests/ is on sys.path under pytest, not as a script
    _load(name)
    with _limit(name, "export"):   # no --exits: the serving signature orders the exits
        code, _, stderr = run_cli(capsys, "export", str(FIXTURES / name), "--out",
                                  str(tmp_path / "bundle"))
        if code != 0:
            raise _CliFailed(stderr.strip().splitlines()[-1] if stderr.strip() else
                             f"exit code {code} and no message")
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["stages"]


def test_first_mismatching_op_names_the_node_that_differs() -> None:
    """The diagnostic the failures print: silent until eedge's graph is altered, then it
    names the altered node (the last FULLY_CONNECTED), not its consumers or the input."""
    name = "prelu.tflite"
    graph, data = load_tflite(FIXTURES / name)
    sample = _inputs(tuple(graph.inputs[0].shape))[:1]
    assert first_mismatching_op(name, graph, data, sample) == "no intermediate tensor differs"
    fc = max(i for i, n in enumerate(graph.nodes) if n.op_type == "FULLY_CONNECTED")
    weights = graph.nodes[fc].inputs[1]
    graph.constants[weights] = (graph.constants[weights].astype(np.int16) // 2).astype(np.int8)
    assert first_mismatching_op(name, graph, data, sample).startswith(
        f"node {fc} FULLY_CONNECTED")


def test_converter_lists_the_final_exit_before_the_early_one() -> None:
    """Why early_exits exists: the subgraph's outputs are not in the Keras model's order."""
    data = (FIXTURES / "mobilenetv3_tiny.tflite").read_bytes()
    model = S.ModelT.InitFromPackedBuf(bytearray(data), 0)
    names = reader_names(model)
    outputs = [names[int(i)] for i in model.subgraphs[0].outputs]
    assert outputs == ["StatefulPartitionedCall_1:1", "StatefulPartitionedCall_1:0"]
    assert early_exits(data) == ["StatefulPartitionedCall_1:0"]
    graph, _ = load_tflite(FIXTURES / "mobilenetv3_tiny.tflite", early_exits(data))
    assert graph.exits == ["StatefulPartitionedCall_1:0", "StatefulPartitionedCall_1:1"]


def test_litert_ref_sums_channels_wrong_so_tflm_is_the_oracle() -> None:
    """reduce_minmax's SUM over channels (keepDims): TFLite Micro's bytes equal the exactly
    rounded sum, LiteRT BUILTIN_REF's are off by up to 125 (measured with TF 2.21's file):
    TFLite Micro stays the oracle for SUM (DESIGN.md's rule), LiteRT is not consulted."""
    data = with_every_op_output((FIXTURES / "reduce_minmax.tflite").read_bytes())
    model = S.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph = model.subgraphs[0]
    ops = [_OP_NAMES[max(model.operatorCodes[op.opcodeIndex].builtinCode,
                         model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)]
           for op in graph.operators]
    k = ops.index("SUM")
    x = _inputs((1, 8, 8, 1))[:16]
    tflm = TFLMModel(data, len(ops)).run([x])
    litert = LiteRTModel(data, reference=True).run([x])
    (s_in,), (z_in,) = _scale_zero(graph.tensors[graph.operators[k].inputs[0]])
    (s_out,), (z_out,) = _scale_zero(graph.tensors[graph.operators[k].outputs[0]])
    summed = ((tflm[k - 1].astype(np.float64) - z_in) * s_in).sum(-1, keepdims=True)
    exact = np.clip(np.round(summed / s_out) + z_out, -128, 127)
    assert graph.operators[k].inputs[0] == graph.operators[k - 1].outputs[0]
    assert np.array_equal(tflm[k], exact)
    assert int(np.abs(litert[k].reshape(exact.shape) - exact).max()) > 100


def _scale_zero(tensor: S.TensorT) -> tuple[list[float], list[int]]:
    q = tensor.quantization
    return [float(v) for v in q.scale], [int(v) for v in q.zeroPoint]


class _CliFailed(EedgeError):
    """`eedge export` exited non-zero (its stderr is the message)."""


if __name__ == "__main__":
    print("\n\n".join(dump(Path(arg)) for arg in sys.argv[1:] or
                      [str(FIXTURES / n) for n in FILES]))


def test_exits_follow_the_serving_signature() -> None:
    """TF's converter lists the final classifier first in the subgraph; the reader takes the
    SignatureDef's order (output_0 = the early exit), which early_exits derives independently."""
    data = (FIXTURES / "mobilenetv3_tiny.tflite").read_bytes()
    early = early_exits(data)
    assert early is not None   # the subgraph order really differs from the signature's
    graph, _ = load_tflite(FIXTURES / "mobilenetv3_tiny.tflite")
    assert graph.exits[:len(early)] == early and len(graph.exits) == 2
