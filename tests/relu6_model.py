"""A TensorFlow-style int8 file with a standalone RELU6 that changes scale.

TFLite Micro clamps such a RELU6 in its input's scale and never
requantizes (a known TFLM bug, see DESIGN.md); LiteRT's reference kernels
and eedge requantize into the output's scale first. The file is written
field by field with the TFLite schema bindings, as a converter would write
it (not through eedge's own writer), so the tests see a foreign file.
"""

from __future__ import annotations

import flatbuffers
import numpy as np

from eedge.tflite_schema import schema as S

INPUT_SHAPE = (1, 4, 4, 1)
RELU6_OUTPUT = "relu6_out"


def _tensor(name: str, shape: list[int], ttype: int, buffer: int = 0,
            scale: list[float] | None = None, zero: list[int] | None = None) -> S.TensorT:
    t = S.TensorT()
    t.name, t.shape, t.type, t.buffer = name, shape, ttype, buffer
    if scale is not None:
        t.quantization = S.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = scale, zero
        t.quantization.quantizedDimension = 0
    return t


def _op(opcode: int, inputs: list[int], outputs: list[int], options_type: int = 0,
        options: object = None) -> S.OperatorT:
    op = S.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, inputs, outputs
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def relu6_model(relu6_scale: float = 6.0 / 255.0, relu6_zero_point: int = -128) -> bytes:
    """CONV_2D -> RELU6 (own output scale) -> RESHAPE -> FULLY_CONNECTED, int8 in and out.

    With the defaults the RELU6 output scale (6/255) differs from its input's
    (0.05), so TFLM's bytes differ from LiteRT's reference kernels' bytes.
    """
    rng = np.random.default_rng(7)
    conv_w = rng.integers(-127, 128, (4, 2, 2, 1), dtype=np.int8)
    conv_b = rng.integers(-400, 400, 4).astype(np.int32)
    fc_w = rng.integers(-127, 128, (3, 36), dtype=np.int8)
    fc_b = np.array([30, -20, 5], np.int32)
    model = S.ModelT()
    model.version = 3
    model.description = "hand-written like a TOCO/MLIR converter output"
    model.buffers = [S.BufferT()]
    for arr in (conv_w, conv_b, fc_w, fc_b, np.array([-1, 36], np.int32)):
        b = S.BufferT()
        b.data = np.frombuffer(arr.tobytes(), np.uint8)
        model.buffers.append(b)
    model.operatorCodes = []
    for builtin, version in ((S.BuiltinOperator.CONV_2D, 3), (S.BuiltinOperator.RELU6, 2),
                             (S.BuiltinOperator.RESHAPE, 1),
                             (S.BuiltinOperator.FULLY_CONNECTED, 4)):
        c = S.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = builtin, builtin, version
        model.operatorCodes.append(c)
    i8, i32 = S.TensorType.INT8, S.TensorType.INT32
    conv_scales = [0.004, 0.006, 0.005, 0.003]
    in_scale, conv_out_scale, fc_w_scale = 0.02, 0.05, 0.004
    tensors = [
        _tensor("x", list(INPUT_SHAPE), i8, 0, [in_scale], [-3]),
        _tensor("conv_w", list(conv_w.shape), i8, 1, conv_scales, [0] * 4),
        _tensor("conv_b", [4], i32, 2, [in_scale * s for s in conv_scales], [0] * 4),
        _tensor("conv_out", [1, 3, 3, 4], i8, 0, [conv_out_scale], [-20]),
        _tensor(RELU6_OUTPUT, [1, 3, 3, 4], i8, 0, [relu6_scale], [relu6_zero_point]),
        _tensor("flat", [1, 36], i8, 0, [relu6_scale], [relu6_zero_point]),
        _tensor("fc_w", list(fc_w.shape), i8, 3, [fc_w_scale], [0]),
        _tensor("fc_b", [3], i32, 4, [relu6_scale * fc_w_scale], [0]),
        _tensor("logits", [1, 3], i8, 0, [0.08], [4]),
        _tensor("shape", [2], i32, 5),
    ]
    conv_opts = S.Conv2DOptionsT()
    conv_opts.padding = S.Padding.VALID
    conv_opts.strideH = conv_opts.strideW = 1
    conv_opts.dilationHFactor = conv_opts.dilationWFactor = 1
    reshape_opts = S.ReshapeOptionsT()
    reshape_opts.newShape = [-1, 36]
    fc_opts = S.FullyConnectedOptionsT()
    graph = S.SubGraphT()
    graph.name = "main"
    graph.tensors, graph.inputs, graph.outputs = tensors, [0], [8]
    graph.operators = [
        _op(0, [0, 1, 2], [3], S.BuiltinOptions.Conv2DOptions, conv_opts),
        _op(1, [3], [4]),
        _op(2, [4, 9], [5], S.BuiltinOptions.ReshapeOptions, reshape_opts),
        _op(3, [5, 6, 7], [8], S.BuiltinOptions.FullyConnectedOptions, fc_opts),
    ]
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def int8_inputs(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, (count,) + INPUT_SHAPE[1:],
                                                dtype=np.int8)
