"""Write TFLite-dialect graphs (whole, or one stage) as ``.tflite`` flatbuffers.

No TensorFlow: the file is built with the ``flatbuffers`` package and the
TFLite schema's generated object API (shipped with ``tflite-micro``).
Facts the writer relies on (checked against LiteRT and TFLM): buffer 0 is
the empty sentinel and activations point at it; schema version 3 and file
identifier ``TFL3``; both ``builtin_code`` and ``deprecated_builtin_code``
are set; constant data is aligned to 16 bytes (the generated packer aligns
to 1, which breaks int32 bias loads on Cortex-M). The batch dimension is
fixed to 1, as microcontroller runtimes expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flatbuffers
import numpy as np

from eedge import __version__
from eedge.errors import ModelError
from eedge.ir.graph import Graph, QuantParams
from eedge.ops import registry
from eedge.tflite_schema import schema

TENSOR_TYPES = {"float32": schema.TensorType.FLOAT32, "int8": schema.TensorType.INT8,
                "int32": schema.TensorType.INT32, "int64": schema.TensorType.INT64,
                "uint8": schema.TensorType.UINT8, "int16": schema.TensorType.INT16}
ACTIVATIONS = {"NONE": schema.ActivationFunctionType.NONE,
               "RELU": schema.ActivationFunctionType.RELU,
               "RELU6": schema.ActivationFunctionType.RELU6,
               "RELU_N1_TO_1": schema.ActivationFunctionType.RELU_N1_TO_1}
PADDINGS = {"SAME": schema.Padding.SAME, "VALID": schema.Padding.VALID}
INT8_OP_VERSIONS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "ADD": 2,
                    "MUL": 2, "AVERAGE_POOL_2D": 2, "MAX_POOL_2D": 2, "MEAN": 2, "SOFTMAX": 2,
                    "CONCATENATION": 2, "PAD": 2, "RELU": 2, "RELU6": 2, "DEQUANTIZE": 2}
BUFFER_ALIGNMENT = 16


class _AlignedBuffer(schema.BufferT):
    """A BufferT whose data vector starts on a 16-byte boundary."""

    def Pack(self, builder: flatbuffers.Builder) -> int:  # noqa: N802 (generated API name)
        data = None
        if self.data is not None:
            raw = bytes(self.data)
            builder.StartVector(1, len(raw), BUFFER_ALIGNMENT)
            builder.head -= len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            data = builder.EndVector(len(raw))
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


def _set_window(opts: Any, attrs: dict[str, Any]) -> None:
    """Padding and strides, which conv, depthwise conv and pooling options all carry."""
    opts.padding = PADDINGS[attrs["padding"]]
    opts.strideH, opts.strideW = attrs["stride_h"], attrs["stride_w"]


def _options(op: str, attrs: dict[str, Any]) -> tuple[int, Any]:
    o = schema
    act = ACTIVATIONS[attrs.get("activation", "NONE")]
    if op == "CONV_2D":
        opts = o.Conv2DOptionsT()
        _set_window(opts, attrs)
        opts.dilationHFactor, opts.dilationWFactor = attrs["dilation_h"], attrs["dilation_w"]
        opts.fusedActivationFunction = act
        return o.BuiltinOptions.Conv2DOptions, opts
    if op == "DEPTHWISE_CONV_2D":
        opts = o.DepthwiseConv2DOptionsT()
        _set_window(opts, attrs)
        opts.dilationHFactor, opts.dilationWFactor = attrs["dilation_h"], attrs["dilation_w"]
        opts.depthMultiplier = attrs["depth_multiplier"]
        opts.fusedActivationFunction = act
        return o.BuiltinOptions.DepthwiseConv2DOptions, opts
    if op == "FULLY_CONNECTED":
        opts = o.FullyConnectedOptionsT()
        opts.fusedActivationFunction = act
        opts.keepNumDims = bool(attrs.get("keep_num_dims", False))
        return o.BuiltinOptions.FullyConnectedOptions, opts
    if op in ("ADD", "MUL"):
        opts = o.AddOptionsT() if op == "ADD" else o.MulOptionsT()
        opts.fusedActivationFunction = act
        return (o.BuiltinOptions.AddOptions if op == "ADD" else o.BuiltinOptions.MulOptions), opts
    if op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        opts = o.Pool2DOptionsT()
        _set_window(opts, attrs)
        opts.filterHeight, opts.filterWidth = attrs["filter_h"], attrs["filter_w"]
        opts.fusedActivationFunction = act
        return o.BuiltinOptions.Pool2DOptions, opts
    if op == "MEAN":
        opts = o.ReducerOptionsT()
        opts.keepDims = bool(attrs["keep_dims"])
        return o.BuiltinOptions.ReducerOptions, opts
    if op == "RESHAPE":
        return o.BuiltinOptions.NONE, None
    if op == "SOFTMAX":
        opts = o.SoftmaxOptionsT()
        opts.beta = float(attrs.get("beta", 1.0))
        return o.BuiltinOptions.SoftmaxOptions, opts
    if op == "CONCATENATION":
        opts = o.ConcatenationOptionsT()
        opts.axis, opts.fusedActivationFunction = attrs["axis"], act
        return o.BuiltinOptions.ConcatenationOptions, opts
    if op == "PAD":
        return o.BuiltinOptions.PadOptions, o.PadOptionsT()
    if op == "QUANTIZE":
        return o.BuiltinOptions.QuantizeOptions, o.QuantizeOptionsT()
    if op == "DEQUANTIZE":
        return o.BuiltinOptions.DequantizeOptions, o.DequantizeOptionsT()
    if op in ("RELU", "RELU6", "RELU_N1_TO_1"):
        return o.BuiltinOptions.NONE, None
    registered = registry.builtin(op)
    if registered is not None:
        return registered.write_options(attrs)
    raise ModelError(f"the TFLite writer has no encoding for {op}")


def _quantization(params: QuantParams | None) -> Any:
    if params is None:
        return None
    q = schema.QuantizationParametersT()
    q.scale = [float(np.float32(s)) for s in params.scale]
    q.zeroPoint = [int(z) for z in params.zero_point]
    q.quantizedDimension = params.axis or 0
    return q


def graph_to_tflite(graph: Graph, node_indices: Sequence[int], inputs: Sequence[str],
                    outputs: Sequence[str], description: str = "") -> bytes:
    """Serialize the given nodes of a TFLite-dialect graph as one subgraph."""
    if graph.dialect != "tflite":
        raise ModelError("only TFLite-dialect graphs can be written as .tflite")
    order = sorted(node_indices)
    model = schema.ModelT()
    model.version = 3
    model.description = description or f"eedge {__version__}"
    model.buffers = [_AlignedBuffer()]
    tensors: list[Any] = []
    index: dict[str, int] = {}
    # constants with equal bytes share one buffer (legal in TFLite; TFLM and LiteRT read
    # buffers only through tensors, which keep their own type, shape and quantization):
    # an unrolled GRU/LSTM repeats its recurrent weights at every time step
    buffer_of: dict[bytes, int] = {}

    def tensor_index(name: str) -> int:
        if name in index:
            return index[name]
        t = schema.TensorT()
        t.name = name
        if name in graph.constants:
            value = np.ascontiguousarray(graph.constants[name])
            t.shape = list(value.shape)
            t.type = TENSOR_TYPES[value.dtype.name]
            data = value.tobytes()
            if not data or data not in buffer_of:
                buffer = _AlignedBuffer()
                buffer.data = np.frombuffer(data, dtype=np.uint8)
                model.buffers.append(buffer)
                buffer_of[data] = len(model.buffers) - 1
            t.buffer = buffer_of[data] if data else len(model.buffers) - 1
            t.quantization = _quantization(graph.const_quant.get(name))
        else:
            info = graph.tensors[name]
            t.shape = [1 if isinstance(d, str) else int(d) for d in info.shape]
            t.type = TENSOR_TYPES[info.dtype]
            t.buffer = 0
            t.quantization = _quantization(info.quant)
        tensors.append(t)
        index[name] = len(tensors) - 1
        return index[name]

    opcodes: dict[tuple[str, int], int] = {}
    model.operatorCodes = []
    operators = []
    for i in order:
        node = graph.nodes[i]
        quantized = graph.tensors[node.outputs[0]].dtype == "int8"
        registered = registry.builtin(node.op_type)
        int8_version = registered.int8_version if registered is not None else 1
        version = INT8_OP_VERSIONS.get(node.op_type, int8_version) if quantized else 1
        key = (node.op_type, version)
        if key not in opcodes:
            code = schema.OperatorCodeT()
            builtin = getattr(schema.BuiltinOperator, node.op_type)
            code.builtinCode = builtin
            code.deprecatedBuiltinCode = min(builtin, 127)
            code.version = version
            model.operatorCodes.append(code)
            opcodes[key] = len(model.operatorCodes) - 1
        op = schema.OperatorT()
        op.opcodeIndex = opcodes[key]
        op.inputs = [tensor_index(t) if t else -1 for t in node.inputs]
        op.outputs = [tensor_index(t) for t in node.outputs]
        op.builtinOptionsType, op.builtinOptions = _options(node.op_type, node.attrs)
        operators.append(op)
    subgraph = schema.SubGraphT()
    subgraph.inputs = [tensor_index(t) for t in inputs]
    subgraph.outputs = [tensor_index(t) for t in outputs]
    subgraph.operators = operators
    subgraph.tensors = tensors
    subgraph.name = "main"
    model.subgraphs = [subgraph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
