"""BATCH_MATMUL: the product of two activations (attention's Q·Kᵀ and P·V), every path.

IR contract (TFLite dialect): op ``BATCH_MATMUL``, inputs ``[lhs, rhs]``
(activations, or a constant operand: TFLM accepts either as a constant and
transposes a constant rhs once), attrs ``adj_x`` and ``adj_y`` (bools: the
last two axes of lhs / rhs are transposed before the product). lhs is
(..., M, K) (``adj_x``: (..., K, M)), rhs (..., K, N) (``adj_y``: (..., N, K)),
the output (..., M, N); ranks 2 to 5 (TFLM's reference kernel; its CMSIS-NN
variant stops at 4) and the batch axes broadcast numpy-style (a unit axis
against any size).

Facts from tflite-micro (kernels/batch_matmul.cc, reference/batch_matmul.h,
kernels/kernel_util.cc), read at the mirrored commit of Aug 2026:

* int8 is the FULLY_CONNECTED arithmetic without bias: an exact int32 sum of
  ``(lhs - zp_lhs) * (rhs - zp_rhs)`` over K, one MultiplyByQuantizedMultiplier
  and the output zero point, clamped to [-128, 127] (no fused activation).
* The multiplier comes from GetQuantizedConvolutionMultipler's bias-less
  form, then QuantizeMultiplier. The mirrored source rounds the scale product
  to float32 first, but tflite-micro's interpreter (the oracle) takes it in
  double, as for FULLY_CONNECTED (``int8_kernels.fc_multipliers``): a trained
  keyword transformer's Q.K^T had 4 of 153,664 outputs one apart with the
  float32 product (sums of +-32306, where the high multiply lands on x.5).
* Both zero points may be nonzero (int16 needs them 0; eedge does int8 only).
  int8 is op version 2 (LiteRT's op_version.cc).
* TFLM transposes operands into persistent buffers for its loop; the result
  does not depend on that, so eedge's C kernel reads lhs/rhs with strides
  (``adj_y`` rhs and plain lhs are read in place) and packs a strided operand
  into the model's shared scratch only when its K axis is not contiguous; the
  offsets are applied from row and column sums (``sum (l+lo)(r+ro) = sum lr +
  ro sum l + lo sum r + K lo ro``), which keeps its inner loop in registers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eedge.errors import ModelError, UnsupportedOpError
from eedge.ir.graph import Graph, Node
from eedge.ops import registry
from eedge.ops.registry import Builtin, register_builtin
from eedge.reference.fixedpoint import (multiply_by_quantized_multiplier, quantize_multiplier,
                                        wrap_int32)
from eedge.reference.int8_kernels import quant_of, scale_of, zero_point_of

F32 = np.float32
MIN_RANK, MAX_RANK = 2, 5
MAX_BATCH_LEVELS = MAX_RANK - 2
MAX_DEPTH = ((1 << 31) - 1) // (255 * 255)
"""Longer sums could leave the int32 accumulator ((lhs - zp) * (rhs - zp) reaches 255 * 255)."""


# -- shapes ------------------------------------------------------------------------
def matmul_dims(node: Node, lhs: Sequence[int], rhs: Sequence[int]
                ) -> tuple[tuple[int, ...], int, int, int]:
    """(broadcast batch shape, M, N, K) as TFLM's Prepare computes them, or a ModelError."""
    where = f"BATCH_MATMUL {node.name!r}"
    lhs, rhs = tuple(int(d) for d in lhs), tuple(int(d) for d in rhs)
    for name, shape in (("lhs", lhs), ("rhs", rhs)):
        if not MIN_RANK <= len(shape) <= MAX_RANK:
            raise ModelError(f"{where}: {name} is {len(shape)}-D; TFLite takes 2-D to 5-D")
    adj_x, adj_y = bool(node.attrs.get("adj_x")), bool(node.attrs.get("adj_y"))
    m, k_lhs = (lhs[-1], lhs[-2]) if adj_x else (lhs[-2], lhs[-1])
    k_rhs, n = (rhs[-1], rhs[-2]) if adj_y else (rhs[-2], rhs[-1])
    if k_lhs != k_rhs:
        raise ModelError(f"{where}: lhs {list(lhs)} and rhs {list(rhs)} disagree on the summed "
                         f"axis ({k_lhs} vs {k_rhs}; adj_x={adj_x}, adj_y={adj_y})")
    rank = max(len(lhs), len(rhs))
    lb = (1,) * (rank - len(lhs)) + lhs[:-2]
    rb = (1,) * (rank - len(rhs)) + rhs[:-2]
    batch = []
    for a, b in zip(lb, rb):
        if a != b and a != 1 and b != 1:
            raise ModelError(f"{where}: batch axes of lhs {list(lhs)} and rhs {list(rhs)} do "
                             "not broadcast")
        batch.append(b if a == 1 else a)
    return tuple(batch), m, n, k_lhs


def _output_shapes(node: Node, shapes: list[tuple[int, ...]],
                   _constants: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    batch, m, n, _ = matmul_dims(node, shapes[0], shapes[1])
    return [batch + (m, n)]


# -- reference kernels -------------------------------------------------------------
def _aligned(node: Node, g: Graph, lhs: np.ndarray, rhs: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Both operands at one rank, their sample axes (axis 0 of activations) aligned.

    The executor stacks samples along axis 0 of every activation, where the
    file's batch axis of size 1 sits; TFLite extends the lower-rank operand
    with leading unit axes, so for an activation they go after the sample axis
    (a constant has no sample axis: numpy's leading extension is TFLite's).
    """
    rank = max(lhs.ndim, rhs.ndim)
    out = []
    for name, x in zip(node.inputs[:2], (lhs, rhs)):
        missing = rank - x.ndim
        if missing and name not in g.constants:
            x = x.reshape(x.shape[:1] + (1,) * missing + x.shape[1:])
        out.append(x)
    return out[0], out[1]


def _operands(node: Node, g: Graph, lhs: np.ndarray, rhs: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    lhs, rhs = _aligned(node, g, lhs, rhs)
    matmul_dims(node, lhs.shape, rhs.shape)
    if node.attrs.get("adj_x"):
        lhs = np.swapaxes(lhs, -1, -2)
    if node.attrs.get("adj_y"):
        rhs = np.swapaxes(rhs, -1, -2)
    return lhs, rhs


def float_batch_matmul(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    lhs, rhs = _operands(node, g, np.asarray(args[0]), np.asarray(args[1]))
    return np.matmul(lhs.astype(np.float64), rhs.astype(np.float64)).astype(F32)


def batch_matmul_multiplier(node: Node, g: Graph) -> tuple[int, int]:
    """QuantizeMultiplier(double(s_lhs) * double(s_rhs) / double(s_out)), as tflite-micro's
    interpreter computes it (the product in double: see the module's facts)."""
    s_lhs = float(F32(scale_of(quant_of(g, node.inputs[0]))))
    s_rhs = float(F32(scale_of(quant_of(g, node.inputs[1]))))
    return quantize_multiplier(s_lhs * s_rhs / float(F32(scale_of(quant_of(g, node.outputs[0])))))


def int8_batch_matmul(node: Node, g: Graph, args: Sequence[np.ndarray | None]) -> np.ndarray:
    """TFLM's int8 BATCH_MATMUL: int32 sums of offset products, one requantization, clamp."""
    lhs, rhs = _operands(node, g, np.asarray(args[0]), np.asarray(args[1]))
    lo = lhs.astype(np.int64) - zero_point_of(quant_of(g, node.inputs[0]))
    ro = rhs.astype(np.int64) - zero_point_of(quant_of(g, node.inputs[1]))
    acc = wrap_int32(np.matmul(lo, ro))
    m, s = batch_matmul_multiplier(node, g)
    out = multiply_by_quantized_multiplier(acc, m, s) + zero_point_of(quant_of(g, node.outputs[0]))
    return np.clip(out, -128, 127).astype(np.int8)


def _derived(node: Node, g: Graph) -> list[tuple[int, int]]:
    return [batch_matmul_multiplier(node, g)]


def _quantize_constants(graph: Graph, node: Node, act: Any, constants: dict[str, np.ndarray],
                        const_quant: dict[str, Any]) -> None:
    """A constant operand gets per-tensor parameters of its own range (TFLM reads one scale)."""
    from eedge.ops.binary import _own_range_constants
    _own_range_constants(graph, node, act, constants, const_quant)


# -- TFLite options ------------------------------------------------------------------
def _write_options(attrs: dict[str, Any]) -> tuple[int, Any]:
    from eedge.tflite_schema import schema
    opts = schema.BatchMatMulOptionsT()
    opts.adjX, opts.adjY = bool(attrs.get("adj_x")), bool(attrs.get("adj_y"))
    opts.asymmetricQuantizeInputs = False
    return schema.BuiltinOptions.BatchMatMulOptions, opts


def _read_options(operator: Any) -> dict[str, Any]:
    opts = registry.options_table(operator, "BatchMatMulOptions")
    if opts is None:  # the schema's defaults, as TFLM's parser applies them
        return {"adj_x": False, "adj_y": False}
    return {"adj_x": bool(opts.AdjX()), "adj_y": bool(opts.AdjY())}


# -- C -------------------------------------------------------------------------------
def _dims_of(g: Graph, tensor: str) -> list[int]:
    if tensor in g.constants:
        return [int(d) for d in np.asarray(g.constants[tensor]).shape]
    return [int(d) for d in g.tensors[tensor].shape]


def batch_steps(batch: Sequence[int], operand: Sequence[int]) -> list[int]:
    """Elements to advance ``operand`` by per index of each output batch axis (0: broadcast).

    TFLM's ``extent``: an operand axis of size 1 does not advance; otherwise
    the step is the product of the operand's later axes (matrix included).
    """
    own = [1] * (len(batch) - (len(operand) - 2)) + [int(d) for d in operand[:-2]]
    matrix = int(operand[-1]) * int(operand[-2])
    steps = []
    for i, d in enumerate(own):
        steps.append(0 if d == 1 else int(np.prod(own[i + 1:], dtype=np.int64)) * matrix)
    return steps


def scratch_bytes(node: Node, m: int, n: int, k: int) -> int:
    """What the kernel keeps: M + N int32 row sums (the offsets are applied from them), then
    packed copies: rhs as (N, K) unless adj_y, lhs as (M, K) if adj_x."""
    packs = (0 if node.attrs.get("adj_y") else n * k) + (m * k if node.attrs.get("adj_x") else 0)
    return 4 * (m + n) + packs


def emit_batch_matmul(ctx: Any, node: Node) -> Any:
    """One ``eedge_batch_matmul_s8`` call: batch loop steps, matrix sizes, int8 constants."""
    from eedge.codegen.emit import SCRATCH, Emitted, _operand, struct
    g, p = ctx.graph, ctx.ident
    lhs, rhs, out = node.inputs[0], node.inputs[1], node.outputs[0]
    l_dims, r_dims = _dims_of(g, lhs), _dims_of(g, rhs)
    batch, m, n, k = matmul_dims(node, l_dims, r_dims)
    if k > MAX_DEPTH:
        raise UnsupportedOpError(f"BATCH_MATMUL {node.name!r}: {k} products per output could "
                                 f"overflow the int32 accumulator (at most {MAX_DEPTH})")
    pad = MAX_BATCH_LEVELS - len(batch)
    dims = [1] * pad + list(batch)
    l_steps = [0] * pad + batch_steps(batch, l_dims)
    r_steps = [0] * pad + batch_steps(batch, r_dims)
    mult, shift = batch_matmul_multiplier(node, g)
    fields: dict[str, object] = {
        "batch": "{" + ", ".join(map(str, dims)) + "}",
        "lhs_step": "{" + ", ".join(map(str, l_steps)) + "}",
        "rhs_step": "{" + ", ".join(map(str, r_steps)) + "}",
        "rows": m, "cols": n, "depth": k,
        "adj_x": int(bool(node.attrs.get("adj_x"))), "adj_y": int(bool(node.attrs.get("adj_y"))),
        "lhs_offset": -zero_point_of(quant_of(g, lhs)),
        "rhs_offset": -zero_point_of(quant_of(g, rhs)),
        "out_offset": zero_point_of(quant_of(g, out)), "multiplier": mult, "shift": shift,
        "scratch": SCRATCH}
    words = (scratch_bytes(node, m, n, k) + 3) // 4
    return Emitted([struct("eedge_batch_matmul_params", f"{p}_params", fields)],
                   f"eedge_batch_matmul_s8(&{p}_params, {_operand(ctx, lhs)}, "
                   f"{_operand(ctx, rhs)}, {ctx.tensor_ref(out)})", words)


# -- registration --------------------------------------------------------------------
register_builtin(Builtin(
    name="BATCH_MATMUL",
    summary="product of two activations, batch axes broadcast (attention's Q·Kᵀ, P·V)",
    float_kernel=float_batch_matmul, int8_kernel=int8_batch_matmul, emit_c=emit_batch_matmul,
    write_options=_write_options, read_options=_read_options, output_shapes=_output_shapes,
    quant="observed", quantize_constants=_quantize_constants, derived_multipliers=_derived,
    int8_version=2, min_inputs=2, dsp=True, in_place=False))

__all__ = ["MAX_DEPTH", "batch_matmul_multiplier", "batch_steps", "emit_batch_matmul",
           "float_batch_matmul", "int8_batch_matmul", "matmul_dims", "scratch_bytes"]
