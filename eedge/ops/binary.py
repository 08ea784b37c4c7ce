"""Binary elementwise operators with broadcasting: SUB, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE
(and ADD/MUL's C side).

ADD and MUL keep their entries in the older per-path tables; this module
adds SUB, MAXIMUM and MINIMUM to the registry, the ONNX lowerings of Sub,
Max, Min and Div, and the one broadcasting C kernel all five share
(:func:`emit_binary`, used by ``eedge.codegen.emit`` for ADD and MUL too).

Facts from tflite-micro that decide the arithmetic (read in its sources):

* SUB is ADD's arithmetic with the second scaled input subtracted: both
  inputs shifted left by 20, scaled by ``s_i / (2 max(s1, s2))``, the
  difference scaled by ``2 max / (2^20 s_out)``. The ratios are computed in
  double, as for ADD: tflite-micro's source at the mirrored commit (Aug 2026)
  computes SUB's in float32, but the tflite-micro interpreter eedge verifies
  against (0.dev20261023) and LiteRT's reference kernel both give the
  double-ratio bytes (measured: tests/ops/test_binary.py, scales where the
  two rules differ on 2 of the 65536 input pairs), so eedge follows them.
* MAXIMUM and MINIMUM compare raw int8 bytes and never requantize, so they
  are only right when both inputs and the output share one scale and zero
  point: the registry marks them ``quant="shared"``, a constant operand is
  quantized with the shared parameters, and the reader refuses files whose
  parameters differ (TFLM would silently compare bytes of different scales).
* SQUARED_DIFFERENCE (squared_difference.cc) shifts both offset inputs left by
  7 (not 20: the square of the difference must fit an int32), scales each by
  ``s_i / (2 max(s1, s2))`` (double ratios, "smaller than one" multipliers),
  squares the difference and requantizes it by ``(2 max)^2 / (2^14 s_out)``.
  Its broadcasting is TFLM's ``BroadcastBinaryFunction4DSlow``: operands of
  different shapes have at most 4 dimensions (same shapes: any rank).
* Broadcasting follows numpy's rules, and TFLM's broadcast loop (shared by
  ADD's and MUL's "4DSlow"/"6DSlow" paths, SUB and MAXIMUM/MINIMUM) collapses
  unit and contiguous dimensions as :func:`broadcast_loops` does; it accepts up
  to 8 dimensions, eedge up to :data:`MAX_RANK` = 6 (TFLite's ADD/MUL limit).

The C kernel (firmware_templates/runtime/src/binary.c) explains its own speed
tricks; measured on qemu-cortex-m4 for 1x16x16x32 int8 (instructions per
element, portable / DSP): same-shape ADD 24.7 / 15.8 (the old kernel: 84.4),
SUB 25.2 / 16.0, squeeze-excite MUL by a 1x1x1x32 constant 27.8 / 16.9 (the
old kernel had no broadcasting), MAXIMUM 10.0 / 2.5. SQUARED_DIFFERENCE of 1x64x64
and its 1x64x1 row mean (LayerNorm's variance) 18.6 / 13.5 (the DSP inner loop is 10
instructions per element, SSUB16 + SMUAD for the square; the rest is the 256-entry table
and the per-row calls), of two 1x64x64 tensors 20.6 / 15.5
(tests/ops/test_transformer_elementwise.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eedge.errors import ModelError, UnsupportedOpError
from eedge.ir.graph import Graph, Node, QuantParams
from eedge.ops.registry import (Builtin, Lowering, options_table, register_builtin,
                                 register_lowering)
from eedge.reference.fixedpoint import quantize_multiplier, rdbpot, srdhm
from eedge.reference.float_kernels import activate
from eedge.reference.int8_kernels import (activation_range, add_multipliers, quant_of,
                                          scale_of, zero_point_of)
from eedge.tflite_schema import schema

F32 = np.float32
MAX_RANK = 6
LEFT_SHIFT = 20          # TFLite's headroom for int8 ADD/SUB
LUT_MIN_ELEMENTS = 512   # ADD/SUB tabulate scaled inputs (512 words of scratch) from this size
SQD_LEFT_SHIFT = 7       # TFLite's headroom for int8 SQUARED_DIFFERENCE
TFLM_BROADCAST_RANK = 4  # BroadcastBinaryFunction4DSlow
OP_CODES = {"ADD": 0, "SUB": 1, "MUL": 2, "MAXIMUM": 3, "MINIMUM": 4, "SQUARED_DIFFERENCE": 5}
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
_ACTIVATION_CODES = {v: k for k, v in _ACTIVATIONS.items()}


# -- shapes ---------------------------------------------------------------------
def broadcast_shape(node: Node, a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """numpy/TFLite broadcasting of two shapes, or a one-line error naming the node."""
    if max(len(a), len(b)) > MAX_RANK:
        raise ModelError(f"{node.op_type} {node.name!r}: operands of rank {max(len(a), len(b))}; "
                         f"eedge broadcasts up to {MAX_RANK} dimensions")
    try:
        return tuple(int(d) for d in np.broadcast_shapes(tuple(a), tuple(b)))
    except ValueError:
        raise ModelError(f"{node.op_type} {node.name!r}: operands {list(a)} and {list(b)} do "
                         "not broadcast") from None


def _output_shapes(node: Node, shapes: list[tuple[int, ...]],
                   _constants: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    if len(shapes) != 2:
        raise ModelError(f"{node.op_type} {node.name!r} has {len(shapes)} inputs; it takes "
                         "exactly two")
    return [broadcast_shape(node, shapes[0], shapes[1])]


def _sqdiff_shapes(node: Node, shapes: list[tuple[int, ...]],
                   constants: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    """Two operands; when their shapes differ, at most 4-D (TFLM's 4-D broadcast)."""
    out = _output_shapes(node, shapes, constants)
    if tuple(shapes[0]) != tuple(shapes[1]) and len(out[0]) > TFLM_BROADCAST_RANK:
        raise ModelError(f"SQUARED_DIFFERENCE {node.name!r}: broadcasting {list(shapes[0])} "
                         f"against {list(shapes[1])} has {len(out[0])} dimensions; TFLite's "
                         f"kernel broadcasts up to {TFLM_BROADCAST_RANK}")
    return out


def broadcast_loops(out: Sequence[int], a: Sequence[int], b: Sequence[int]
                    ) -> list[tuple[int, int, int]]:
    """The C kernel's loop nest: (extent, step in a, step in b) per level, innermost last.

    Unit dimensions are dropped and neighbours merged where both operands
    walk them contiguously (or both stay put), as TFLM's broadcast loop does:
    same-shape operands become one flat loop, the squeeze-excite pattern
    (1,H,W,C) x (1,1,1,C) two loops [H*W: (C, 0)], [C: (1, 1)].
    """
    rank = len(out)
    a = (1,) * (rank - len(a)) + tuple(a)
    b = (1,) * (rank - len(b)) + tuple(b)
    levels: list[tuple[int, int, int]] = []
    a_acc = b_acc = 1
    for i in range(rank - 1, -1, -1):
        extent = int(out[i])
        if extent == 1:
            continue
        a_step = a_acc if a[i] != 1 else 0
        b_step = b_acc if b[i] != 1 else 0
        if levels:
            inner, ia, ib = levels[0]
            if a_step == ia * inner and b_step == ib * inner:
                levels[0] = (inner * extent, ia, ib)
                a_acc *= a[i]
                b_acc *= b[i]
                continue
        levels.insert(0, (extent, a_step, b_step))
        a_acc *= a[i]
        b_acc *= b[i]
    return levels or [(1, 1, 1)]


# -- float kernels ----------------------------------------------------------------
def _float(node: Node, _g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    x, y = args
    if node.op_type == "SUB":
        return activate(x - y, node.attrs["activation"]).astype(np.float32)
    if node.op_type == "SQUARED_DIFFERENCE":
        difference = (np.asarray(x, F32) - np.asarray(y, F32)).astype(F32)
        return (difference * difference).astype(F32)
    fn = np.maximum if node.op_type == "MAXIMUM" else np.minimum
    return fn(x, y).astype(np.float32)


# -- int8 kernels -----------------------------------------------------------------
def _smaller_than_one(real: float, node: Node) -> tuple[int, int]:
    if not 0.0 < real < 1.0:
        raise ModelError(f"{node.op_type} node {node.name!r}: scale ratio {real} is outside "
                         "(0, 1); TFLM would reject this model")
    return quantize_multiplier(real)


def sub_multipliers(node: Node, s1: float, s2: float, so: float) -> tuple[int, ...]:
    """(m1, shift1, m2, shift2, m_out, shift_out) of int8 SUB: ADD's, double ratios."""
    return add_multipliers(node, s1, s2, so)


def sub_multipliers_float32(node: Node, s1: float, s2: float, so: float) -> tuple[int, ...]:
    """The float32-ratio rule of tflite-micro's source at one commit (not what its runtime does).

    Kept to show, in the tests, that the choice between the two decides real bytes.
    """
    twice_max = F32(2) * max(F32(s1), F32(s2))
    m1, sh1 = _smaller_than_one(float(F32(s1) / twice_max), node)
    m2, sh2 = _smaller_than_one(float(F32(s2) / twice_max), node)
    mo, sho = _smaller_than_one(float(twice_max / (F32(1 << LEFT_SHIFT) * F32(so))), node)
    return m1, sh1, m2, sh2, mo, sho


def _scaled(x: np.ndarray, zero_point: int, m: int, shift: int) -> np.ndarray:
    return rdbpot(srdhm((x.astype(np.int64) - zero_point) << LEFT_SHIFT, m), -shift)


def _sub_int8(node: Node, g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    x1, x2 = args
    q1, q2 = quant_of(g, node.inputs[0]), quant_of(g, node.inputs[1])
    out_q = quant_of(g, node.outputs[0])
    m1, sh1, m2, sh2, mo, sho = sub_multipliers(node, scale_of(q1), scale_of(q2), scale_of(out_q))
    diff = _scaled(x1, zero_point_of(q1), m1, sh1) - _scaled(x2, zero_point_of(q2), m2, sh2)
    total = rdbpot(srdhm(diff, mo), -sho) + zero_point_of(out_q)
    low, high = activation_range(node.attrs["activation"], out_q)
    return np.clip(total, low, high).astype(np.int8)


def squared_difference_multipliers(node: Node, s1: float, s2: float, so: float
                                   ) -> tuple[int, ...]:
    """(m1, shift1, m2, shift2, m_out, shift_out) of int8 SQUARED_DIFFERENCE, as Prepare derives
    them: double ratios of the float32 scales; 2^14 * s_out is a float32 product (exact)."""
    twice_max = 2.0 * float(max(F32(s1), F32(s2)))
    m1, sh1 = _smaller_than_one(float(F32(s1)) / twice_max, node)
    m2, sh2 = _smaller_than_one(float(F32(s2)) / twice_max, node)
    denominator = float(F32(1 << (2 * SQD_LEFT_SHIFT)) * F32(so))
    mo, sho = quantize_multiplier(twice_max * twice_max / denominator)
    return m1, sh1, m2, sh2, mo, sho


def _sqdiff_int8(node: Node, g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    from eedge.reference.fixedpoint import multiply_by_quantized_multiplier
    x1, x2 = args
    q1, q2 = quant_of(g, node.inputs[0]), quant_of(g, node.inputs[1])
    out_q = quant_of(g, node.outputs[0])
    m1, sh1, m2, sh2, mo, sho = squared_difference_multipliers(
        node, scale_of(q1), scale_of(q2), scale_of(out_q))

    def scaled(x: np.ndarray, zero_point: int, m: int, shift: int) -> np.ndarray:
        return rdbpot(srdhm((x.astype(np.int64) - zero_point) << SQD_LEFT_SHIFT, m), -shift)

    difference = scaled(x1, zero_point_of(q1), m1, sh1) - scaled(x2, zero_point_of(q2), m2, sh2)
    total = multiply_by_quantized_multiplier(difference * difference, mo, sho)
    return np.clip(total + zero_point_of(out_q), -128, 127).astype(np.int8)


def _sqdiff_derived(node: Node, g: Graph) -> list[tuple[int, int]]:
    m1, s1, m2, s2, mo, so = squared_difference_multipliers(
        node, *(scale_of(quant_of(g, t)) for t in (node.inputs[0], node.inputs[1],
                                                   node.outputs[0])))
    return [(m1, s1), (m2, s2), (mo, so)]


def _shared_check(node: Node, g: Graph) -> None:
    """MAXIMUM/MINIMUM compare bytes: every operand must share the output's parameters."""
    out_q = quant_of(g, node.outputs[0])
    for t in node.inputs:
        q = quant_of(g, t)
        if (scale_of(q), zero_point_of(q)) != (scale_of(out_q), zero_point_of(out_q)):
            raise ModelError(f"{node.op_type} {node.name!r}: input {t!r} is quantized "
                             f"({scale_of(q)}, {zero_point_of(q)}) but the output "
                             f"({scale_of(out_q)}, {zero_point_of(out_q)}); int8 "
                             f"{node.op_type} compares raw bytes, so all must match "
                             "(requantize the input first)")


def _minmax_int8(node: Node, g: Graph, args: list[np.ndarray | None]) -> np.ndarray:
    _shared_check(node, g)
    x1, x2 = args
    fn = np.maximum if node.op_type == "MAXIMUM" else np.minimum
    return fn(x1, x2).astype(np.int8)


def _sub_derived(node: Node, g: Graph) -> list[tuple[int, int]]:
    out_q = quant_of(g, node.outputs[0])
    m1, s1, m2, s2, mo, so = sub_multipliers(
        node, scale_of(quant_of(g, node.inputs[0])), scale_of(quant_of(g, node.inputs[1])),
        scale_of(out_q))
    activation_range(node.attrs["activation"], out_q)
    return [(m1, s1), (m2, s2), (mo, so)]


def _minmax_derived(node: Node, g: Graph) -> list[tuple[int, int]]:
    _shared_check(node, g)
    return []


# -- PTQ: constant operands --------------------------------------------------------
def quantize_operand(value: np.ndarray, params: QuantParams) -> np.ndarray:
    """round(value / scale) + zero point, saturated to int8 (ties away from zero)."""
    from eedge.reference.fixedpoint import round_half_away
    q = round_half_away(np.asarray(value, np.float64) / params.scale[0]) + params.zero_point[0]
    return np.clip(q, -128, 127).astype(np.int8)


def _own_range_constants(graph: Graph, node: Node, _act: dict[str, QuantParams],
                         constants: dict[str, np.ndarray],
                         const_quant: dict[str, QuantParams]) -> None:
    """SUB: a constant operand gets parameters of its own range (as ADD's do)."""
    from eedge.passes.quantize import affine_params
    for t in node.inputs:
        if t in graph.constants and t not in constants:
            value = np.asarray(graph.constants[t], np.float64)
            params = affine_params(float(value.min()), float(value.max()))
            constants[t], const_quant[t] = quantize_operand(value, params), params


def _shared_constants(graph: Graph, node: Node, act: dict[str, QuantParams],
                      constants: dict[str, np.ndarray],
                      const_quant: dict[str, QuantParams]) -> None:
    """MAXIMUM/MINIMUM: a constant operand takes the shared parameters of the output.

    Saturating it to the output's range changes nothing: max(x, c) >= c puts
    c in the calibrated output range, and a min(x, c) whose c lies above every
    observed output never selects it.
    """
    params = act[node.outputs[0]]
    for t in node.inputs:
        if t in graph.constants:
            if t in constants and const_quant.get(t) != params:
                raise ModelError(f"{node.op_type} {node.name!r}: constant {t!r} is shared with "
                                 "another op that quantizes it differently")
            constants[t] = quantize_operand(graph.constants[t], params)
            const_quant[t] = params


# -- TFLite options ---------------------------------------------------------------
def _write_sub(attrs: dict[str, Any]) -> tuple[int, Any]:
    opts = schema.SubOptionsT()
    opts.fusedActivationFunction = _ACTIVATION_CODES[attrs.get("activation", "NONE")]
    return schema.BuiltinOptions.SubOptions, opts


def _write_sqdiff(_attrs: dict[str, Any]) -> tuple[int, Any]:
    return schema.BuiltinOptions.SquaredDifferenceOptions, schema.SquaredDifferenceOptionsT()


def _write_minmax(_attrs: dict[str, Any]) -> tuple[int, Any]:
    return schema.BuiltinOptions.MaximumMinimumOptions, schema.MaximumMinimumOptionsT()


def _read_sub(operator: Any) -> dict[str, Any]:
    opts = options_table(operator, "SubOptions")
    if opts is None:
        return {"activation": "NONE"}
    code = opts.FusedActivationFunction()
    if code not in _ACTIVATIONS:
        raise ModelError(f"SUB with fused activation {code}; eedge reads NONE, RELU, "
                         "RELU_N1_TO_1 and RELU6")
    return {"activation": _ACTIVATIONS[code]}


def _read_minmax(_operator: Any) -> dict[str, Any]:
    return {}


# -- C ----------------------------------------------------------------------------
def _int_list(values: Sequence[int]) -> str:
    return "{" + ", ".join(str(int(v)) for v in values) + "}"


def _dims_of(g: Graph, tensor: str) -> list[int]:
    if tensor in g.constants:
        return [int(d) for d in np.asarray(g.constants[tensor]).shape]
    return [int(d) for d in g.tensors[tensor].shape]


def _quant_fields(node: Node, g: Graph) -> dict[str, int]:
    """Offsets, multipliers and right/left shifts of the kernel (shifts as positive amounts)."""
    op = node.op_type
    a, b, out = node.inputs[0], node.inputs[1], node.outputs[0]
    qa, qb, qo = quant_of(g, a), quant_of(g, b), quant_of(g, out)
    fields = dict(in1_offset=-zero_point_of(qa), in2_offset=-zero_point_of(qb),
                  out_offset=zero_point_of(qo), m1=0, r1=0, m2=0, r2=0, m_out=0, l_out=0,
                  r_out=0)
    if op in ("ADD", "SUB"):
        derive = add_multipliers if op == "ADD" else sub_multipliers
        m1, s1, m2, s2, mo, so = derive(node, scale_of(qa), scale_of(qb), scale_of(qo))
        fields.update(m1=m1, r1=-s1, m2=m2, r2=-s2, m_out=mo, r_out=-so)
    elif op == "MUL":
        mo, so = quantize_multiplier(scale_of(qa) * scale_of(qb) / scale_of(qo))
        if so > 14:   # the kernel doubles product << shift, which must stay below 2^31
            raise UnsupportedOpError(f"MUL {node.name!r}: the scale ratio s1*s2/s_out is "
                                     f"2^{so} or more; the int32 product would overflow "
                                     "(TFLM's too): give the output a larger scale")
        fields.update(m_out=mo, l_out=max(so, 0), r_out=max(-so, 0))
    elif op == "SQUARED_DIFFERENCE":
        m1, s1, m2, s2, mo, so = squared_difference_multipliers(
            node, scale_of(qa), scale_of(qb), scale_of(qo))
        if so > 0:   # the square (< 2^30) would be shifted left: TFLM's int32 may overflow
            raise UnsupportedOpError(f"SQUARED_DIFFERENCE {node.name!r}: the output scale is "
                                     "below (2 max(s1, s2))^2 / 2^14 (an output multiplier of "
                                     "1 or more); the C runtime needs a larger output scale")
        fields.update(m1=m1, r1=-s1, m2=m2, r2=-s2, m_out=mo, r_out=-so)
    else:
        _shared_check(node, g)
    low, high = activation_range(node.attrs.get("activation", "NONE"), qo)
    fields.update(act_min=low, act_max=high)
    return fields


def emit_binary(ctx: Any, node: Node) -> Any:
    """One ``eedge_binary_s8`` call: the broadcast loop nest and the op's int8 constants."""
    from eedge.codegen.emit import SCRATCH, Emitted, _operand, struct
    g, p = ctx.graph, ctx.ident
    a, b, out = node.inputs[0], node.inputs[1], node.outputs[0]
    out_dims = _dims_of(g, out)
    levels = broadcast_loops(out_dims, _dims_of(g, a), _dims_of(g, b))
    if len(levels) > MAX_RANK:
        raise UnsupportedOpError(f"{node.op_type} {node.name!r}: broadcasting needs "
                                 f"{len(levels)} loop levels; the C runtime has {MAX_RANK}")
    size = int(np.prod(out_dims))
    lut = node.op_type in ("ADD", "SUB", "SQUARED_DIFFERENCE") and size >= LUT_MIN_ELEMENTS
    pad = MAX_RANK - len(levels)
    fields: dict[str, object] = dict(op=OP_CODES[node.op_type], **_quant_fields(node, g))
    fields.update(rank=len(levels), dims=_int_list([e for e, _, _ in levels] + [1] * pad),
                  a_step=_int_list([s for _, s, _ in levels] + [0] * pad),
                  b_step=_int_list([s for _, _, s in levels] + [0] * pad),
                  lut=SCRATCH if lut else "0")
    return Emitted([struct("eedge_binary_bcast_params", f"{p}_params", fields)],
                   f"eedge_binary_s8(&{p}_params, {_operand(ctx, a)}, {_operand(ctx, b)}, "
                   f"{ctx.tensor_ref(out)})", 512 if lut else 0)


# -- registration --------------------------------------------------------------------
_COMMON: dict[str, Any] = dict(float_kernel=_float, emit_c=emit_binary,
                               output_shapes=_output_shapes, int8_version=2, min_inputs=2,
                               in_place=True)

register_builtin(Builtin(
    name="SUB", summary="elementwise subtract with broadcasting", int8_kernel=_sub_int8,
    write_options=_write_sub, read_options=_read_sub, quantize_constants=_own_range_constants,
    derived_multipliers=_sub_derived, dsp=True, **_COMMON))
register_builtin(Builtin(
    name="SQUARED_DIFFERENCE", summary="(x - y)^2 with broadcasting (LayerNorm's variance)",
    int8_kernel=_sqdiff_int8, write_options=_write_sqdiff, read_options=_read_minmax,
    quantize_constants=_own_range_constants, derived_multipliers=_sqdiff_derived, dsp=True,
    **{**_COMMON, "output_shapes": _sqdiff_shapes}))
for _name, _summary in (("MAXIMUM", "elementwise maximum with broadcasting"),
                        ("MINIMUM", "elementwise minimum with broadcasting")):
    register_builtin(Builtin(
        name=_name, summary=_summary, int8_kernel=_minmax_int8, write_options=_write_minmax,
        read_options=_read_minmax, quant="shared", quantize_constants=_shared_constants,
        derived_multipliers=_minmax_derived, dsp=True, **_COMMON))


# -- ONNX lowerings -------------------------------------------------------------------
def _lower_sub(lowerer: Any, node: Node) -> None:
    lowerer._elementwise(node, "SUB")


def _lower_minmax(lowerer: Any, node: Node) -> None:
    op = "MAXIMUM" if node.op_type == "Max" else "MINIMUM"
    if len(node.inputs) != 2:
        raise lowerer.unsupported(node, f"{len(node.inputs)} inputs; eedge lowers {node.op_type} "
                                        "of exactly two (chain two-input ones)")
    lowerer._elementwise(node, op, fused=False)


def _lower_div(lowerer: Any, node: Node) -> None:
    """x / c becomes x * (1/c): TFLM has no int8 DIV, and a constant reciprocal is exact enough."""
    divisor = node.inputs[1]
    if divisor not in lowerer.src.constants:
        raise lowerer.unsupported(node, "the divisor is not a constant; int8 TFLite has no "
                                        "DIV: multiply by a constant instead")
    value = np.asarray(lowerer.src.constants[divisor], np.float64)
    if not np.all(np.isfinite(value)) or np.any(value == 0):
        raise lowerer.unsupported(node, "the constant divisor has a zero or non-finite entry")
    lowerer._elementwise(node, "MUL", replace={divisor: (1.0 / value).astype(np.float32)})


register_lowering(Lowering("Sub", "elementwise subtract (broadcasting)", _lower_sub, ("SUB",)))
register_lowering(Lowering("Max", "elementwise maximum of two inputs (broadcasting)",
                           _lower_minmax, ("MAXIMUM",)))
register_lowering(Lowering("Min", "elementwise minimum of two inputs (broadcasting)",
                           _lower_minmax, ("MINIMUM",)))
register_lowering(Lowering("Div", "divide by a constant (lowered to MUL by its reciprocal)",
                           _lower_div, ("MUL",)))
