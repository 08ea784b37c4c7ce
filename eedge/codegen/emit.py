"""Translate each int8 node into a C kernel call with a const params struct.

Every integer constant comes from the same functions the reference
executor uses (eedge/reference/int8_kernels.py), so the generated code and
the oracle cannot drift apart in how they derive multipliers and shifts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eedge.errors import ModelError, UnsupportedOpError
from eedge.ir.graph import Graph, Node
from eedge.ops import registry
from eedge.reference.int8_kernels import (activation_range, channel_multipliers,
                                          fc_multipliers, fc_weight_offset, quant_of,
                                          quantize_multiplier, relu_multiplier, scale_of,
                                          softmax_multiplier, zero_point_of)
from eedge.reference.fixedpoint import exp_on_negative_values, srdhm, wrap_int32
from eedge.reference.windows import padding_amounts

F32 = np.float32
SCRATCH = "eedge_scratch"  # the model's one scratch buffer (int32 words)


@dataclass
class Emitted:
    """C text for one node: declarations (file scope) and one statement."""

    declarations: list[str] = field(default_factory=list)
    statement: str = ""
    scratch_words: int = 0   # 32-bit words of the shared scratch buffer the kernel needs


@dataclass
class EmitContext:
    graph: Graph
    tensor_ref: Callable[[str], str]     # activation name -> C expression (arena pointer)
    constant_ref: Callable[[str], str]   # constant name -> C identifier
    ident: str = ""                      # unique prefix for this node's declarations


def int_array(name: str, values: np.ndarray, ctype: str = "int32_t") -> str:
    body = ", ".join(str(int(v)) for v in np.asarray(values).reshape(-1))
    return f"static const {ctype} {name}[{max(np.asarray(values).size, 1)}] = {{{body}}};"


def struct(ctype: str, name: str, fields: dict[str, object]) -> str:
    body = ", ".join(f".{k} = {v}" for k, v in fields.items())
    return f"static const {ctype} {name} = {{{body}}};"


def _dims(graph: Graph, tensor: str) -> list[int]:
    if tensor in graph.constants:
        return list(graph.constants[tensor].shape)
    return [int(d) for d in graph.tensors[tensor].shape]


def _size(graph: Graph, tensor: str) -> int:
    return int(np.prod(_dims(graph, tensor)))


def _operand(ctx: EmitContext, tensor: str) -> str:
    return ctx.constant_ref(tensor) if tensor in ctx.graph.constants else ctx.tensor_ref(tensor)


def emit_node(ctx: EmitContext, node: Node) -> Emitted:
    handler = _HANDLERS.get(node.op_type)
    if handler is None and (registered := registry.builtin(node.op_type)) is not None:
        handler = registered.emit_c
    if handler is None:
        raise UnsupportedOpError(f"the C runtime has no kernel for {node.op_type} "
                                 f"(node {node.name!r})")
    return handler(ctx, node)


INT32_MAX = (1 << 31) - 1


def check_accumulator(g: Graph, node: Node, out_axis: int, weight_offset: int = 0,
                      data: int = 0, bias_index: int = 2) -> None:
    """Refuse weights and biases whose int32 accumulator can overflow for some input.

    Every partial sum of a conv/FC output channel is at most |bias| plus the
    largest |input - zero point| (255 at most) times the sum of |weight +
    weight offset| in magnitude. Real models stay far below 2^31; a damaged or
    crafted file that does not would be undefined behaviour in the C runtime
    (signed overflow) and gives other answers in every runtime, so it is
    refused here with the channel named. ``data`` and ``bias_index`` say where the
    input and the bias are (TRANSPOSE_CONV: 2 and 3; the weights are input 1 everywhere).
    """
    weights = node.inputs[1]
    bias = (node.inputs[bias_index] if len(node.inputs) > bias_index and node.inputs[bias_index]
            else None)
    if weights not in g.constants or (bias is not None and bias not in g.constants):
        return
    zero_point = zero_point_of(quant_of(g, node.inputs[data]))
    reach = max(127 - zero_point, zero_point + 128)
    w = np.abs(np.asarray(g.constants[weights], np.int64) + weight_offset)
    per_channel = np.moveaxis(w, out_axis, 0).reshape(w.shape[out_axis], -1).sum(axis=1)
    worst = reach * per_channel
    if bias is not None:
        worst = worst + np.abs(np.asarray(g.constants[bias], np.int64).reshape(-1))
    if worst.max(initial=0) > INT32_MAX:
        channel = int(np.argmax(worst))
        raise ModelError(f"{node.op_type} {node.name!r}: output channel {channel} can reach "
                         f"{int(worst[channel])} in its int32 accumulator (bias plus weights "
                         "times inputs), beyond 2^31 - 1; the model's weights or biases are "
                         "damaged")


def _conv_fields(ctx: EmitContext, node: Node) -> tuple[dict[str, object], list[str]]:
    """The eedge_conv_params fields CONV_2D and DEPTHWISE_CONV_2D share, and the
    per-channel multiplier and shift arrays they point at."""
    g, a, p = ctx.graph, node.attrs, ctx.ident
    _, in_h, in_w, in_c = _dims(g, node.inputs[0])
    _, out_h, out_w, out_c = _dims(g, node.outputs[0])
    w_shape = _dims(g, node.inputs[1])
    k_h, k_w = w_shape[1], w_shape[2]
    _, pad_top = padding_amounts(in_h, k_h, a["stride_h"], a["dilation_h"], a["padding"])
    _, pad_left = padding_amounts(in_w, k_w, a["stride_w"], a["dilation_w"], a["padding"])
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    mult, shift = channel_multipliers(scale_of(in_q), quant_of(g, node.inputs[1]),
                                      scale_of(out_q), out_c)
    low, high = activation_range(a["activation"], out_q)
    fields = dict(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
                  k_h=k_h, k_w=k_w, stride_h=a["stride_h"], stride_w=a["stride_w"],
                  dil_h=a["dilation_h"], dil_w=a["dilation_w"], pad_top=pad_top,
                  pad_left=pad_left, depth_multiplier=a.get("depth_multiplier", 1),
                  in_offset=-zero_point_of(in_q), out_offset=zero_point_of(out_q),
                  act_min=low, act_max=high, multiplier=f"{p}_mult", shift=f"{p}_shift",
                  scratch=SCRATCH)
    return fields, [int_array(f"{p}_mult", mult), int_array(f"{p}_shift", shift)]


def _conv_call(ctx: EmitContext, node: Node, kernel: str) -> str:
    bias = _operand(ctx, node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else "0"
    return (f"{kernel}(&{ctx.ident}_params, {_operand(ctx, node.inputs[0])}, "
            f"{_operand(ctx, node.inputs[1])}, {bias}, {ctx.tensor_ref(node.outputs[0])})")


def _conv2d(ctx: EmitContext, node: Node) -> Emitted:
    fields, arrays = _conv_fields(ctx, node)
    check_accumulator(ctx.graph, node, 0)
    k_h, k_w, in_c = fields["k_h"], fields["k_w"], fields["in_c"]
    # two im2col columns of 16-bit taps: 4 words per group of 4 taps, and a byte copy of
    # one receptive field when in_c is not a multiple of 4 (conv.c)
    scratch = (4 + (int(in_c) % 4 != 0)) * ((int(k_h) * int(k_w) * int(in_c) + 3) // 4)
    table = _conv_requant(ctx.graph, node, int(fields["out_c"]), int(fields["out_offset"]))
    if table is not None:
        arrays.append(int_array(f"{ctx.ident}_cq", table))
        fields["conv_requant"] = f"{ctx.ident}_cq"
    folded = _conv_folded_bias(ctx.graph, node, int(fields["in_offset"]))
    if folded is not None:
        arrays.append(int_array(f"{ctx.ident}_cb", folded))
        fields["conv_bias"] = f"{ctx.ident}_cb"
    return Emitted(arrays + [struct("eedge_conv_params", f"{ctx.ident}_params", fields)],
                   _conv_call(ctx, node, "eedge_conv2d_s8"), scratch)


def _conv_folded_bias(g: Graph, node: Node, in_offset: int,
                      out_axis: int = 0) -> np.ndarray | None:
    """CONV_2D's (DEPTHWISE_CONV_2D's: out_axis 3) bias with the input offset folded in,
    per output channel bias + in_offset * sum(w), or None. The portable kernels (conv.c,
    depthwise.c's whole windows, without EEDGE_USE_DSP) then sum raw int8 products; a
    partial sum is within |bias| + (|in_offset| + 128) * sum |w|, which must stay below
    2^31 (no int32 overflow in C)."""
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    if node.inputs[1] not in g.constants or (bias is not None and bias not in g.constants):
        return None
    w = np.asarray(g.constants[node.inputs[1]], np.int64)
    w = np.moveaxis(w, out_axis, 0).reshape(w.shape[out_axis], -1)
    b = (np.asarray(g.constants[bias], np.int64).reshape(-1) if bias is not None
         else np.zeros(w.shape[0], np.int64))
    bound = np.abs(b) + (abs(in_offset) + 128) * np.abs(w).sum(axis=1)
    if bound.max(initial=0) > INT32_MAX:
        return None
    return b + in_offset * w.sum(axis=1)


def _conv_requant(g: Graph, node: Node, out_c: int, out_offset: int) -> np.ndarray | None:
    """CONV_2D's short requantization table, per output channel {multiplier, 2^(r-1) +
    out_offset * 2^r, r}, or None. The short form (conv.c: one high multiply of twice the
    sum, one rounding shift that also adds the output zero point) equals TFLite's
    arithmetic when every sum stays within +-2^30 (bounded like check_accumulator: the
    bias plus the widest input times sum |w|) and every shift is a right shift r of 1..22
    bits (so the rounding term fits beside a 2^30 sum)."""
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    if node.inputs[1] not in g.constants or (bias is not None and bias not in g.constants):
        return None
    mult, shift = channel_multipliers(scale_of(quant_of(g, node.inputs[0])),
                                      quant_of(g, node.inputs[1]),
                                      scale_of(quant_of(g, node.outputs[0])), out_c)
    zp = zero_point_of(quant_of(g, node.inputs[0]))
    w = np.abs(np.asarray(g.constants[node.inputs[1]], np.int64))
    worst = max(127 - zp, zp + 128) * w.reshape(w.shape[0], -1).sum(axis=1)
    if bias is not None:
        worst = worst + np.abs(np.asarray(g.constants[bias], np.int64).reshape(-1))
    r = -np.asarray(shift, np.int64)
    if worst.max(initial=0) >= 2**30 or r.min() < 1 or r.max() > 22:
        return None
    rounding = (np.int64(1) << (r - 1)) + (np.int64(out_offset) << r)
    return np.stack([np.asarray(mult, np.int64), rounding, r], axis=1)


def _depthwise(ctx: EmitContext, node: Node) -> Emitted:
    fields, arrays = _conv_fields(ctx, node)
    g = ctx.graph
    check_accumulator(g, node, 3)
    # multiplier 1 keeps its sums in registers; others need one int32 per channel
    scratch = 1 if fields["depth_multiplier"] == 1 else int(fields["out_c"]) + 4
    # The short requantization (one high multiply-add of twice the sum, one rounding
    # shift that also adds the output zero point) is exact when every sum is within +-2^30
    # (bounded like check_accumulator: bias plus the widest input times sum |w|) and
    # every shift is a right shift of 1..22 bits (so 2^(r-1) + zp * 2^r fits beside it).
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    mult, shift = channel_multipliers(scale_of(quant_of(g, node.inputs[0])),
                                      quant_of(g, node.inputs[1]),
                                      scale_of(quant_of(g, node.outputs[0])),
                                      int(fields["out_c"]))
    if node.inputs[1] in g.constants and (bias is None or bias in g.constants):
        zp = zero_point_of(quant_of(g, node.inputs[0]))
        w = np.abs(np.asarray(g.constants[node.inputs[1]], np.int64))
        worst = max(127 - zp, zp + 128) * w.reshape(-1, w.shape[3]).sum(axis=0)
        if bias is not None:
            worst = worst + np.abs(np.asarray(g.constants[bias], np.int64).reshape(-1))
        r = -shift
        if worst.max(initial=0) < 2**30 and r.min() >= 1 and r.max() <= 22:
            rounding = (1 << (r - 1)) + (int(fields["out_offset"]) << r)
            b = (np.asarray(g.constants[bias], np.int64).reshape(-1) if bias is not None
                 else np.zeros_like(mult))
            # per channel {multiplier, rounding, shift, bias}: depthwise.c loads a block's
            # 16 words from one pointer
            table = np.stack([mult, rounding, r, b], axis=1)
            arrays.append(int_array(f"{ctx.ident}_dwq", table))
            fields["dw_requant"] = f"{ctx.ident}_dwq"
            w = np.asarray(g.constants[node.inputs[1]], np.int64)
            a = node.attrs
            if (w.shape[1:3] == (3, 3) and a["dilation_h"] == a["dilation_w"] == 1
                    and fields["depth_multiplier"] == 1 and w.shape[3] >= 4):
                # the DSP 3x3 path loads a tap's four channels already widened (LDRD of
                # two words of 16-bit lanes, the order SMLABB/SMLATT pair them with the
                # input's SXTAB16 halves): block, tap, then {c0|c2<<16, c1|c3<<16}
                blocks = w.shape[3] // 4
                v = w[0].reshape(9, -1)[:, :4 * blocks].reshape(9, blocks, 4)
                v = v.transpose(1, 0, 2) & 0xFFFF
                words = np.stack([v[..., 0] | (v[..., 2] << 16), v[..., 1] | (v[..., 3] << 16)],
                                 axis=-1).astype(np.uint32).view(np.int32)
                arrays.append(int_array(f"{ctx.ident}_dww", words))
                fields["dw_weights"] = f"{ctx.ident}_dww"
    if fields["depth_multiplier"] == 1:
        folded = _conv_folded_bias(g, node, int(fields["in_offset"]), 3)
        if folded is not None:
            arrays.append(int_array(f"{ctx.ident}_cb", folded))
            fields["conv_bias"] = f"{ctx.ident}_cb"
    return Emitted(arrays + [struct("eedge_conv_params", f"{ctx.ident}_params", fields)],
                   _conv_call(ctx, node, "eedge_depthwise_conv2d_s8"), scratch)


def _fully_connected(ctx: EmitContext, node: Node) -> Emitted:
    g, p = ctx.graph, ctx.ident
    out_depth, in_depth = _dims(g, node.inputs[1])
    # an input (..., K) is rows x K (TFLM's batches): keep_num_dims or not, the bytes are alike
    rows = _size(g, node.inputs[0]) // in_depth
    if rows * in_depth != _size(g, node.inputs[0]):
        raise UnsupportedOpError(f"FULLY_CONNECTED {node.name!r}: the input's size is not a "
                                 f"multiple of the weights' {in_depth} inputs")
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    mult, shift = fc_multipliers(g, node)
    per_channel = int(len(set(mult.tolist())) > 1 or len(set(shift.tolist())) > 1)
    if not per_channel:
        mult, shift = mult[:1], shift[:1]
    low, high = activation_range(node.attrs["activation"], out_q)
    check_accumulator(g, node, 0, fc_weight_offset(g, node))
    fields = dict(in_depth=in_depth, out_depth=out_depth, in_offset=-zero_point_of(in_q),
                  weight_offset=fc_weight_offset(g, node), out_offset=zero_point_of(out_q),
                  act_min=low, act_max=high, per_channel=per_channel, multiplier=f"{p}_mult",
                  shift=f"{p}_shift")
    has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
    x, out = _operand(ctx, node.inputs[0]), ctx.tensor_ref(node.outputs[0])
    arrays = [int_array(f"{p}_mult", mult), int_array(f"{p}_shift", shift)]
    if (rows == 1 and fields["weight_offset"] == 0 and node.inputs[1] in g.constants
            and (not has_bias or node.inputs[2] in g.constants)):
        # one input row: the weights packed four rows per word stream and the input offset
        # folded into the bias (eedge_fully_connected_packed_s8); the kernel reads neither
        # the TFLite weights nor the bias, so they are not emitted
        w = np.asarray(g.constants[node.inputs[1]], np.int64).reshape(out_depth, in_depth)
        b = (np.asarray(g.constants[node.inputs[2]], np.int64).reshape(-1) if has_bias
             else np.zeros(out_depth, np.int64))
        folded = wrap_int32(b + int(fields["in_offset"]) * w.sum(axis=1)).astype(np.int32)
        # graph constants (named after their sources), so equal ones share one array in
        # model_data.c like the weights they replace (an unrolled GRU's steps share R)
        packed = f"{node.inputs[1]}/fc_packed"
        folded_name = f"{packed}/bias:{node.inputs[2] if has_bias else ''}:{fields['in_offset']}"
        g.constants[packed] = _fc_pack(w)
        g.constants[folded_name] = folded
        fields.update(packed=ctx.constant_ref(packed), folded_bias=ctx.constant_ref(folded_name))
        # the short output stage when no sum can leave +-2^30 (real models stay far below)
        zero_point = zero_point_of(in_q)
        reach = max(127 - zero_point, zero_point + 128)
        bound = reach * np.abs(w).sum(axis=1) + np.abs(b)
        r = -np.asarray(shift, np.int64)
        if bound.max(initial=0) < 2**30 and r.min() >= 1 and r.max() <= 22:
            table = np.stack([np.asarray(mult, np.int64), (1 << (r - 1)) + (
                int(fields["out_offset"]) << r), r], axis=1)
            arrays.append(int_array(f"{p}_rq", table))
            fields["requant"] = f"{p}_rq"
        scratch = 0
        if 8 <= in_depth <= 256 and out_depth >= 8:
            # the input widened once into 16-bit lanes (2 words per 4 inputs) for the DSP
            # loop of every block; a larger input would cost more RAM than it saves time
            fields["scratch"] = SCRATCH
            scratch = 2 * (in_depth // 4)
        statement = f"eedge_fully_connected_packed_s8(&{p}_params, {x}, {out})"
        return Emitted(arrays + [struct("eedge_fc_params", f"{p}_params", fields)], statement,
                       scratch)
    bias = _operand(ctx, node.inputs[2]) if has_bias else "0"
    weights = _operand(ctx, node.inputs[1])
    if rows == 1:
        statement = f"eedge_fully_connected_s8(&{p}_params, {x}, {weights}, {bias}, {out})"
    else:   # the tokens: two rows per block share each weight load
        statement = (f"eedge_fully_connected_rows_s8(&{p}_params, {rows}, {x}, {weights}, "
                     f"{bias}, {out}, {SCRATCH})")
    return Emitted(arrays + [struct("eedge_fc_params", f"{p}_params", fields)], statement,
                   0 if rows == 1 else 2 * out_depth)


def _fc_pack(w: np.ndarray) -> np.ndarray:
    """FULLY_CONNECTED weights [out, in] as the int32 word stream of fully_connected.c's
    packed layout: blocks of four rows, word k of rows 0-3 together (bytes 4k..4k+3, byte j
    in bits 8j..8j+7), then a word of each row's in % 4 last bytes; the out % 4 last rows
    one by one."""
    out_depth, in_depth = w.shape
    nb, rem = divmod(in_depth, 4)
    padded = np.zeros((out_depth, 4 * (nb + (rem > 0))), np.int64)
    padded[:, :in_depth] = w
    u = (padded & 0xFF).reshape(out_depth, -1, 4)
    words = wrap_int32(u[..., 0] | u[..., 1] << 8 | u[..., 2] << 16 | u[..., 3] << 24
                       ).astype(np.int32)
    full = out_depth // 4 * 4
    blocks = words[:full].reshape(-1, 4, words.shape[1]).transpose(0, 2, 1).reshape(-1)
    return np.concatenate([blocks, words[full:].reshape(-1)])


def _binary(ctx: EmitContext, node: Node) -> Emitted:
    """ADD and MUL share the broadcasting binary kernel of the binary family (eedge.ops.binary)."""
    from eedge.ops.binary import emit_binary
    return emit_binary(ctx, node)


def _pool(ctx: EmitContext, node: Node) -> Emitted:
    g, a = ctx.graph, node.attrs
    _, in_h, in_w, c = _dims(g, node.inputs[0])
    _, out_h, out_w, _ = _dims(g, node.outputs[0])
    _, pad_top = padding_amounts(in_h, a["filter_h"], a["stride_h"], 1, a["padding"])
    _, pad_left = padding_amounts(in_w, a["filter_w"], a["stride_w"], 1, a["padding"])
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    if in_q.scale != out_q.scale or in_q.zero_point != out_q.zero_point:
        raise UnsupportedOpError(f"{node.op_type} {node.name!r}: input and output "
                                 "quantization must match (TFLite requires it)")
    low, high = activation_range(a["activation"], out_q)
    fields = dict(in_h=in_h, in_w=in_w, c=c, out_h=out_h, out_w=out_w, f_h=a["filter_h"],
                  f_w=a["filter_w"], stride_h=a["stride_h"], stride_w=a["stride_w"],
                  pad_top=pad_top, pad_left=pad_left, act_min=low, act_max=high)
    kernel = "eedge_avg_pool_s8" if node.op_type == "AVERAGE_POOL_2D" else "eedge_max_pool_s8"
    return _unary(ctx, node, "eedge_pool_params", kernel, fields)


def _unary(ctx: EmitContext, node: Node, params_type: str, kernel: str,
           fields: dict[str, Any]) -> Emitted:
    """One params struct and `kernel(&params, input, output)`: every one-input kernel's call."""
    p = ctx.ident
    return Emitted([struct(params_type, f"{p}_params", fields)],
                   f"{kernel}(&{p}_params, {_operand(ctx, node.inputs[0])}, "
                   f"{ctx.tensor_ref(node.outputs[0])})")


def _mean(ctx: EmitContext, node: Node) -> Emitted:
    # any axes: the reductions family's eedge_reduce_s8 (MEAN, SUM and REDUCE_MAX share it)
    from eedge.ops.reductions import emit_reduce
    return emit_reduce(ctx, node)


def softmax_fields(graph: Graph, tensor: str, beta: float = 1.0) -> dict[str, int]:
    dims = _dims(graph, tensor)
    mult, shift, diff_min = softmax_multiplier(scale_of(quant_of(graph, tensor)), beta)
    return dict(rows=int(np.prod(dims[:-1])), cols=dims[-1], input_multiplier=mult,
                input_shift=shift, diff_min=diff_min)


def _softmax(ctx: EmitContext, node: Node) -> Emitted:
    g = ctx.graph
    out_q = quant_of(g, node.outputs[0])
    if zero_point_of(out_q) != -128 or F32(scale_of(out_q)) != F32(1 / 256):
        raise UnsupportedOpError(f"SOFTMAX {node.name!r}: int8 output must use scale 1/256 "
                                 "and zero point -128")
    beta = float(node.attrs.get("beta", 1.0))
    fields = softmax_fields(g, node.inputs[0], beta)
    p = ctx.ident
    table = softmax_exp_table(scale_of(quant_of(g, node.inputs[0])), beta)
    return Emitted([int_array(f"{p}_exp", table), struct("eedge_softmax_params", f"{p}_params",
                                                         fields)],
                   f"eedge_softmax_lut_s8(&{p}_params, {p}_exp, {table.size}, "
                   f"{_operand(ctx, node.inputs[0])}, {ctx.tensor_ref(node.outputs[0])})")


def softmax_exp_table(in_scale: float, beta: float = 1.0) -> np.ndarray:
    """exp(-d) for each distance d = max - logit (0..255) as TFLite's int8 softmax computes it.

    The exponential depends on d alone, so eedge_softmax_lut_s8 looks it up instead of
    running gemmlowp's exp twice per logit (softmax was a third of a keyword transformer's
    instructions). Distances below diff_min hold 0 (they add nothing and give q = -128, as
    the reference); trailing zeros are cut, the kernel reads d >= size as 0.
    """
    mult, shift, diff_min = softmax_multiplier(in_scale, beta)
    diff = -np.arange(256, dtype=np.int64)
    valid = diff >= diff_min
    scaled = srdhm(wrap_int32(diff << shift), mult)
    exps = np.where(valid, exp_on_negative_values(np.where(valid, scaled, 0)), 0)
    nonzero = np.flatnonzero(exps)
    return exps[:int(nonzero[-1]) + 1 if nonzero.size else 0].astype(np.int64)


def _pad(ctx: EmitContext, node: Node) -> Emitted:
    g = ctx.graph
    dims = _dims(g, node.inputs[0])
    pads = g.constants[node.inputs[1]].reshape(-1, 2)
    if len(dims) > 4:
        raise UnsupportedOpError(f"PAD {node.name!r}: at most 4-D tensors")
    full = [1] * (4 - len(dims)) + dims
    before = [0] * (4 - len(dims)) + [int(v) for v in pads[:, 0]]
    after = [0] * (4 - len(dims)) + [int(v) for v in pads[:, 1]]
    fields = {"in_dims": "{" + ", ".join(map(str, full)) + "}",
              "pad_before": "{" + ", ".join(map(str, before)) + "}",
              "pad_after": "{" + ", ".join(map(str, after)) + "}",
              "pad_value": zero_point_of(quant_of(g, node.outputs[0]))}
    return _unary(ctx, node, "eedge_pad_params", "eedge_pad_s8", fields)


def _concat(ctx: EmitContext, node: Node) -> Emitted:
    g = ctx.graph
    out_dims = _dims(g, node.outputs[0])
    axis = int(node.attrs["axis"]) % len(out_dims)
    if node.attrs.get("activation", "NONE") != "NONE":
        raise UnsupportedOpError(f"CONCATENATION {node.name!r}: fused activations")
    out_q = quant_of(g, node.outputs[0])
    outer = int(np.prod(out_dims[:axis]))
    out_inner = int(np.prod(out_dims[axis:]))
    calls, offset = [], 0
    for t in node.inputs:
        q = quant_of(g, t)
        if q.scale != out_q.scale or q.zero_point != out_q.zero_point:
            raise UnsupportedOpError(f"CONCATENATION {node.name!r}: inputs must share the "
                                     "output's quantization")
        inner = int(np.prod(_dims(g, t)[axis:]))
        calls.append(f"eedge_concat_part_s8({_operand(ctx, t)}, {outer}, {inner}, {out_inner}, "
                     f"{offset}, {ctx.tensor_ref(node.outputs[0])})")
        offset += inner
    return Emitted([], "; ".join(calls))


def _reshape(ctx: EmitContext, node: Node) -> Emitted:
    # the planner makes the output an alias of the input; a copy only if it could not
    src, out = _operand(ctx, node.inputs[0]), ctx.tensor_ref(node.outputs[0])
    return Emitted([], f"eedge_copy_s8({src}, {out}, {_size(ctx.graph, node.outputs[0])})")


def _requantize(ctx: EmitContext, node: Node) -> Emitted:
    g = ctx.graph
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    m, s = relu_multiplier(node.op_type, scale_of(in_q), scale_of(out_q))
    low, high = activation_range(node.op_type, out_q)
    fields = dict(size=_size(g, node.outputs[0]), in_offset=-zero_point_of(in_q),
                  out_offset=zero_point_of(out_q), multiplier=m, shift=s, act_min=low,
                  act_max=high)
    return _unary(ctx, node, "eedge_requant_params", "eedge_requantize_s8", fields)



def _quantize(ctx: EmitContext, node: Node) -> Emitted:
    """int8 -> int8 QUANTIZE (TFLite's converter puts it where two scales must meet)."""
    g = ctx.graph
    source = g.tensors.get(node.inputs[0])
    if source is None or source.dtype != "int8":
        raise UnsupportedOpError(f"QUANTIZE {node.name!r}: the C runtime requantizes int8 to "
                                 "int8 only; quantize the model's input on the host")
    in_q, out_q = quant_of(g, node.inputs[0]), quant_of(g, node.outputs[0])
    m, s = quantize_multiplier(scale_of(in_q) / scale_of(out_q))
    fields = dict(size=_size(g, node.outputs[0]), in_offset=-zero_point_of(in_q),
                  out_offset=zero_point_of(out_q), multiplier=m, shift=s, act_min=-128,
                  act_max=127)
    return _unary(ctx, node, "eedge_requant_params", "eedge_requantize_s8", fields)

_HANDLERS: dict[str, Callable[[EmitContext, Node], Emitted]] = {
    "CONV_2D": _conv2d, "DEPTHWISE_CONV_2D": _depthwise, "FULLY_CONNECTED": _fully_connected,
    "ADD": _binary, "MUL": _binary, "AVERAGE_POOL_2D": _pool, "MAX_POOL_2D": _pool,
    "MEAN": _mean, "SOFTMAX": _softmax, "PAD": _pad, "CONCATENATION": _concat,
    "RESHAPE": _reshape, "RELU": _requantize, "RELU6": _requantize,
    "RELU_N1_TO_1": _requantize,
    "QUANTIZE": _quantize,
}

DSP_KERNELS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D",  # conv.c, depthwise.c
                         "FULLY_CONNECTED",  # fully_connected.c
                         "ADD", "MUL",  # binary.c (eedge_binary_s8)
                         "MEAN"})  # reduce.c (eedge_reduce_s8)
"""Builtins of ``_HANDLERS`` whose C kernel has an ``EEDGE_USE_DSP`` (SIMD) path besides the
portable one; registered builtins say so in ``Builtin.dsp``. The README's op table reads
both; tests/ops/test_table.py checks each entry's kernel source has a DSP block."""
