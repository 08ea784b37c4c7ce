"""Lower an ONNX-dialect graph to the TFLite dialect: NHWC, TFLite builtins.

Every 4-D activation is transposed to NHWC and every weight to TFLite's
layout (conv OHWI, depthwise 1HWC, fully connected [out, in]). 1-D nets
(Conv1d, pools over NCL tensors) become 2-D ones of unit height: TFLite and
TFLM have no 1-D convolution or pooling, and a (N, C, L) tensor read as
NCHW (N, C, 1, L) is (N, 1, L, C) in NHWC, with the same bytes as NLC. So a
1-D kernel k becomes 1 x k, and every 3-D activation is stored that way;
reshapes between 3-D and 4-D tensors are checked to move no byte. Batch
norm is folded into the layer before it where there is one, and otherwise
becomes a 1x1 depthwise convolution (TFLite has no batch norm). The one
subtle case is flattening: ONNX flattens NCHW in C,H,W order, NHWC memory
flattens in H,W,C order. Rather than inserting transposes, the lowering
remembers, for each 2-D tensor, which ONNX position each element came from
and permutes the columns of the fully connected layer that consumes it —
what a converter from a channels-first framework must do.

Node attributes of the TFLite dialect (all ints unless noted):
CONV_2D / DEPTHWISE_CONV_2D: stride_h, stride_w, dilation_h, dilation_w,
padding ("SAME"/"VALID"), activation ("NONE"/"RELU"/"RELU6"/"RELU_N1_TO_1"),
depth_multiplier (depthwise). FULLY_CONNECTED, ADD, MUL: activation.
MAX/AVERAGE_POOL_2D: filter_h, filter_w, stride_h, stride_w, padding,
activation. MEAN: keep_dims (axes are input 1). CONCATENATION: axis,
activation. SOFTMAX: beta. RESHAPE, PAD (paddings are input 1), RELU,
RELU6, QUANTIZE, DEQUANTIZE: none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from eedge.errors import UnsupportedOpError
from eedge.ir.graph import Dim, Graph, Node, TensorInfo
from eedge.ops import registry
from eedge.passes.fold_batchnorm import bn_affine, fold_batchnorm
from eedge.passes.layout_classes import (PLAIN, PLAIN_LAYOUTS, default_layout, layout_classes,
                                         plain_layout)

NCHW_TO_NHWC = (0, 2, 3, 1)
FUSABLE = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "SUB",
                     "TRANSPOSE_CONV"})
MAX_CONCAT_INPUTS = 10
"""TFLite Micro's CONCATENATION takes at most 10 inputs (kMaxInputNum); longer ones are
concatenated in groups."""
ACTIVATION_OPS = {"RELU": "RELU", "RELU6": "RELU6", "RELU_N1_TO_1": "RELU_N1_TO_1"}


def nchw_view(shape: Sequence[Dim]) -> tuple[Dim, ...]:
    """The 4-D NCHW shape a 3-D (N, C, L) activation is lowered as: (N, C, 1, L)."""
    return (shape[0], shape[1], 1, shape[2]) if len(shape) == 3 else tuple(shape)


def nhwc_shape(shape: Sequence[Dim]) -> tuple[Dim, ...]:
    """Lowered shape of an ONNX activation: 4-D and 3-D (unit height) become NHWC."""
    view = nchw_view(shape)
    return tuple(view[i] for i in NCHW_TO_NHWC) if len(view) == 4 else tuple(view)


def moves_no_bytes(in_shape: Sequence[Dim], out_shape: Sequence[Dim]) -> bool:
    """Whether an ONNX reshape between 3-D/4-D activations is a plain reshape in NHWC.

    It is when the element each NHWC position holds is the same before and
    after (e.g. equal channel counts, or no spatial extent on either side);
    otherwise lowering it would need a transpose, which eedge does not emit.
    """
    before = tuple(int(d) for d in nchw_view(in_shape)[1:])
    after = tuple(int(d) for d in nchw_view(out_shape)[1:])
    index = np.arange(int(np.prod(before)))
    return bool(np.array_equal(index.reshape(before).transpose(1, 2, 0).ravel(),
                               index.reshape(after).transpose(1, 2, 0).ravel()))


def flatten_permutation(c: int, h: int, w: int) -> np.ndarray | None:
    """For NHWC-flattened element j, the index it has in NCHW flattening."""
    if h * w == 1 or c == 1:
        return None
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()


def block_diagonal(weight: np.ndarray, group: int) -> np.ndarray:
    """Grouped conv weights (O, I/g, kh, kw) -> a regular conv's (O, I, kh, kw).

    Output channel o of group k reads only input channels of group k; the
    other weights are zero. TFLite's CONV_2D does have grouped filters, but
    neither eedge's C kernels nor every interpreter implement them, so a
    grouped conv (neither regular nor depthwise) is lowered as this dense
    conv: exact in float and in int8 (zeros change no per-channel scale and
    add nothing), at g times the MACs and weight bytes of the grouped one.
    """
    cout, per_group, kh, kw = weight.shape
    outs = cout // group
    dense = np.zeros((cout, per_group * group, kh, kw), weight.dtype)
    for k in range(group):
        dense[k * outs:(k + 1) * outs, k * per_group:(k + 1) * per_group] = \
            weight[k * outs:(k + 1) * outs]
    return dense


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int, int]:
    """TFLite SAME: (output size, pad before, pad after)."""
    effective = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + effective - size, 0)
    return out, total // 2, total - total // 2


class _Lowerer:
    def __init__(self, graph: Graph) -> None:
        self.src = graph
        self.nodes: list[Node] = []
        self.constants: dict[str, np.ndarray] = {}
        self.tensors: dict[str, TensorInfo] = {}
        self.perm: dict[str, np.ndarray] = {}
        self.alias: dict[str, str] = {}
        # lowered tensor -> the ONNX axis each of its axes holds, where that is not the
        # rank's default (NHWC for 3-D/4-D, ONNX order otherwise): rank-5 tensors of
        # channel shuffles (eedge.ops.movement_lowering)
        self.layout: dict[str, tuple[int, ...]] = {}
        # ONNX tensor -> spatial / plain / free (eedge.passes.layout_classes)
        self.classes = layout_classes(graph)
        self.readers = graph.consumers()  # the source graph never changes while lowering
        # ids of source nodes another lowering already covered (a Linear's bias Add)
        self.absorbed: set[int] = set()

    # -- helpers ------------------------------------------------------------
    def name(self, tensor: str) -> str:
        return self.alias.get(tensor, tensor)

    def src_shape(self, tensor: str) -> tuple[Dim, ...]:
        return self.src.tensors[tensor].shape

    def _plain(self, name: str, rank: int) -> bool:
        return rank in PLAIN_LAYOUTS and self.classes.get(name) == PLAIN

    def class_layout(self, name: str, rank: int) -> tuple[int, ...]:
        """The layout a 3-D/4-D activation's class gives it (NHWC unless it is plain)."""
        if self._plain(name, rank):
            shape = self.src.tensors[name].shape if name in self.src.tensors else None
            return plain_layout(shape) if shape is not None else PLAIN_LAYOUTS[rank]
        return default_layout(rank)

    def define(self, name: str, onnx_shape: Sequence[Dim]) -> None:
        if self._plain(name, len(onnx_shape)):
            layout = plain_layout(onnx_shape)
            view = nchw_view(onnx_shape)
            self.tensors[name] = TensorInfo(name, tuple(view[a] for a in layout), "float32")
            self.layout[name] = layout
            return
        self.tensors[name] = TensorInfo(name, nhwc_shape(onnx_shape), "float32")

    def layout_of(self, lowered: str, rank: int) -> tuple[int, ...]:
        """Which view axis (3-D as (N, C, 1, L)) each axis of a lowered tensor holds."""
        return self.layout.get(lowered, default_layout(rank))

    def lowered_axis(self, lowered: str, onnx_axis: int, rank: int) -> int:
        """Where ONNX axis ``onnx_axis`` of a rank-``rank`` activation sits once lowered."""
        axis = onnx_axis % rank
        view_axis = (0, 1, 3)[axis] if rank == 3 else axis
        return self.layout_of(lowered, rank).index(view_axis)

    def to_lowered(self, value: np.ndarray, layout: Sequence[int]) -> np.ndarray:
        """An ONNX-order array (3-D read as (N, C, 1, L)) in a lowered tensor's layout."""
        if value.ndim in (3, 4):
            value = value.reshape(nchw_view(value.shape))
        return np.ascontiguousarray(value.transpose(layout)) if value.ndim == len(layout) \
            else value

    def const(self, name: str, value: np.ndarray) -> str:
        self.constants[name] = np.ascontiguousarray(value)
        return name

    def const_of(self, node: Node, index: int, what: str) -> np.ndarray:
        tensor = node.inputs[index] if index < len(node.inputs) else ""
        if not tensor or tensor not in self.src.constants:
            raise UnsupportedOpError(f"{node.op_type} node {node.name!r}: the {what} must be a "
                                     "constant for TFLite lowering")
        return np.asarray(self.src.constants[tensor])

    def emit(self, op: str, node: Node, inputs: list[str], output: str,
             **attrs: Any) -> None:
        self.nodes.append(Node(f"{node.name}" if not any(n.name == node.name for n in self.nodes)
                               else f"{node.name}/{op.lower()}", op, inputs, [output], attrs))

    def unsupported(self, node: Node, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"{node.op_type} node {node.name!r} cannot be lowered to "
                                  f"TFLite: {why}")

    # -- spatial padding ----------------------------------------------------
    @staticmethod
    def spatial_padding(window: dict[str, Any], in_hw: Sequence[int]
                        ) -> tuple[str, list[int] | None]:
        """("SAME"|"VALID", explicit pads [t, l, b, r] that need a PAD op, or None).

        ``window`` is what :meth:`window_attrs` returns (always 2-D).
        """
        kernel, strides, dilations = (window["kernel_shape"], window["strides"],
                                      window["dilations"])
        auto_pad = window["auto_pad"]
        if auto_pad == "VALID":
            return "VALID", None
        same = [same_padding(in_hw[i], kernel[i], strides[i], dilations[i]) for i in range(2)]
        same_pads = [same[0][1], same[1][1], same[0][2], same[1][2]]
        if auto_pad == "SAME_UPPER":
            return "SAME", None
        pads = list(window["pads"])
        if auto_pad == "SAME_LOWER":
            pads = [same_pads[2], same_pads[3], same_pads[0], same_pads[1]]
        if not any(pads):
            return "VALID", None
        if pads == same_pads:
            return "SAME", None
        return "VALID", pads

    def pad_input(self, node: Node, x: str, pads: list[int]) -> str:
        top, left, bottom, right = pads
        n, c, h, w = nchw_view(self.src_shape(node.inputs[0]))
        padded = f"{node.name}/padded"
        paddings = np.array([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32)
        self.tensors[padded] = TensorInfo(padded, nhwc_shape(
            (n, c, int(h) + top + bottom, int(w) + left + right)), "float32")
        self.nodes.append(Node(f"{node.name}/pad", "PAD",
                               [x, self.const(f"{node.name}/paddings", paddings)], [padded], {}))
        return padded

    def window_attrs(self, node: Node, kernel: Sequence[int]) -> dict[str, Any]:
        """ONNX window attributes in 2-D form: a 1-D window [k] becomes 1 x k.

        Returns kernel_shape, strides, dilations, pads ([t, l, b, r]) and
        auto_pad, so the 2-D code below serves Conv1d and the 1-D pools too.
        """
        rank = len(kernel)
        if rank not in (1, 2):
            raise self.unsupported(node, f"{rank + 2}-D inputs (only 1-D and 2-D windows)")
        strides = list(node.attrs.get("strides", [1] * rank))
        dilations = list(node.attrs.get("dilations", [1] * rank))
        pads = list(node.attrs.get("pads", [0] * 2 * rank))
        kernel = list(kernel)
        if rank == 1:
            kernel, strides, dilations = [1] + kernel, [1] + strides, [1] + dilations
            pads = [0, pads[0], 0, pads[1]]
        return dict(kernel_shape=kernel, strides=strides, dilations=dilations, pads=pads,
                    auto_pad=node.attrs.get("auto_pad", "NOTSET"))

    # -- ops ----------------------------------------------------------------
    def lower(self, node: Node) -> None:
        if id(node) in self.absorbed:
            return
        handler = getattr(self, f"op_{node.op_type}", None)
        if handler is not None:
            handler(node)
            return
        registered = registry.lowering(node.op_type)
        if registered is None:
            raise self.unsupported(node, "no TFLite lowering for this operator")
        registered.lower(self, node)

    def op_Conv(self, node: Node) -> None:
        x = self.name(node.inputs[0])
        weight = self.const_of(node, 1, "weight").astype(np.float32)
        if weight.ndim not in (3, 4):
            raise self.unsupported(node, f"{weight.ndim - 2}-D convolution (only 1-D and 2-D)")
        window = self.window_attrs(node, weight.shape[2:])
        weight = weight.reshape(weight.shape[:2] + tuple(window["kernel_shape"]))
        cout, cin_per_group, kh, kw = weight.shape
        cin = int(self.src_shape(node.inputs[0])[1])
        group = int(node.attrs.get("group", 1))
        bias = (self.const_of(node, 2, "bias").astype(np.float32)
                if len(node.inputs) > 2 and node.inputs[2] else np.zeros(cout, np.float32))
        strides, dilations = window["strides"], window["dilations"]
        in_hw = [int(d) for d in nchw_view(self.src_shape(node.inputs[0]))[2:]]
        padding, explicit = self.spatial_padding(window, in_hw)
        if explicit is not None:
            x = self.pad_input(node, x, explicit)
        out = node.outputs[0]
        self.define(out, self.src_shape(out))
        common = dict(stride_h=strides[0], stride_w=strides[1], dilation_h=dilations[0],
                      dilation_w=dilations[1], padding=padding, activation="NONE")
        if group == 1:
            w = self.const(f"{node.name}/weights", weight.transpose(0, 2, 3, 1))
            b = self.const(f"{node.name}/bias", bias)
            self.emit("CONV_2D", node, [x, w, b], out, **common)
        elif group == cin and cin_per_group == 1 and cout % cin == 0:
            w = self.const(f"{node.name}/weights", weight.transpose(1, 2, 3, 0))
            b = self.const(f"{node.name}/bias", bias)
            self.emit("DEPTHWISE_CONV_2D", node, [x, w, b], out,
                      depth_multiplier=cout // cin, **common)
        elif cin == cin_per_group * group and cout % group == 0:
            dense = block_diagonal(weight, group).transpose(0, 2, 3, 1)
            w = self.const(f"{node.name}/weights", dense)
            b = self.const(f"{node.name}/bias", bias)
            self.emit("CONV_2D", node, [x, w, b], out, **common)
        else:
            raise self.unsupported(node, f"grouped convolution (group={group}) of {cin} input "
                                         f"and {cout} output channels")

    def _fully_connected(self, node: Node, x_src: str, weight: np.ndarray,
                         bias: np.ndarray) -> None:
        x = self.name(x_src)
        if len(self.tensors[x].shape) != 2:
            raise self.unsupported(node, "the input must be 2-D (flatten it first)")
        if x in self.perm:
            weight = weight[:, self.perm[x]]
        out = node.outputs[0]
        self.define(out, self.src_shape(out))
        w = self.const(f"{node.name}/weights", weight.astype(np.float32))
        b = self.const(f"{node.name}/bias", bias.astype(np.float32).reshape(-1))
        self.emit("FULLY_CONNECTED", node, [x, w, b], out, activation="NONE")

    def op_Gemm(self, node: Node) -> None:
        if node.attrs.get("transA", 0) or node.attrs.get("alpha", 1.0) != 1.0 or \
                node.attrs.get("beta", 1.0) != 1.0:
            raise self.unsupported(node, "only Gemm with alpha=beta=1 and transA=0")
        b = self.const_of(node, 1, "weight")
        weight = b if node.attrs.get("transB", 0) else b.T
        bias = (self.const_of(node, 2, "bias") if len(node.inputs) > 2 and node.inputs[2]
                else np.zeros(weight.shape[0], np.float32))
        if bias.size != weight.shape[0]:
            raise self.unsupported(node, "the bias must have one value per output")
        self._fully_connected(node, node.inputs[0], weight, bias)

    def op_MatMul(self, node: Node) -> None:
        from eedge.ops import sequence_lowering
        if node.inputs[1] not in self.src.constants:
            sequence_lowering.lower_batch_matmul(self, node)
            return
        b = self.const_of(node, 1, "right-hand side")
        if b.ndim == 2 and len(self.src_shape(node.inputs[0])) > 2:
            sequence_lowering.lower_linear(self, node, b)
            return
        if b.ndim != 2:
            raise self.unsupported(node, "the constant right-hand side must be 2-D")
        self._fully_connected(node, node.inputs[0], b.T, np.zeros(b.shape[1], np.float32))

    def _elementwise(self, node: Node, op: str, fused: bool = True,
                     replace: dict[str, np.ndarray] | None = None) -> None:
        """A broadcasting binary op; NCHW constants are laid out like the NHWC activations.

        ``fused``: the builtin has a fused activation option (ADD, SUB, MUL; not
        MAXIMUM/MINIMUM). ``replace`` gives constant inputs a new value (Div's
        divisor becomes its reciprocal). Activation operands must have the
        output's rank when it is 3-D or 4-D: a lower-rank one would need a
        reshape to line up with the NHWC layout.
        """
        replace = replace or {}
        out = node.outputs[0]
        out_shape = self.src_shape(out)
        rank = len(out_shape)
        operands, perms = [], []
        for t in node.inputs:
            if t in self.src.constants:
                value = np.asarray(replace.get(t, self.src.constants[t]), np.float32)
                if rank in (3, 4) and value.ndim > 0:
                    value = value.reshape((1,) * (rank - value.ndim) + value.shape)
                    value = self.to_lowered(value, self.class_layout(out, rank))
                operands.append(("const", value))
            elif rank in (3, 4) and len(self.src_shape(t)) != rank:
                operands.append(("act", self.broadcast_operand(node, t, out, rank)))
            else:
                operands.append(("act", self.name(t)))
                perms.append(self.perm.get(self.name(t)))
        if len(perms) == 2 and not _same_perm(perms[0], perms[1]):
            raise self.unsupported(node, "its inputs were flattened in different layouts")
        perm = perms[0] if perms else None
        names = []
        for kind, value in operands:
            if kind == "act":
                names.append(value)
                continue
            if perm is not None and value.ndim in (1, 2) and value.shape[-1] == perm.size:
                value = value[..., perm]
            elif perm is not None and value.size > 1:
                raise self.unsupported(node, "a constant operand on a flattened tensor")
            names.append(self.const(f"{node.name}/operand{len(names)}", value))
        self.define(out, out_shape)
        if perm is not None:
            self.perm[out] = perm
        attrs = {"activation": "NONE"} if fused else {}
        self.emit(op, node, names, out, **attrs)

    def broadcast_operand(self, node: Node, tensor: str, out: str, rank: int) -> str:
        """A lower-rank activation operand (torch's unrolled RNN adds (N, H) to (1, N, H))
        reshaped to ``rank`` the ONNX way (leading unit axes) in the output's layout; a
        RESHAPE, refused when the bytes would have to move."""
        from eedge.ops.movement_lowering import _reshape_to, element_order, lowered_shape
        x, shape = self.name(tensor), self.src_shape(tensor)
        padded = (1,) * (rank - len(shape)) + tuple(shape)
        layout = self.class_layout(out, rank)
        if x in self.perm or not np.array_equal(
                element_order(shape, self.layout_of(x, len(shape))),
                element_order(padded, layout)):
            raise self.unsupported(node, f"activation {tensor!r} of rank {len(shape)} "
                                         f"broadcasts against rank {rank} in another layout; "
                                         f"reshape it to rank {rank} first")
        name = f"{node.name}/{tensor}/rank{rank}"
        self.tensors[name] = TensorInfo(name, lowered_shape(padded, layout), "float32")
        if tuple(layout) != NCHW_TO_NHWC:
            self.layout[name] = tuple(layout)
        _reshape_to(self, node, x, name)
        return name

    def op_Add(self, node: Node) -> None:
        self._elementwise(node, "ADD")

    def op_Mul(self, node: Node) -> None:
        self._elementwise(node, "MUL")

    def _activation(self, node: Node, op: str) -> None:
        x, out = self.name(node.inputs[0]), node.outputs[0]
        self.define(out, self.src_shape(out))
        if x in self.perm:
            self.perm[out] = self.perm[x]
        self.emit(op, node, [x], out)

    def op_Relu(self, node: Node) -> None:
        self._activation(node, "RELU")

    def op_Clip(self, node: Node) -> None:
        low = node.attrs.get("min")
        high = node.attrs.get("max")
        if len(node.inputs) > 1 and node.inputs[1]:
            low = float(self.const_of(node, 1, "minimum"))
        if len(node.inputs) > 2 and node.inputs[2]:
            high = float(self.const_of(node, 2, "maximum"))
        kinds = {(0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1"}
        if low == 0.0 and (high is None or math.isinf(high)):
            self._activation(node, "RELU")
        elif (low, high) in kinds:
            self._activation(node, kinds[(low, high)])  # type: ignore[index]
        else:
            raise self.unsupported(node, f"Clip({low}, {high}) is not ReLU, ReLU6 or [-1, 1]")

    def _pool(self, node: Node, op: str) -> None:
        window = self.window_attrs(node, node.attrs["kernel_shape"])
        kernel, strides = window["kernel_shape"], window["strides"]
        if any(d != 1 for d in window["dilations"]):
            raise self.unsupported(node, "dilated pooling")
        x = self.name(node.inputs[0])
        in_hw = [int(d) for d in nchw_view(self.src_shape(node.inputs[0]))[2:]]
        padding, explicit = self.spatial_padding(window, in_hw)
        counts_pads = op == "AVERAGE_POOL_2D" and bool(node.attrs.get("count_include_pad", 0))
        if padding == "SAME" and counts_pads:  # TFLite's SAME average leaves pads out
            same = [same_padding(in_hw[i], kernel[i], strides[i], 1) for i in range(2)]
            padding, explicit = "VALID", [same[0][1], same[1][1], same[0][2], same[1][2]]
        if explicit is not None and any(explicit):
            # zeros are what an average with count_include_pad=1 adds, and never win a
            # max over a ReLU's output; elsewhere a zero pad would change the answer
            if not (counts_pads or (op == "MAX_POOL_2D" and self.nonnegative(node.inputs[0]))):
                raise self.unsupported(node, f"explicit padding {explicit} that is not TFLite "
                                             "SAME (it is only exact for max pooling over a "
                                             "ReLU and average pooling with count_include_pad)")
            x = self.pad_input(node, x, explicit)
            top, left, bottom, right = explicit
            in_hw = [in_hw[0] + top + bottom, in_hw[1] + left + right]
        out = node.outputs[0]
        self.define(out, self.src_shape(out))
        expected = nhwc_shape(self.src_shape(out))[1:3]
        got = tuple(same_padding(in_hw[i], kernel[i], strides[i], 1)[0] if padding == "SAME"
                    else (in_hw[i] - kernel[i]) // strides[i] + 1 for i in range(2))
        if tuple(expected) != got:
            raise self.unsupported(node, "ceil_mode pooling changes the output size")
        self.emit(op, node, [x], out, filter_h=kernel[0],
                  filter_w=kernel[1], stride_h=strides[0], stride_w=strides[1],
                  padding=padding, activation="NONE")

    def nonnegative(self, tensor: str) -> bool:
        """Whether ``tensor`` is a ReLU's (or a clamp at >= 0's) output in the source graph."""
        idx = self.src.producer_index(tensor)
        node = self.src.nodes[idx] if idx is not None else None
        while node is not None and node.op_type in ("Identity", "Dropout"):
            idx = self.src.producer_index(node.inputs[0])
            node = self.src.nodes[idx] if idx is not None else None
        if node is None or node.op_type not in ("Relu", "Clip"):
            return False
        if node.op_type == "Relu":
            return True
        low = node.attrs.get("min")
        if len(node.inputs) > 1 and node.inputs[1] in self.src.constants:
            low = float(np.asarray(self.src.constants[node.inputs[1]]))
        return low is not None and low >= 0.0

    def op_MaxPool(self, node: Node) -> None:
        self._pool(node, "MAX_POOL_2D")

    def op_AveragePool(self, node: Node) -> None:
        self._pool(node, "AVERAGE_POOL_2D")

    def _mean(self, node: Node, axes: Iterable[int] | None, keep: bool) -> None:
        # the reductions family maps the axes and handles dropped ones for MEAN, SUM and MAX
        from eedge.ops.reductions import lower_reduction
        lower_reduction(self, node, "MEAN", axes, keep)

    def op_GlobalAveragePool(self, node: Node) -> None:
        self._mean(node, range(2, len(self.src_shape(node.inputs[0]))), True)

    def op_ReduceMean(self, node: Node) -> None:
        from eedge.ops.reductions import onnx_axes  # attribute before opset 18, input after
        self._mean(node, onnx_axes(self, node), bool(node.attrs.get("keepdims", 1)))

    def _reshape(self, node: Node) -> None:
        from eedge.ops import movement_lowering
        if movement_lowering.needs_layouts(self, node):  # a rank-5 side: layouts decide
            movement_lowering.lower_reshape(self, node)
            return
        src, out = node.inputs[0], node.outputs[0]
        x = self.name(src)
        in_shape, out_shape = self.src_shape(src), self.src_shape(out)
        perm: np.ndarray | None = None
        spatial = (3, 4)
        if len(in_shape) in spatial and len(out_shape) == 2:
            perm = flatten_permutation(*(int(d) for d in nchw_view(in_shape)[1:]))
        elif x in self.perm:
            if tuple(in_shape[1:]) != tuple(out_shape[1:]):
                raise self.unsupported(node, "reshaping a flattened channels-first tensor")
            perm = self.perm[x]
        elif len(in_shape) in spatial and len(out_shape) in spatial:
            if not moves_no_bytes(in_shape, out_shape):
                raise self.unsupported(node, f"reshaping {list(in_shape[1:])} into "
                                             f"{list(out_shape[1:])} moves elements between "
                                             "channels and positions (needs a transpose)")
        elif len(out_shape) in spatial and tuple(in_shape) != tuple(out_shape):
            _, c, h, w = (int(d) if isinstance(d, int) else 1 for d in nchw_view(out_shape))
            if h * w != 1 and c != 1:
                raise self.unsupported(node, "reshaping into a channels-first tensor")
        self.define(out, out_shape)
        if perm is not None:
            self.perm[out] = perm
        lowered = [int(d) if isinstance(d, int) else -1 for d in self.tensors[out].shape]
        lowered[0] = -1
        shape = self.const(f"{node.name}/shape", np.array(lowered, np.int32))
        self.emit("RESHAPE", node, [x, shape], out)

    op_Flatten = op_Reshape = op_Squeeze = op_Unsqueeze = _reshape

    def op_Concat(self, node: Node) -> None:
        from eedge.ops import movement_lowering
        if movement_lowering.lower_stack(self, node):  # torch.stack: Unsqueezes + Concat
            return
        out = node.outputs[0]
        rank = len(self.src_shape(out))
        axis = int(node.attrs["axis"]) % rank
        inputs = [self.name(t) for t in node.inputs]
        if any(t in self.src.constants for t in node.inputs):
            raise self.unsupported(node, "constant inputs to Concat")
        self.define(out, self.src_shape(out))
        if rank in (3, 4):
            axis = self.lowered_axis(out, axis, rank)
        elif rank == 2 and axis == 1 and any(t in self.perm for t in inputs):
            parts, offset = [], 0
            for t in inputs:
                width = int(self.tensors[t].shape[1])
                parts.append(self.perm.get(t, np.arange(width)) + offset)
                offset += width
            self.perm[out] = np.concatenate(parts)
        elif any(t in self.perm for t in inputs):
            raise self.unsupported(node, "concatenating flattened tensors along the batch")
        while len(inputs) > MAX_CONCAT_INPUTS:  # a recurrent layer's 49 time steps
            inputs = [self._partial_concat(node, inputs[i:i + MAX_CONCAT_INPUTS], axis, out, i)
                      for i in range(0, len(inputs), MAX_CONCAT_INPUTS)]
        self.emit("CONCATENATION", node, inputs, out, axis=axis, activation="NONE")

    def _partial_concat(self, node: Node, inputs: list[str], axis: int, out: str,
                        first: int) -> str:
        """Concatenate a group of at most MAX_CONCAT_INPUTS (one input passes through)."""
        if len(inputs) == 1:
            return inputs[0]
        shape = list(self.tensors[inputs[0]].shape)
        shape[axis] = sum(int(self.tensors[t].shape[axis]) for t in inputs)
        name = f"{out}/part{first}_{len(self.nodes)}"
        self.tensors[name] = TensorInfo(name, tuple(shape), "float32")
        if out in self.layout:
            self.layout[name] = self.layout[out]
        self.nodes.append(Node(f"{node.name}/part{first}_{len(self.nodes)}", "CONCATENATION",
                               inputs, [name], {"axis": axis, "activation": "NONE"}))
        return name

    def op_Pad(self, node: Node) -> None:
        if node.attrs.get("mode", "constant") != "constant":
            raise self.unsupported(node, "only constant padding")
        pads = (self.const_of(node, 1, "pads") if len(node.inputs) > 1
                else np.asarray(node.attrs.get("pads")))
        if len(node.inputs) > 2 and node.inputs[2] and \
                float(self.const_of(node, 2, "pad value")) != 0.0:
            raise self.unsupported(node, "padding with a value other than 0")
        rank = len(self.src_shape(node.inputs[0]))
        pairs = np.stack([pads[:rank], pads[rank:]], axis=1).astype(np.int32)
        if rank == 3:
            pairs = np.insert(pairs, 2, 0, axis=0)  # the unit H axis is never padded
        x = self.name(node.inputs[0])
        if x in self.perm:
            raise self.unsupported(node, "padding a flattened channels-first tensor")
        out = node.outputs[0]
        self.define(out, self.src_shape(out))
        if rank in (3, 4):
            pairs = pairs[list(self.layout_of(out, rank))]
        self.emit("PAD", node, [x, self.const(f"{node.name}/paddings", pairs)], out)

    def op_Softmax(self, node: Node) -> None:
        rank = len(self.src_shape(node.inputs[0]))
        x, out = self.name(node.inputs[0]), node.outputs[0]
        axis = int(node.attrs.get("axis", -1)) % rank
        if rank == 2 and axis != 1 or rank > 4 or rank == 1:
            raise self.unsupported(node, "softmax must be over the last axis of a 2-D, 3-D or "
                                         "4-D tensor")
        if rank > 2 and self.lowered_axis(x, axis, rank) != len(self.tensors[x].shape) - 1:
            raise self.unsupported(node, f"softmax over axis {axis} of a {rank}-D tensor "
                                         "stored channels-last (TFLite's SOFTMAX is over the "
                                         "last axis; softmax over the last ONNX axis)")
        self.define(out, self.src_shape(out))
        if x in self.perm:
            self.perm[out] = self.perm[x]
        self.emit("SOFTMAX", node, [x], out, beta=1.0)

    def _identity(self, node: Node) -> None:
        self.alias[node.outputs[0]] = self.name(node.inputs[0])

    op_Identity = op_Dropout = _identity

    def op_BatchNormalization(self, node: Node) -> None:
        """A BN no layer absorbed (on the input, after a pool): a 1x1 depthwise conv.

        Its per-channel scale and shift are exactly a depthwise conv's weight
        and bias, which every backend has (TFLite has no batch norm builtin).
        """
        rank = len(self.src_shape(node.inputs[0]))
        if rank not in (3, 4) or len(node.outputs) != 1:
            raise self.unsupported(node, "batch norm on a 2-D tensor that does not follow a "
                                         "fully connected layer" if rank == 2 else
                                         "only inference batch norm on 3-D and 4-D tensors")
        affine = bn_affine(self.src, node)
        if affine is None:
            raise self.unsupported(node, "its scale, bias, mean and variance must be constants")
        scale, shift = affine
        x, out = self.name(node.inputs[0]), node.outputs[0]
        self.define(out, self.src_shape(out))
        w = self.const(f"{node.name}/weights", scale.astype(np.float32).reshape(1, 1, 1, -1))
        b = self.const(f"{node.name}/bias", shift.astype(np.float32))
        self.emit("DEPTHWISE_CONV_2D", node, [x, w, b], out, stride_h=1, stride_w=1,
                  dilation_h=1, dilation_w=1, padding="VALID", activation="NONE",
                  depth_multiplier=1)


Lowerer = _Lowerer
"""The lowering context registry lowerings receive (its helpers are their API)."""


def _same_perm(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))


def fuse_activations(graph: Graph, protected: Iterable[str] = ()) -> Graph:
    """Merge RELU/RELU6 into the op before them when nothing else reads its output."""
    keep = set(protected) | set(graph.exits) | {t.name for t in graph.inputs}
    consumers = graph.consumers()
    nodes = list(graph.nodes)
    dropped: set[int] = set()
    tensors = dict(graph.tensors)
    for i, node in enumerate(nodes):
        if node.op_type not in ACTIVATION_OPS:
            continue
        src = node.inputs[0]
        p = graph.producer_index(src)
        if p is None or p in dropped or src in keep or len(consumers.get(src, [])) != 1:
            continue
        producer = nodes[p]
        if producer.op_type not in FUSABLE or producer.attrs.get("activation", "NONE") != "NONE":
            continue
        nodes[p] = Node(producer.name, producer.op_type, producer.inputs, [node.outputs[0]],
                        {**producer.attrs, "activation": ACTIVATION_OPS[node.op_type]})
        tensors.pop(src, None)
        dropped.add(i)
    kept = [n for i, n in enumerate(nodes) if i not in dropped]
    return Graph(name=graph.name, inputs=graph.inputs, exits=graph.exits, nodes=kept,
                 constants=graph.constants, tensors=tensors, opset=graph.opset,
                 ir_version=graph.ir_version, dialect=graph.dialect,
                 const_quant=graph.const_quant)


def lower_to_tflite(graph: Graph, protected: Iterable[str] = ()) -> Graph:
    """ONNX-dialect graph -> float32 TFLite-dialect graph (BN folded, ReLUs fused)."""
    if graph.dialect != "onnx":
        raise ValueError(f"lower_to_tflite expects an onnx-dialect graph, got {graph.dialect}")
    folded = fold_batchnorm(graph)
    lowerer = _Lowerer(folded)
    for info in folded.inputs:
        lowerer.define(info.name, info.shape)
    for node in folded.nodes:
        lowerer.lower(node)
    exits = []
    for name in folded.exits:
        lowered = lowerer.name(name)
        if lowered in lowerer.perm:
            raise UnsupportedOpError(f"exit {name!r} is a flattened channels-first tensor; "
                                     "end each exit with a fully connected layer")
        exits.append(lowered)
    if len(set(exits)) != len(exits):
        raise UnsupportedOpError("two exits are the same tensor after removing identities")
    lowered_graph = Graph(name=graph.name, inputs=[lowerer.tensors[i.name] for i in folded.inputs],
                          exits=exits, nodes=lowerer.nodes, constants=lowerer.constants,
                          tensors=lowerer.tensors, opset=graph.opset,
                          ir_version=graph.ir_version, dialect="tflite")
    return fuse_activations(lowered_graph, protected)
