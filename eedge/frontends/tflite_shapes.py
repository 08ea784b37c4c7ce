"""Shape and type checks of the TFLite reader: each operator's declared output is what it computes.

A file declares every tensor's shape, and eedge's kernels, memory planner and
code generator believe those declarations; LiteRT and TFLM recompute shapes
from the inputs and the options instead. A file where the two disagree (a
stride of 6 on a tensor declared 8 wide, a RESHAPE whose target does not hold
its input's elements) would make the runtimes disagree with each other, or
make a kernel fail deep inside export. So the reader infers each output from
the inputs and options, the way TFLite does, and refuses any mismatch with one
:class:`ModelError` naming the operator.
"""

from __future__ import annotations

import numpy as np

from eedge.errors import ModelError, UnsupportedOpError
from eedge.ir.graph import Node, TensorInfo
from eedge.ops import registry
from eedge.reference.windows import padding_amounts

# ops whose first input is the data and whose output has its type (QUANTIZE and
# DEQUANTIZE change the type; ADD, MUL and CONCATENATION check all inputs)
_SAME_TYPE = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D",
              "MAX_POOL_2D", "MEAN", "RESHAPE", "SOFTMAX", "PAD", "RELU", "RELU6",
              "RELU_N1_TO_1"}
_ALL_INPUTS_TYPED = {"ADD", "MUL", "CONCATENATION"}


def _err(message: str) -> ModelError:
    return ModelError(f"invalid TFLite model: {message}")


def _constant_ints(node: Node, index: int, constants: dict[str, np.ndarray],
                   what: str) -> np.ndarray:
    name = node.inputs[index] if len(node.inputs) > index else ""
    if not name or name not in constants:
        raise UnsupportedOpError(f"{node.name}: {node.op_type} needs a constant {what} "
                                 f"(input {index})")
    value = constants[name]
    if value.dtype.kind != "i":
        raise _err(f"{node.name}: {what} {name!r} must be an integer tensor, not {value.dtype}")
    return value.astype(np.int64)


def _window_output(node: Node, x: tuple[int, ...], kernel: tuple[int, int],
                   dilation: tuple[int, int], channels: int) -> tuple[int, ...]:
    if len(x) != 4:
        raise _err(f"{node.name}: {node.op_type} needs a 4-D NHWC input, got {list(x)}")
    a = node.attrs
    oh, _ = padding_amounts(x[1], kernel[0], a["stride_h"], dilation[0], a["padding"])
    ow, _ = padding_amounts(x[2], kernel[1], a["stride_w"], dilation[1], a["padding"])
    if oh < 1 or ow < 1:
        raise _err(f"{node.name}: a {kernel[0]}x{kernel[1]} window does not fit the "
                   f"{x[1]}x{x[2]} input")
    return (x[0], oh, ow, channels)


def _reshape_output(node: Node, x: tuple[int, ...], constants: dict[str, np.ndarray]
                    ) -> tuple[int, ...]:
    """TFLite resolves the target (one -1 at most); eedge's kernels keep dimension 0 free.

    Both readings must agree, so the batch dimension must stay the batch dimension.
    """
    target = [int(d) for d in _constant_ints(node, 1, constants, "shape").reshape(-1)]
    unknown = [i for i, d in enumerate(target) if d == -1]
    if not target or len(unknown) > 1 or any(d < -1 or d == 0 for d in target):
        raise _err(f"{node.name}: RESHAPE target {target[:8]} is not a valid shape")
    total = int(np.prod(x, dtype=np.int64))
    known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
    if unknown:
        if total % known:
            raise _err(f"{node.name}: RESHAPE target {target[:8]} cannot hold {total} elements")
        target[unknown[0]] = total // known
    if x and target[0] != x[0]:
        raise _err(f"{node.name}: RESHAPE target {target[:8]} changes the batch dimension "
                   f"of {list(x)}")
    return tuple(target)


def _mean_output(node: Node, x: tuple[int, ...], constants: dict[str, np.ndarray]
                 ) -> tuple[int, ...]:
    axes = _constant_ints(node, 1, constants, "axes").reshape(-1)
    if any(not -len(x) <= int(a) < len(x) for a in axes):
        raise _err(f"{node.name}: {node.op_type} axes {axes.tolist()} are out of range for "
                   f"{list(x)}")
    reduced = {int(a) % len(x) for a in axes}
    if node.attrs.get("keep_dims"):
        return tuple(1 if i in reduced else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in reduced)


def _pad_output(node: Node, x: tuple[int, ...], constants: dict[str, np.ndarray]
                ) -> tuple[int, ...]:
    pads = _constant_ints(node, 1, constants, "paddings")
    if pads.shape != (len(x), 2) or np.any(pads < 0) or np.any(pads > (1 << 16)):
        raise _err(f"{node.name}: PAD paddings {pads.tolist()} do not fit input {list(x)} "
                   "(one non-negative [before, after] pair per dimension)")
    return tuple(int(d + b + a) for d, (b, a) in zip(x, pads.tolist()))


def _concat_output(node: Node, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    rank = len(shapes[0])
    axis = int(node.attrs["axis"])
    if not -rank <= axis < rank:
        raise _err(f"{node.name}: CONCATENATION axis {axis} for rank-{rank} inputs")
    axis %= rank
    rest = {s[:axis] + s[axis + 1:] for s in shapes}
    if len({len(s) for s in shapes}) != 1 or len(rest) != 1:
        raise _err(f"{node.name}: CONCATENATION inputs {[list(s) for s in shapes]} differ "
                   f"outside axis {axis}")
    return shapes[0][:axis] + (sum(s[axis] for s in shapes),) + shapes[0][axis + 1:]


def expected_output(node: Node, shapes: list[tuple[int, ...]],
                    constants: dict[str, np.ndarray]) -> tuple[int, ...]:
    """The output shape TFLite would compute for NODE from its input shapes and options."""
    op, a, x = node.op_type, node.attrs, shapes[0]
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(shapes) > 2:
        channels = shapes[1][3] if op == "DEPTHWISE_CONV_2D" else shapes[1][0]
        if shapes[2] != (channels,):
            raise _err(f"{node.name}: bias shape {list(shapes[2])} does not match the "
                       f"{channels} output channels of the weights")
    if op == "CONV_2D":
        w = shapes[1]
        return _window_output(node, x, (w[1], w[2]), (a["dilation_h"], a["dilation_w"]), w[0])
    if op == "DEPTHWISE_CONV_2D":
        w = shapes[1]
        return _window_output(node, x, (w[1], w[2]), (a["dilation_h"], a["dilation_w"]), w[3])
    if op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return _window_output(node, x, (a["filter_h"], a["filter_w"]), (1, 1), x[-1])
    if op == "FULLY_CONNECTED":
        units, depth = shapes[1]
        rows = int(np.prod(x, dtype=np.int64)) // depth
        if a.get("keep_num_dims") and (not x or x[-1] != depth):
            raise _err(f"{node.name}: FULLY_CONNECTED keeps the dimensions of input {list(x)} "
                       f"but its last axis is not the weights' {depth} inputs")
        return x[:-1] + (units,) if a.get("keep_num_dims") else (rows, units)
    if op in ("ADD", "MUL"):
        try:
            return tuple(int(d) for d in np.broadcast_shapes(x, shapes[1]))
        except ValueError:
            raise _err(f"{node.name}: {op} operands {list(x)} and {list(shapes[1])} do not "
                       "broadcast") from None
    if op == "RESHAPE":
        return _reshape_output(node, x, constants)
    if op == "MEAN":
        return _mean_output(node, x, constants)
    if op == "PAD":
        return _pad_output(node, x, constants)
    if op == "CONCATENATION":
        return _concat_output(node, shapes)
    registered = registry.builtin(op)
    if registered is not None:
        return registered.output_shapes(node, shapes, constants)[0]
    return x  # SOFTMAX, RELU*, QUANTIZE, DEQUANTIZE keep the shape


def check_node_shapes(node: Node, tensors: dict[str, TensorInfo],
                      constants: dict[str, np.ndarray]) -> None:
    """The declared output shape and type equal what TFLite computes from the inputs."""
    def info(name: str) -> tuple[tuple[int, ...], str]:
        if name in constants:
            return tuple(constants[name].shape), str(constants[name].dtype)
        return tuple(int(d) for d in tensors[name].shape), tensors[name].dtype

    optional = {2} if node.op_type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") else set()
    missing = [i for i, t in enumerate(node.inputs) if not t and i not in optional]
    if missing:
        raise _err(f"{node.name}: {node.op_type} input {missing[0]} is missing (-1); only a "
                   "bias is optional")
    out_shape, out_type = info(node.outputs[0])
    inputs = [info(t) for t in node.inputs if t]
    data = inputs if node.op_type in _ALL_INPUTS_TYPED else \
        inputs[1:2] if node.op_type == "SPLIT" else inputs[:1]  # SPLIT reads [axis, data]
    registered = registry.builtin(node.op_type)
    same_type = node.op_type in _SAME_TYPE | _ALL_INPUTS_TYPED or (
        registered is not None and registered.same_type)
    if same_type and any(t != out_type for _, t in data):
        raise _err(f"{node.name}: {node.op_type} reads {', '.join(t for _, t in data)} but "
                   f"writes {out_type}")
    if node.op_type == "QUANTIZE" and out_type != "int8":
        raise _err(f"{node.name}: QUANTIZE writes {out_type}; eedge reads int8 quantization")
    if node.op_type == "DEQUANTIZE" and (inputs[0][1] != "int8" or out_type != "float32"):
        raise _err(f"{node.name}: DEQUANTIZE from {inputs[0][1]} to {out_type}; eedge reads "
                   "int8 to float32")
    expected = expected_output(node, [s for s, _ in inputs], constants)
    if tuple(expected) != out_shape:
        raise _err(f"{node.name}: {node.op_type} computes shape {list(expected)} from its "
                   f"inputs and options, but the file declares {list(out_shape)}")
    if registered is not None:  # multi-output ops (SPLIT, UNPACK): every output, one type
        shapes = registered.output_shapes(node, [s for s, _ in inputs], constants)
        if len(shapes) != len(node.outputs):
            raise _err(f"{node.name}: {node.op_type} computes {len(shapes)} outputs, but the "
                       f"file declares {len(node.outputs)}")
        for name, shape in zip(node.outputs[1:], shapes[1:]):
            if info(name) != (tuple(shape), out_type):
                raise _err(f"{node.name}: {node.op_type} computes output {name!r} as "
                           f"{list(shape)} {out_type}, but the file declares "
                           f"{list(info(name)[0])} {info(name)[1]}")
