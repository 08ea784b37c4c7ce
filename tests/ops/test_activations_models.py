"""Hand-built int8/float .tflite files of the activation family, written as a converter would.

Written with the TFLite schema bindings, not eedge's writer, so the tests
read foreign files. Every op's output is flattened to (1, N) by a RESHAPE,
the (batch, classes) form the code generator takes as an exit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np

from eedge.tflite_schema import schema as S

Quant = tuple[float, int]
INT8_VERSIONS = {"LOGISTIC": 2, "TANH": 2, "HARD_SWISH": 1, "LEAKY_RELU": 2, "PRELU": 1,
                 "ELU": 1, "GELU": 2, "RSQRT": 2, "RESHAPE": 1}
LOGISTIC_Q: Quant = (1.0 / 256, -128)
TANH_Q: Quant = (1.0 / 128, 0)


@dataclass
class Act:
    """One activation node: op, its output quantization, LEAKY_RELU alpha, PRELU alpha."""

    op: str
    out_q: Quant = (0.05, 0)
    alpha: float | None = None
    prelu: tuple[np.ndarray, Quant] | None = None   # int8 (or float) values, quantization
    source: int = 0   # which tensor it reads: 0 = the model input, k = the k-th node's output
    extra: dict = field(default_factory=dict)   # GELU: {"approximate": bool}


def model(shape: tuple[int, ...], in_q: Quant, acts: list[Act], outputs: list[int] | None = None,
          dtype: str = "int8") -> bytes:
    """x -> the activations (each reading ``source``) -> flattened outputs (default: the last)."""
    m = S.ModelT()
    m.version, m.buffers = 3, [S.BufferT()]
    ops = sorted({a.op for a in acts} | {"RESHAPE"})
    m.operatorCodes = []
    for op in ops:
        code = S.OperatorCodeT()
        code.builtinCode = getattr(S.BuiltinOperator, op)
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)   # GELU is 150
        code.version = INT8_VERSIONS[op] if dtype == "int8" else 1
        m.operatorCodes.append(code)
    ttype = S.TensorType.INT8 if dtype == "int8" else S.TensorType.FLOAT32
    tensors: list = []

    def tensor(name: str, shp: tuple[int, ...], q: Quant | None, kind: int = ttype,
               data: np.ndarray | None = None) -> int:
        t = S.TensorT()
        t.name, t.shape, t.type, t.buffer = name, list(shp), kind, 0
        if q is not None and dtype == "int8":
            t.quantization = S.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = [q[0]], [q[1]]
        if data is not None:
            buf = S.BufferT()
            buf.data = list(np.ascontiguousarray(data).tobytes())
            m.buffers.append(buf)
            t.buffer = len(m.buffers) - 1
        tensors.append(t)
        return len(tensors) - 1

    produced = [tensor("x", shape, in_q)]
    operators = []
    for i, act in enumerate(acts):
        op_t = S.OperatorT()
        op_t.opcodeIndex = ops.index(act.op)
        op_t.inputs = [produced[act.source]]
        if act.prelu is not None:
            values, q = act.prelu
            kind = S.TensorType.FLOAT32 if values.dtype == np.float32 else ttype
            op_t.inputs.append(tensor(f"alpha{i}", values.shape, q, kind, data=values))
        if act.alpha is not None:
            opts = S.LeakyReluOptionsT()
            opts.alpha = act.alpha
            op_t.builtinOptionsType, op_t.builtinOptions = S.BuiltinOptions.LeakyReluOptions, opts
        if act.op == "GELU":
            opts = S.GeluOptionsT()
            opts.approximate = bool(act.extra.get("approximate", False))
            op_t.builtinOptionsType, op_t.builtinOptions = S.BuiltinOptions.GeluOptions, opts
        op_t.outputs = [tensor(f"y{i}", shape, act.out_q)]
        produced.append(op_t.outputs[0])
        operators.append(op_t)
    flat = (shape[0], int(np.prod(shape[1:])))
    new_shape = tensor("flat_shape", (2,), None, S.TensorType.INT32, np.array(flat, np.int32))
    graph_outputs = []
    for k in outputs if outputs is not None else [len(acts)]:
        r = S.OperatorT()
        r.opcodeIndex = ops.index("RESHAPE")
        r.inputs = [produced[k], new_shape]
        q = acts[k - 1].out_q if k else in_q
        r.outputs = [tensor(f"out{k}" if outputs is not None else "out", flat, q)]
        r.builtinOptionsType = S.BuiltinOptions.ReshapeOptions
        r.builtinOptions = S.ReshapeOptionsT()
        r.builtinOptions.newShape = list(flat)
        operators.append(r)
        graph_outputs.append(r.outputs[0])
    g = S.SubGraphT()
    g.name, g.tensors, g.inputs, g.outputs, g.operators = "main", tensors, [0], graph_outputs, \
        operators
    m.subgraphs = [g]
    builder = flatbuffers.Builder(4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def every_byte(shape: tuple[int, ...], extra: int = 3, seed: int = 0) -> np.ndarray:
    """Samples whose first one holds every int8 value (shape must have 256 elements), then
    ``extra`` random ones."""
    first = np.arange(-128, 128, dtype=np.int8).reshape((1,) + shape[1:])
    rest = np.random.default_rng(seed).integers(-128, 128, (extra,) + shape[1:], dtype=np.int8)
    return np.concatenate([first, rest])
