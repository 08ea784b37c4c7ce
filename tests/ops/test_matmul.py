"""BATCH_MATMUL and FULLY_CONNECTED with keep_num_dims on every path (eedge.ops.matmul).

Hand-built .tflite files (the schema bindings, not eedge's writer) hold the
products a transformer needs: 2-D to 5-D, attention heads, broadcast batch
axes, adj_x/adj_y, K odd and not a multiple of 4, 1 to 20 rows, a constant
rhs. eedge's reader and int8 reference must give TFLite Micro's bytes (the
oracle) and LiteRT BUILTIN_REF's (equal for BATCH_MATMUL; FULLY_CONNECTED's
reference kernel requantizes in double, see DESIGN.md); the float reference
must agree with LiteRT; eedge's writer must round-trip; the generated C must
give the reference's bytes on the host and in QEMU (Cortex-M4, DSP path on
and off).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import flatbuffers
import numpy as np
import pytest

from device_compare import assert_c_equals_reference

from eedge.backends.tflite_writer import graph_to_tflite
from eedge.codegen.model_source import load_codegen_model
from eedge.errors import ModelError
from eedge.frontends.tflite_frontend import read_tflite_bytes
from eedge.ops import registry
from eedge.ops.matmul import batch_steps
from eedge.reference.executor import execute
from eedge.runtime.interpreters import LiteRTModel, TFLMModel
from eedge.tflite_schema import schema as S

Quant = tuple[float, int]
N_INPUTS = 120


@dataclass(frozen=True)
class Case:
    """One product: lhs and rhs shapes as stored (adj_* say which axes are transposed)."""

    lhs: tuple[int, ...]
    rhs: tuple[int, ...]
    adj_x: bool = False
    adj_y: bool = False
    rhs_const: bool = False

    def dims(self) -> tuple[tuple[int, ...], int, int, int]:
        m, k = (self.lhs[-1], self.lhs[-2]) if self.adj_x else (self.lhs[-2], self.lhs[-1])
        n = self.rhs[-2] if self.adj_y else self.rhs[-1]
        rank = max(len(self.lhs), len(self.rhs))
        lb = (1,) * (rank - len(self.lhs)) + self.lhs[:-2]
        rb = (1,) * (rank - len(self.rhs)) + self.rhs[:-2]
        return tuple(max(a, b) for a, b in zip(lb, rb)), m, n, k

    def out(self) -> tuple[int, ...]:
        batch, m, n, _ = self.dims()
        return batch + (m, n)


CASES = [
    Case((1, 5, 7), (1, 7, 3)),                           # 3-D, K = 7
    Case((1, 2, 17, 16), (1, 2, 16, 17)),                 # attention P.V-like, two heads
    Case((1, 2, 17, 16), (1, 2, 17, 16), adj_y=True),     # Q.K^T
    Case((1, 3, 9, 5), (1, 1, 5, 6)),                     # rhs broadcast over heads, K = 5
    Case((1, 1, 6, 11), (1, 4, 11, 3)),                   # lhs broadcast, K = 11
    Case((1, 6, 13), (1, 6, 20), adj_x=True),             # lhs stored (K, M), N = 20
    Case((1, 2, 9, 4), (1, 2, 5, 9), adj_x=True, adj_y=True),
    Case((1, 10), (10, 7), rhs_const=True),               # 2-D, one row, constant rhs
    Case((1, 2, 1, 3, 6), (1, 1, 3, 6, 4)),               # 5-D, two broadcast axes
    Case((1, 20, 12), (1, 12, 1)),                        # 20 rows, one column
    Case((1, 3, 4, 5), (1, 5, 2)),                        # ranks 4 and 3
    Case((1, 4, 3), (1, 2, 4, 9), adj_x=True),           # ranks 3 and 4, lhs transposed
]
CASE_IDS = [f"{c.lhs}x{c.rhs}{'-ax' if c.adj_x else ''}{'-ay' if c.adj_y else ''}"
            for c in CASES]


class Builder:
    """A TFLite model written with the schema's object API (a foreign file)."""

    def __init__(self) -> None:
        self.model = S.ModelT()
        self.model.version = 3
        self.model.buffers = [S.BufferT()]
        self.model.operatorCodes = []
        self.codes: dict[str, int] = {}
        self.tensors: list[S.TensorT] = []
        self.operators: list[S.OperatorT] = []

    def tensor(self, name: str, shape: tuple[int, ...], q: Quant | None,
               value: np.ndarray | None = None, dtype: int = S.TensorType.INT8) -> int:
        t = S.TensorT()
        t.name, t.shape, t.buffer, t.type = name, list(shape), 0, dtype
        if q is not None:
            t.quantization = S.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = [q[0]], [q[1]]
        if value is not None:
            buf = S.BufferT()
            buf.data = list(np.ascontiguousarray(value).tobytes())
            self.model.buffers.append(buf)
            t.buffer = len(self.model.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, builtin: str, inputs: list[int], outputs: list[int], version: int,
           options_type: int = 0, options: object = None) -> None:
        if builtin not in self.codes:
            code = S.OperatorCodeT()
            code.builtinCode = code.deprecatedBuiltinCode = getattr(S.BuiltinOperator, builtin)
            code.version = version
            self.model.operatorCodes.append(code)
            self.codes[builtin] = len(self.model.operatorCodes) - 1
        o = S.OperatorT()
        o.opcodeIndex = self.codes[builtin]
        o.inputs, o.outputs = inputs, outputs
        o.builtinOptionsType, o.builtinOptions = options_type, options
        self.operators.append(o)

    def bmm(self, lhs: int, rhs: int, out: int, case: Case, version: int) -> None:
        opts = S.BatchMatMulOptionsT()
        opts.adjX, opts.adjY = case.adj_x, case.adj_y
        self.op("BATCH_MATMUL", [lhs, rhs], [out], version, S.BuiltinOptions.BatchMatMulOptions,
                opts)

    def reshape(self, x: int, out: int, shape: tuple[int, ...]) -> None:
        opts = S.ReshapeOptionsT()
        opts.newShape = list(shape)
        shape_t = self.tensor(f"shape{len(self.tensors)}", (len(shape),), None,
                              np.array(shape, np.int32), S.TensorType.INT32)
        self.op("RESHAPE", [x, shape_t], [out], 1, S.BuiltinOptions.ReshapeOptions, opts)

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        graph = S.SubGraphT()
        graph.name, graph.tensors, graph.operators = "main", self.tensors, self.operators
        graph.inputs, graph.outputs = inputs, outputs
        self.model.subgraphs = [graph]
        builder = flatbuffers.Builder(4096)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def out_quant(case: Case, ql: Quant, qr: Quant, factor: float = 1.0) -> Quant:
    """An output scale that spreads random products over most of int8 (not saturated)."""
    k = case.dims()[3]
    return (ql[0] * qr[0] * 74.0 * 74.0 * np.sqrt(k) / 45.0 * factor, 5)


def constant_rhs(case: Case) -> np.ndarray:
    return np.random.default_rng(9).integers(-128, 128, case.rhs, dtype=np.int8)


def bmm_tflite(case: Case, ql: Quant, qr: Quant, qo: Quant | None, float_model: bool = False
               ) -> bytes:
    """lhs, rhs (inputs; rhs a constant when the case says so) -> BATCH_MATMUL -> out."""
    b = Builder()
    dtype = S.TensorType.FLOAT32 if float_model else S.TensorType.INT8
    lhs = b.tensor("lhs", case.lhs, None if float_model else ql, dtype=dtype)
    if case.rhs_const:
        value = constant_rhs(case)
        value = value.astype(np.float32) / 64 if float_model else value
        rhs = b.tensor("rhs", case.rhs, None if float_model else qr, value, dtype)
    else:
        rhs = b.tensor("rhs", case.rhs, None if float_model else qr, dtype=dtype)
    out = b.tensor("out", case.out(), qo, dtype=dtype)
    b.bmm(lhs, rhs, out, case, 1 if float_model else 2)
    return b.finish([lhs] if case.rhs_const else [lhs, rhs], [out])


def int8_samples(shape: tuple[int, ...], count: int, seed: int) -> np.ndarray:
    """Random bytes with the extremes first (all -128, all 127: the largest sums)."""
    x = np.random.default_rng(seed).integers(-128, 128, (count,) + shape[1:], dtype=np.int8)
    x[0], x[1] = -128, 127
    return x


def feeds(case: Case, count: int = N_INPUTS, seed: int = 0) -> list[np.ndarray]:
    arrays = [int8_samples(case.lhs, count, seed)]
    if not case.rhs_const:
        arrays.append(int8_samples(case.rhs, count, seed + 1))
    return arrays


QUANTS: list[tuple[Quant, Quant]] = [((0.05, -3), (0.04, 7)), ((0.02, 0), (0.11, -128)),
                                     ((0.5, 127), (0.003, 0))]


# -- shapes, options, reader ----------------------------------------------------------
def test_registered_with_its_paths() -> None:
    op = registry.builtin("BATCH_MATMUL")
    assert op is not None and op.int8_version == 2 and op.dsp and not op.in_place
    assert op.quant == "observed" and op.min_inputs == 2


def test_batch_steps_follow_tflm_extents() -> None:
    assert batch_steps((1, 2, 3), (1, 2, 3, 4, 5)) == [0, 60, 20]
    assert batch_steps((1, 2, 3), (1, 1, 3, 4, 5)) == [0, 0, 20]
    assert batch_steps((1, 2, 3), (4, 5)) == [0, 0, 0]
    assert batch_steps((1, 2, 3), (2, 1, 4, 5)) == [0, 20, 0]


def test_reader_refuses_products_tflite_refuses() -> None:
    bad = Case((1, 5, 7), (1, 6, 3))           # K 7 vs 6
    with pytest.raises(ModelError, match="summed axis"):
        read_tflite_bytes(bmm_tflite(bad, (0.1, 0), (0.1, 0), (0.1, 0)))
    bad = Case((1, 2, 5, 7), (1, 3, 7, 3))     # heads 2 vs 3
    with pytest.raises(ModelError, match="broadcast"):
        read_tflite_bytes(bmm_tflite(bad, (0.1, 0), (0.1, 0), (0.1, 0)))


# -- int8 reference vs TFLite Micro and LiteRT BUILTIN_REF ------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_int8_reference_equals_tflite_micro_and_litert(case: Case) -> None:
    arrays = feeds(case)
    names = ["lhs"] if case.rhs_const else ["lhs", "rhs"]
    for n, (ql, qr) in enumerate(QUANTS):
        qo = out_quant(case, ql, qr)
        data = bmm_tflite(case, ql, qr, qo)
        graph, outputs = read_tflite_bytes(data)
        assert graph.nodes[0].attrs == {"adj_x": case.adj_x, "adj_y": case.adj_y}
        ours = execute(graph, dict(zip(names, arrays)))[outputs[0]]
        assert ours.shape == (N_INPUTS,) + case.out()[1:]
        expected = TFLMModel(data, 1).run(arrays)[0].reshape(ours.shape)
        assert np.array_equal(ours, expected), (
            f"{ql} {qr} -> {qo}: {int((ours != expected).sum())} bytes differ from TFLM")
        litert = LiteRTModel(data, reference=True).run(arrays)[0].reshape(ours.shape)
        assert np.array_equal(ours, litert), f"{ql} {qr}: LiteRT BUILTIN_REF differs"
        saturated = np.isin(ours[2:], (-128, 127)).mean()
        assert saturated < 0.3 and len(np.unique(ours)) > 20, (n, saturated)


def test_multiplier_above_one_and_saturation_equal_tflite_micro() -> None:
    """s_lhs * s_rhs > s_out: a left-shifting multiplier, most outputs clamped."""
    case = CASES[1]
    ql, qr = (0.05, -3), (0.04, 7)
    data = bmm_tflite(case, ql, qr, (ql[0] * qr[0] * 0.3, -20))
    graph, outputs = read_tflite_bytes(data)
    arrays = feeds(case, 40, 3)
    ours = execute(graph, {"lhs": arrays[0], "rhs": arrays[1]})[outputs[0]]
    expected = TFLMModel(data, 1).run(arrays)[0].reshape(ours.shape)
    assert np.array_equal(ours, expected)
    assert np.isin(ours, (-128, 127)).mean() > 0.5


def test_scale_product_is_taken_in_double_as_tflite_micro_does() -> None:
    """A trained keyword transformer's Q.K^T scales: a sum of 32306 lands the high multiply
    on x.5 with the double product (TFLM: 75) and below it with the float32 one (74,
    LiteRT BUILTIN_REF's answer). eedge follows TFLM, and the case really differs."""
    case = Case((1, 1, 3), (1, 3, 1))
    ql, qr, qo = (0.019297251477837563, -2), (0.014590139500796795, 4), (0.12209368497133255, 0)
    data = bmm_tflite(case, ql, qr, qo)
    graph, outputs = read_tflite_bytes(data)
    lhs = np.array([[[127, 127, 20]]], np.int8)                      # (l + 2): 129 129 22
    rhs = np.array([[[127], [127], [30]]], np.int8)                  # (r - 4): 123 123 26
    ours = execute(graph, {"lhs": lhs, "rhs": rhs})[outputs[0]]
    assert ours.reshape(-1).tolist() == [75]
    assert np.array_equal(ours, TFLMModel(data, 1).run([lhs, rhs])[0].reshape(ours.shape))
    litert = LiteRTModel(data, reference=True).run([lhs, rhs])[0].reshape(ours.shape)
    assert litert.reshape(-1).tolist() == [74]


# -- float ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES[:8:2] + [CASES[6], CASES[8]],
                         ids=lambda c: f"{c.lhs}x{c.rhs}")
def test_float_reference_equals_litert(case: Case) -> None:
    data = bmm_tflite(case, (1, 0), (1, 0), None, float_model=True)
    graph, outputs = read_tflite_bytes(data)
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal((6,) + case.lhs[1:]).astype(np.float32)]
    if not case.rhs_const:
        arrays.append(rng.standard_normal((6,) + case.rhs[1:]).astype(np.float32))
    names = ["lhs", "rhs"][:len(arrays)]
    ours = execute(graph, dict(zip(names, arrays)))[outputs[0]]
    for reference in (True, False):
        litert = LiteRTModel(data, reference=reference).run(arrays)[0].reshape(ours.shape)
        np.testing.assert_allclose(ours, litert, rtol=1e-5, atol=1e-5)


# -- eedge's writer ----------------------------------------------------------------------
def test_writer_round_trip_runs_like_the_foreign_file() -> None:
    for case in (CASES[2], CASES[6], CASES[7]):
        ql, qr = QUANTS[0]
        data = bmm_tflite(case, ql, qr, out_quant(case, ql, qr))
        graph, outputs = read_tflite_bytes(data)
        names = [t.name for t in graph.inputs]
        written = graph_to_tflite(graph, range(len(graph.nodes)), names, outputs)
        again, _ = read_tflite_bytes(written)
        assert [(n.op_type, n.attrs) for n in again.nodes] == [(n.op_type, n.attrs)
                                                               for n in graph.nodes]
        arrays = feeds(case, 30, 7)
        expected = execute(graph, dict(zip(names, arrays)))[outputs[0]]
        tflm = TFLMModel(written, 1).run(arrays)[0].reshape(expected.shape)
        assert np.array_equal(tflm, expected)


# -- FULLY_CONNECTED on the tokens of 3-D / 4-D tensors -----------------------------------
@dataclass(frozen=True)
class FcCase:
    x: tuple[int, ...]     # input as FULLY_CONNECTED reads it
    units: int
    keep: bool = True

    def out(self) -> tuple[int, ...]:
        rows = int(np.prod(self.x)) // self.x[-1]
        return self.x[:-1] + (self.units,) if self.keep else (rows, self.units)


FC_CASES = [FcCase((1, 20, 12), 7), FcCase((1, 2, 5, 9), 6), FcCase((1, 3, 8), 5, keep=False)]
QX: Quant = (0.05, -3)


def fc_weights(case: FcCase) -> tuple[np.ndarray, np.ndarray, Quant, Quant]:
    rng = np.random.default_rng(case.units)
    w = rng.integers(-127, 128, (case.units, case.x[-1]), dtype=np.int8)
    qw = (0.02, 0)
    bias = rng.integers(-2000, 2000, case.units).astype(np.int32)
    qo = (QX[0] * qw[0] * 74 * 74 * np.sqrt(case.x[-1]) / 45, -4)
    return w, bias, qw, qo


def add_fc(b: Builder, x: int, case: FcCase, name: str, float_model: bool = False) -> int:
    w, bias, qw, qo = fc_weights(case)
    if float_model:
        wt = b.tensor(f"{name}/w", w.shape, None, w.astype(np.float32) / 64,
                      S.TensorType.FLOAT32)
        bt = b.tensor(f"{name}/b", bias.shape, None, bias.astype(np.float32) / 1000,
                      S.TensorType.FLOAT32)
        out = b.tensor(name, case.out(), None, dtype=S.TensorType.FLOAT32)
    else:
        wt = b.tensor(f"{name}/w", w.shape, qw, w)
        bt = b.tensor(f"{name}/b", bias.shape, (QX[0] * qw[0], 0), bias, S.TensorType.INT32)
        out = b.tensor(name, case.out(), qo)
    opts = S.FullyConnectedOptionsT()
    opts.keepNumDims = case.keep
    b.op("FULLY_CONNECTED", [x, wt, bt], [out], 1 if float_model else 4,
         S.BuiltinOptions.FullyConnectedOptions, opts)
    return out


@pytest.mark.parametrize("case", FC_CASES, ids=lambda c: f"{c.x}-{c.units}-{c.keep}")
def test_fully_connected_keep_num_dims_equals_tflite_micro(case: FcCase) -> None:
    b = Builder()
    x = b.tensor("x", case.x, QX)
    out = add_fc(b, x, case, "y")
    data = b.finish([x], [out])
    graph, outputs = read_tflite_bytes(data)
    assert graph.nodes[0].attrs["keep_num_dims"] is case.keep
    assert tuple(graph.tensors["y"].shape) == case.out()
    xs = int8_samples(case.x, N_INPUTS, 11)
    ours = execute(graph, {"x": xs})[outputs[0]]
    if case.keep:
        assert ours.shape == (N_INPUTS,) + case.out()[1:]
    expected = TFLMModel(data, 1).run([xs])[0]
    assert np.array_equal(ours.reshape(expected.shape), expected)
    written = graph_to_tflite(graph, range(len(graph.nodes)), ["x"], outputs)
    again, _ = read_tflite_bytes(written)
    assert again.nodes[0].attrs == graph.nodes[0].attrs
    assert np.array_equal(TFLMModel(written, 1).run([xs])[0], expected)


def test_fully_connected_keep_num_dims_float_equals_litert() -> None:
    case = FC_CASES[1]
    b = Builder()
    x = b.tensor("x", case.x, None, dtype=S.TensorType.FLOAT32)
    out = add_fc(b, x, case, "y", float_model=True)
    data = b.finish([x], [out])
    graph, outputs = read_tflite_bytes(data)
    xs = np.random.default_rng(2).standard_normal((5,) + case.x[1:]).astype(np.float32)
    ours = execute(graph, {"x": xs})[outputs[0]]
    litert = LiteRTModel(data, reference=True).run([xs])[0]
    assert litert.shape == ours.shape == (5,) + case.out()[1:]
    np.testing.assert_allclose(ours, litert, rtol=1e-5, atol=1e-5)


def test_keep_num_dims_needs_the_weights_inputs_last() -> None:
    """LiteRT refuses keep_num_dims when the input's last axis is not the weights' inputs."""
    b = Builder()
    x = b.tensor("x", (1, 4, 6), QX)
    w = b.tensor("w", (5, 12), (0.02, 0), np.ones((5, 12), np.int8))
    out = b.tensor("y", (1, 4, 5), (0.1, 0))
    opts = S.FullyConnectedOptionsT()
    opts.keepNumDims = True
    b.op("FULLY_CONNECTED", [x, w], [out], 4, S.BuiltinOptions.FullyConnectedOptions, opts)
    with pytest.raises(ModelError, match="keeps the dimensions"):
        read_tflite_bytes(b.finish([x], [out]))


# -- C runtime: host and Cortex-M4 -------------------------------------------------------
C_FC_CASES = [c for c in FC_CASES if c.keep]
"""(rows, units) outputs of more than one row change eedge's batch axis: no exit can read them."""
BENCH = 1   # CASES[BENCH] is the (1,2,17,16)x(1,2,16,17) product measured on the M4
QR: Quant = (0.04, 7)


def c_model(tmp_path: Path) -> tuple[Path, int]:
    """One int8 input x (1, S) feeding 16 stages: the BATCH_MATMUL cases, the FC cases, a
    bare slice of one benchmark operand and a timed copy of the benchmark product last
    (both with 2-byte exits, so that the stages hold little but the slices and product).

    Each operand is a SLICE of x, reshaped; rhs is requantized to its own parameters
    (QUANTIZE) except in the benchmark, so that its stage holds little but the product.
    """
    b = Builder()
    size = max(max(int(np.prod(c.lhs)) + int(np.prod(c.rhs)) for c in CASES),
               max(int(np.prod(c.x)) for c in FC_CASES))
    x = b.tensor("x", (1, size), QX)
    outputs = []

    def sliced(name: str, start: int, shape: tuple[int, ...], q: Quant | None) -> int:
        n = int(np.prod(shape))
        begin = b.tensor(f"{name}/begin", (2,), None, np.array([0, start], np.int32),
                         S.TensorType.INT32)
        count = b.tensor(f"{name}/size", (2,), None, np.array([1, n], np.int32),
                         S.TensorType.INT32)
        flat = b.tensor(f"{name}/flat", (1, n), QX)
        b.op("SLICE", [x, begin, count], [flat], 2, S.BuiltinOptions.SliceOptions,
             S.SliceOptionsT())
        if q is not None:
            requant = b.tensor(f"{name}/q", (1, n), q)
            b.op("QUANTIZE", [flat], [requant], 2)
            flat = requant
        out = b.tensor(name, shape, QX if q is None else q)
        b.reshape(flat, out, shape)
        return out

    def exit_of(t: int, shape: tuple[int, ...], q: Quant, keep: int = 0) -> None:
        """(1, F) exit of t; only its first ``keep`` bytes when given (the exit's softmax
        score costs about 250 instructions per logit on the M4: timed stages keep 2)."""
        flat = (1, int(np.prod(shape)))
        out = b.tensor(f"exit{len(outputs)}", flat, q)
        b.reshape(t, out, flat)
        if keep:
            begin = b.tensor(f"exit{len(outputs)}/begin", (2,), None, np.zeros(2, np.int32),
                             S.TensorType.INT32)
            count = b.tensor(f"exit{len(outputs)}/size", (2,), None,
                             np.array([1, keep], np.int32), S.TensorType.INT32)
            head = b.tensor(f"exit{len(outputs)}/head", (1, keep), q)
            b.op("SLICE", [out, begin, count], [head], 2, S.BuiltinOptions.SliceOptions,
                 S.SliceOptionsT())
            out = head
        outputs.append(out)

    def product(k: int, case: Case, keep: int = 0) -> None:
        lhs = sliced(f"lhs{k}", 0, case.lhs, None)
        qr = None if k == BENCH else QR
        if case.rhs_const:
            rhs = b.tensor(f"rhs{k}", case.rhs, QR, constant_rhs(case))
        else:
            rhs = sliced(f"rhs{k}", int(np.prod(case.lhs)), case.rhs, qr)
        qo = out_quant(case, QX, qr or QX)
        out = b.tensor(f"bmm{k}", case.out(), qo)
        b.bmm(lhs, rhs, out, case, 2)
        exit_of(out, case.out(), qo, keep)

    for k, case in enumerate(CASES):
        product(k, case)
    for k, fc in enumerate(C_FC_CASES):
        xin = sliced(f"fcx{k}", 0, fc.x, None)
        exit_of(add_fc(b, xin, fc, f"fc{k}"), fc.out(), fc_weights(fc)[3])
    operand = int(np.prod(CASES[BENCH].lhs))
    exit_of(sliced("bare", 0, (1, operand), None), (1, operand), QX, keep=2)
    product(len(CASES), CASES[BENCH], keep=2)   # last: the final exit must cost the most MACs
    path = tmp_path / "matmul.tflite"
    path.write_bytes(b.finish([x], outputs))
    return path, size


def assert_device_matches(path: Path, x: np.ndarray, target: str, dsp: bool | None = None
                          ) -> dict:  # type: ignore[type-arg]
    model = load_codegen_model(path)
    assert len(model.stages) == len(CASES) + len(C_FC_CASES) + 2
    return assert_c_equals_reference(model, x, target, dsp)


def test_host_c_build_is_bit_exact(tmp_path: Path) -> None:
    path, size = c_model(tmp_path)
    graph, outputs = read_tflite_bytes(path.read_bytes())
    x = int8_samples((1, size), 60, 21)
    tflm = TFLMModel(path.read_bytes(), len(outputs)).run([x])
    env = execute(graph, {"x": x})
    for name, expected in zip(outputs, tflm):
        assert np.array_equal(env[name], expected.reshape(env[name].shape)), name
    assert_device_matches(path, x, "host")


def test_qemu_cortex_m4_is_bit_exact_with_and_without_dsp(tmp_path: Path) -> None:
    """Both builds give the reference's bytes; the DSP build saves about one instruction/MAC.

    Instructions per MAC of the (1,2,17,16)x(1,2,16,17) product (9248 MACs): the
    timed copy's stage minus twice the bare stage (one operand's slice and a 2-byte
    exit), i.e. the kernel alone give or take one tiny exit.
    """
    path, size = c_model(tmp_path)
    x = int8_samples((1, size), 3, 22)
    summaries = {dsp: assert_device_matches(path, x, "qemu-cortex-m4", dsp)
                 for dsp in (True, False)}
    assert summaries[True]["dsp"] and not summaries[False]["dsp"]
    case = CASES[BENCH]
    batch, m, n, k = case.dims()
    macs = int(np.prod(batch)) * m * n * k
    per_mac = {}
    for dsp, summary in summaries.items():
        stages = summary["stage_instructions_mean"]
        per_mac[dsp] = (stages[-1] - 2 * stages[-2]) / macs
    print(f"BATCH_MATMUL {case.lhs}x{case.rhs}: instructions per MAC "
          f"DSP {per_mac[True]:.2f}, portable {per_mac[False]:.2f}")
    # measured: DSP 5.96, portable 7.04 -- at K = 16 each output's requantization (~30
    # instructions, TFLM's arithmetic) and the operand packing and sums weigh as much as
    # the multiply-accumulates; the DSP path saves about one instruction per MAC
    assert per_mac[False] - per_mac[True] > 0.5


# -- PTQ -----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", [CASES[2], CASES[7]], ids=["QKt", "const-rhs"])
def test_ptq_quantizes_activations_and_a_constant_rhs(case: Case) -> None:
    """The float file through eedge's PTQ and writer: TFLM runs it and agrees byte for byte."""
    from eedge.passes.quantize import observe_ranges, quantize_graph
    graph, outputs = read_tflite_bytes(bmm_tflite(case, (1, 0), (1, 0), None, float_model=True))
    names = [t.name for t in graph.inputs]
    shapes = {"lhs": case.lhs, "rhs": case.rhs}
    rng = np.random.default_rng(0)
    batches = [{n: rng.standard_normal((8,) + shapes[n][1:]).astype(np.float32) for n in names}
               for _ in range(4)]
    quantized = quantize_graph(graph, observe_ranges(graph, batches))
    data = graph_to_tflite(quantized, range(len(quantized.nodes)), names, outputs)
    int8_graph, int8_outputs = read_tflite_bytes(data)
    arrays = [int8_samples(shapes[n], 50, 3) for n in names]
    ours = execute(int8_graph, dict(zip(names, arrays)))[int8_outputs[0]]
    assert np.array_equal(ours, TFLMModel(data, 1).run(arrays)[0].reshape(ours.shape))
