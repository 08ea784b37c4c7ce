"""Unary activations: LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, PRELU, ELU, GELU, RSQRT.

Registered builtins (one field per path, see :mod:`eedge.ops.registry`); the
ONNX lowerings live in :mod:`eedge.ops.activations_lower`, the int8
arithmetic (TFLM's, bit for bit) in :mod:`eedge.ops.activations_int8`.

C runtime: every op here but PRELU maps one input byte to one output byte,
so the code generator evaluates the int8 reference kernel on all 256
values and emits that table; one C kernel (``eedge_lut_s8``) applies it.
That is bit-exact by construction and faster than any fixed-point
evaluation (a load, a lookup and a store per byte; four bytes per word on
the DSP path). PRELU's output also depends on the channel's alpha, so it
has its own kernel (``eedge_prelu_s8``: a table for inputs at or above the zero
point, fixed point with the channel's alpha below it, SSAT on the DSP path);
with a single alpha value it is a table lookup too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from eedge.codegen.emit import EmitContext, Emitted, _dims, _operand, _size, int_array, struct
from eedge.errors import ModelError, UnsupportedOpError
from eedge.ir.graph import Graph, Node, QuantParams
from eedge.ops import activations_int8 as k8
from eedge.ops.registry import Builtin, Kernel, options_table, register_builtin
from eedge.reference.int8_kernels import quant_of, scale_of, zero_point_of
from eedge.tflite_schema import schema

F32 = np.float32
LOGISTIC_OUTPUT = QuantParams((float(F32(1.0 / 256)),), (-128,))
TANH_OUTPUT = QuantParams((float(F32(1.0 / 128)),), (0,))


# -- float kernels (TFLite's reference float arithmetic, float32) ---------------------------

def _logistic(_n: Node, _g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (F32(1) / (F32(1) + np.exp(-args[0].astype(F32)))).astype(F32)


def _tanh(_n: Node, _g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    return np.tanh(args[0].astype(F32))


def _hard_swish(_n: Node, _g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    x = args[0].astype(F32)
    return (x * np.clip(x + F32(3), F32(0), F32(6)) / F32(6)).astype(F32)


def _leaky_relu(node: Node, _g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    x = args[0].astype(F32)
    return np.where(x > 0, x, x * F32(node.attrs.get("alpha", 0.0))).astype(F32)


def _prelu(_n: Node, _g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    x, alpha = args[0].astype(F32), np.asarray(args[1], F32)
    return np.where(x >= 0, x, x * alpha).astype(F32)


def _elu(_n: Node, _g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    x = args[0].astype(F32)
    return np.where(x < 0, np.expm1(np.minimum(x, 0)), x).astype(F32)


def _gelu(node: Node, _g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    """GELU in float32: erf form (computed in double, rounded once) or LiteRT's tanh form."""
    x = args[0].astype(F32)
    if node.attrs.get("approximate", False):
        return k8.gelu_f32(x, True)
    return (F32(0.5) * x * (F32(1) + k8.erf_f32(x / F32(math.sqrt(2.0))))).astype(F32)


def _rsqrt(_n: Node, _g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (F32(1) / np.sqrt(args[0].astype(F32))).astype(F32)


# -- options, shapes, quantization --------------------------------------------------------

def _no_options(_attrs: dict[str, Any]) -> tuple[int, Any]:
    return schema.BuiltinOptions.NONE, None


def _read_nothing(_operator: Any) -> dict[str, Any]:
    return {}


def _write_leaky(attrs: dict[str, Any]) -> tuple[int, Any]:
    opts = schema.LeakyReluOptionsT()
    opts.alpha = float(attrs.get("alpha", 0.0))
    return schema.BuiltinOptions.LeakyReluOptions, opts


def _read_leaky(operator: Any) -> dict[str, Any]:
    """alpha, or 0 without options (TFLM's parser leaves it at the schema default)."""
    opts = options_table(operator, "LeakyReluOptions")
    if opts is None:
        return {"alpha": 0.0}
    alpha = float(opts.Alpha())
    if not math.isfinite(alpha):
        raise ModelError(f"invalid TFLite model: LEAKY_RELU alpha {alpha} is not finite")
    return {"alpha": alpha}


def _write_gelu(attrs: dict[str, Any]) -> tuple[int, Any]:
    opts = schema.GeluOptionsT()
    opts.approximate = bool(attrs.get("approximate", False))
    return schema.BuiltinOptions.GeluOptions, opts


def _read_gelu(operator: Any) -> dict[str, Any]:
    """approximate, False without options (the schema's default, as LiteRT's parser has it)."""
    opts = options_table(operator, "GeluOptions")
    return {"approximate": bool(opts.Approximate()) if opts is not None else False}


def _rsqrt_derived(node: Node, g: Graph) -> list[tuple[int, int]]:
    return [k8.rsqrt_params(node, scale_of(quant_of(g, node.inputs[0])),
                            scale_of(quant_of(g, node.outputs[0])))]


def _same_shape(_n: Node, shapes: list[tuple[int, ...]], _c: dict[str, np.ndarray]
                ) -> list[tuple[int, ...]]:
    return [tuple(shapes[0])]


def _prelu_shape(node: Node, shapes: list[tuple[int, ...]], _c: dict[str, np.ndarray]
                 ) -> list[tuple[int, ...]]:
    if len(shapes) < 2 or max(len(shapes[0]), len(shapes[1])) > 4:
        raise ModelError(f"PRELU {node.name!r}: needs an input and an alpha of rank <= 4")
    try:
        return [tuple(int(d) for d in np.broadcast_shapes(shapes[0], shapes[1]))]
    except ValueError:
        raise ModelError(f"PRELU {node.name!r}: alpha {list(shapes[1])} does not broadcast "
                         f"against the input {list(shapes[0])}") from None


def _quantize_alpha(graph: Graph, node: Node, _act: dict[str, QuantParams],
                    constants: dict[str, np.ndarray], const_quant: dict[str, QuantParams]) -> None:
    """PRELU's alpha: int8 per tensor over its own range (TFLM reads one scale and zero point)."""
    from eedge.passes.quantize import affine_params   # the pass imports the registry
    from eedge.reference.fixedpoint import round_half_away

    name = node.inputs[1]
    if name not in graph.constants or name in constants:
        return
    value = np.asarray(graph.constants[name], np.float64)
    params = affine_params(float(value.min()), float(value.max()))
    q = np.clip(round_half_away(value / params.scale[0]) + params.zero_point[0], -128, 127)
    constants[name], const_quant[name] = q.astype(np.int8), params


def _fixed_output(node: Node, g: Graph, expected: QuantParams) -> None:
    """LOGISTIC/TANH write fixed-point outputs whatever the file declares: refuse other params."""
    out_q = quant_of(g, node.outputs[0])
    if F32(scale_of(out_q)) != F32(expected.scale[0]) or \
            zero_point_of(out_q) != expected.zero_point[0]:
        raise ModelError(f"{node.op_type} {node.name!r}: int8 output must have scale "
                         f"{expected.scale[0]:.6g} and zero point {expected.zero_point[0]} "
                         f"(TFLite's kernel writes that format), not {scale_of(out_q):.6g} and "
                         f"{zero_point_of(out_q)}")


def _q4_derived(expected: QuantParams):
    def derived(node: Node, g: Graph) -> list[tuple[int, int]]:
        _fixed_output(node, g, expected)
        multiplier, shift, radius = k8.q4_input_params(node,
                                                       scale_of(quant_of(g, node.inputs[0])))
        return [(multiplier, shift)] if radius else []   # radius 0: nothing is rescaled
    return derived


def _hard_swish_derived(node: Node, g: Graph) -> list[tuple[int, int]]:
    k8.hard_swish_params(node, scale_of(quant_of(g, node.inputs[0])),
                         scale_of(quant_of(g, node.outputs[0])))
    return []


def _leaky_derived(node: Node, g: Graph) -> list[tuple[int, int]]:
    m_id, s_id, m_alpha, s_alpha = k8.leaky_relu_params(
        scale_of(quant_of(g, node.inputs[0])), scale_of(quant_of(g, node.outputs[0])),
        float(node.attrs.get("alpha", 0.0)))
    return [(m_id, s_id), (abs(m_alpha), s_alpha)]


def _prelu_derived(node: Node, g: Graph) -> list[tuple[int, int]]:
    alpha = node.inputs[1]
    kind = (np.asarray(g.constants[alpha]).dtype.name if alpha in g.constants
            else getattr(g.tensors.get(alpha), "dtype", None))
    if kind != "int8":   # TFLite's int8 kernel reads alpha's bytes as int8 whatever they are
        raise ModelError(f"PRELU {node.name!r}: an int8 PRELU needs an int8 alpha, not {kind}")
    m1, s1, m2, s2 = k8.prelu_params(*(scale_of(quant_of(g, t)) for t in
                                       (node.inputs[0], node.inputs[1], node.outputs[0])))
    return [(m1, s1), (m2, s2)]


# -- C emitters -----------------------------------------------------------------------------

def _emit_lut(kernel: Kernel):
    def emit(ctx: EmitContext, node: Node) -> Emitted:
        table = k8.lookup_table(kernel, node, ctx.graph)
        p = ctx.ident
        return Emitted([int_array(f"{p}_table", table, "int8_t")],
                       f"eedge_lut_s8({p}_table, {_operand(ctx, node.inputs[0])}, "
                       f"{ctx.tensor_ref(node.outputs[0])}, {_size(ctx.graph, node.outputs[0])})")
    return emit


def alpha_period(out_dims: list[int], alpha: np.ndarray) -> tuple[int, np.ndarray]:
    """(period, alpha per position of one period): alpha of element i is alpha[i % period].

    Broadcasting alpha (right-aligned) over a row-major output repeats it
    with the period of the output's dimensions from alpha's first non-unit one.
    """
    rank = len(out_dims)
    shape = (1,) * (rank - alpha.ndim) + tuple(alpha.shape)
    first = next((i for i, d in enumerate(shape) if d != 1), rank)
    tail = tuple(out_dims[first:])
    expanded = np.broadcast_to(alpha.reshape(shape[first:]), tail).reshape(-1)
    return max(int(np.prod(tail)), 1), expanded


def _emit_prelu(ctx: EmitContext, node: Node) -> Emitted:
    """A table lookup when alpha is one value (the output then depends on the byte alone);
    otherwise the PRELU kernel: a table for x >= 0, fixed point with the channel's alpha below.
    """
    g, p = ctx.graph, ctx.ident
    x, alpha_name, out = node.inputs[0], node.inputs[1], node.outputs[0]
    if _dims(g, x) != _dims(g, out):
        raise UnsupportedOpError(f"PRELU {node.name!r}: the C runtime needs the input to have "
                                 "the output's shape (only alpha broadcasts)")
    if alpha_name not in g.constants:
        raise UnsupportedOpError(f"PRELU {node.name!r}: the C runtime needs a constant alpha")
    alpha = np.asarray(g.constants[alpha_name])
    one_alpha = alpha.reshape(-1)[:1]

    def with_one_alpha(n: Node, graph: Graph, args: list[np.ndarray | None]) -> np.ndarray:
        return k8.prelu_s8(n, graph, [args[0], one_alpha])

    if np.all(alpha == one_alpha):
        return _emit_lut(with_one_alpha)(ctx, node)
    period, expanded = alpha_period(_dims(g, out), alpha)
    in_q, alpha_q, out_q = (quant_of(g, t) for t in (x, alpha_name, out))
    _, _, m_neg, s_neg = k8.prelu_params(scale_of(in_q), scale_of(alpha_q), scale_of(out_q))
    declarations = [int_array(f"{p}_positive", k8.lookup_table(with_one_alpha, node, g),
                              "int8_t")]
    if alpha.size == period:           # stored alpha already lists one period in order
        alpha_ref = ctx.constant_ref(alpha_name)
    else:
        alpha_ref = f"{p}_alpha"
        declarations.append(int_array(alpha_ref, expanded, "int8_t"))
    fields = dict(size=_size(g, out), alpha_period=period, in_offset=-zero_point_of(in_q),
                  alpha_offset=-zero_point_of(alpha_q), out_offset=zero_point_of(out_q),
                  m_neg=m_neg, s_neg=s_neg)
    declarations.append(struct("eedge_prelu_params", f"{p}_params", fields))
    return Emitted(declarations, f"eedge_prelu_s8(&{p}_params, {alpha_ref}, {p}_positive, "
                                 f"{_operand(ctx, x)}, {ctx.tensor_ref(out)})")


# -- registration ---------------------------------------------------------------------------

def _lut_builtin(name: str, summary: str, float_kernel: Kernel, int8_kernel: Kernel,
                 version: int, **extra: Any) -> Builtin:
    return register_builtin(Builtin(
        name=name, summary=summary, float_kernel=float_kernel, int8_kernel=int8_kernel,
        emit_c=_emit_lut(int8_kernel), write_options=extra.pop("write", _no_options),
        read_options=extra.pop("read", _read_nothing), output_shapes=_same_shape,
        int8_version=version, dsp=True, in_place=True, **extra))


_lut_builtin("LOGISTIC", "sigmoid (int8 output 1/256, -128)", _logistic, k8.logistic_s8, 2,
             quant=LOGISTIC_OUTPUT, derived_multipliers=_q4_derived(LOGISTIC_OUTPUT))
_lut_builtin("TANH", "tanh (int8 output 1/128, 0)", _tanh, k8.tanh_s8, 2,
             quant=TANH_OUTPUT, derived_multipliers=_q4_derived(TANH_OUTPUT))
_lut_builtin("HARD_SWISH", "x * relu6(x + 3) / 6", _hard_swish, k8.hard_swish_s8, 1,
             derived_multipliers=_hard_swish_derived)
_lut_builtin("LEAKY_RELU", "x > 0 ? x : alpha * x", _leaky_relu, k8.leaky_relu_s8, 2,
             write=_write_leaky, read=_read_leaky, derived_multipliers=_leaky_derived)
_lut_builtin("ELU", "x < 0 ? exp(x) - 1 : x (alpha 1)", _elu, k8.elu_s8, 1)
_lut_builtin("GELU", "x * Phi(x), erf or tanh form (int8 as LiteRT: TFLM has no GELU)", _gelu,
             k8.gelu_s8, 2, write=_write_gelu, read=_read_gelu)
_lut_builtin("RSQRT", "1 / sqrt(x) (int8: inputs at or above the zero point)", _rsqrt,
             k8.rsqrt_s8, 2, derived_multipliers=_rsqrt_derived)
register_builtin(Builtin(
    name="PRELU", summary="x >= 0 ? x : alpha * x (alpha a constant, per channel or scalar)",
    float_kernel=_prelu, int8_kernel=k8.prelu_s8, emit_c=_emit_prelu,
    write_options=_no_options, read_options=_read_nothing, output_shapes=_prelu_shape,
    quantize_constants=_quantize_alpha, derived_multipliers=_prelu_derived, int8_version=1,
    min_inputs=2, dsp=True, in_place=True))

from eedge.ops import activations_lower  # noqa: E402,F401  (registers the ONNX lowerings)
