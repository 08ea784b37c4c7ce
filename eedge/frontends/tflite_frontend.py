"""Read ``.tflite`` files (float32 or int8) into the TFLite-dialect graph IR.

Runtimes accept broken files silently (a wrong weight layout gives wrong
numbers, a bad buffer index crashes), so this reader is also the verifier
for every file eedge reads or writes: structure, indices, buffer sizes,
quantization parameters and bias scales are checked, and anything else is
a :class:`ModelError` naming the problem. It walks the flatbuffer through
the generated accessors with a read budget proportional to the file size,
so crafted files whose offsets alias each other cannot make it loop for
long; any decoding failure (truncated data, offsets out of range) becomes
an error, never a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import ModelError, UnsupportedOpError
from eedge.frontends.ops import TFLITE_ALTERNATIVES, nearest_alternative
from eedge.frontends.tflite_quant import (check_activation_quant, check_quant_params,
                                          check_requantization)
from eedge.frontends.tflite_shapes import check_node_shapes
from eedge.ir.graph import Graph, Node, QuantParams, TensorInfo
from eedge.ops import registry
from eedge.tflite_schema import schema

SUPPORTED_BUILTINS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL",
                      "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "RESHAPE", "SOFTMAX",
                      "CONCATENATION", "PAD", "RELU", "RELU6", "RELU_N1_TO_1", "QUANTIZE",
                      "DEQUANTIZE")
_BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
_TYPES = {schema.TensorType.FLOAT32: "float32", schema.TensorType.INT8: "int8",
          schema.TensorType.INT32: "int32", schema.TensorType.INT64: "int64"}
_ACTIVATIONS = {v: k for k, v in vars(schema.ActivationFunctionType).items()
                if not k.startswith("_")}
_PADDINGS = {schema.Padding.SAME: "SAME", schema.Padding.VALID: "VALID"}
MAX_FILE_BYTES = 256 << 20


class _Budget:
    """Counts element reads; a valid file needs about one read per few bytes."""

    def __init__(self, size: int) -> None:
        self.left = 4 * size + 10_000

    def spend(self, count: int = 1) -> None:
        self.left -= max(count, 1)
        if self.left < 0:
            raise ModelError("malformed TFLite file: its tables reference each other far more "
                             "often than a valid model does")


def _err(message: str) -> ModelError:
    return ModelError(f"invalid TFLite model: {message}")


def _vector(getter_len: Any, getter_np: Any, budget: _Budget) -> np.ndarray:
    length = getter_len()
    budget.spend(length)
    value = getter_np()
    return np.asarray(value).reshape(-1) if not isinstance(value, int) else np.zeros(0)


def _options(op_name: str, operator: Any) -> dict[str, Any]:
    def load(name: str) -> Any:
        return registry.options_table(operator, name)

    if op_name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        opts = load("Conv2DOptions" if op_name == "CONV_2D" else "DepthwiseConv2DOptions")
        if opts is None:
            raise _err(f"{op_name} without its options")
        attrs = {"stride_h": opts.StrideH(), "stride_w": opts.StrideW(),
                 "dilation_h": opts.DilationHFactor(), "dilation_w": opts.DilationWFactor(),
                 "padding": _PADDINGS.get(opts.Padding()),
                 "activation": _ACTIVATIONS.get(opts.FusedActivationFunction())}
        if op_name == "DEPTHWISE_CONV_2D":
            attrs["depth_multiplier"] = opts.DepthMultiplier()
        return attrs
    if op_name == "FULLY_CONNECTED":
        opts = load("FullyConnectedOptions")
        if opts is not None and opts.WeightsFormat() != 0:
            raise UnsupportedOpError("FULLY_CONNECTED with shuffled weights is not supported")
        return {"activation": _ACTIVATIONS.get(opts.FusedActivationFunction() if opts else 0),
                "keep_num_dims": bool(opts.KeepNumDims()) if opts else False}
    if op_name in ("ADD", "MUL"):
        opts = load("AddOptions" if op_name == "ADD" else "MulOptions")
        return {"activation": _ACTIVATIONS.get(opts.FusedActivationFunction() if opts else 0)}
    if op_name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        opts = load("Pool2DOptions")
        if opts is None:
            raise _err(f"{op_name} without its options")
        return {"filter_h": opts.FilterHeight(), "filter_w": opts.FilterWidth(),
                "stride_h": opts.StrideH(), "stride_w": opts.StrideW(),
                "padding": _PADDINGS.get(opts.Padding()),
                "activation": _ACTIVATIONS.get(opts.FusedActivationFunction())}
    if op_name == "MEAN":
        opts = load("ReducerOptions")
        return {"keep_dims": int(bool(opts.KeepDims())) if opts else 0}
    if op_name == "SOFTMAX":
        opts = load("SoftmaxOptions")
        return {"beta": float(opts.Beta()) if opts else 1.0}
    if op_name == "CONCATENATION":
        opts = load("ConcatenationOptions")
        if opts is None:
            raise _err("CONCATENATION without its options")
        return {"axis": opts.Axis(), "activation": _ACTIVATIONS.get(opts.FusedActivationFunction())}
    registered = registry.builtin(op_name)
    if registered is not None:
        return registered.read_options(operator)
    return {}


def _check_attrs(op_name: str, attrs: dict[str, Any], where: str) -> None:
    for key, value in attrs.items():
        if value is None:
            raise _err(f"{where}: unknown value for {key}")
        if key.startswith(("stride", "dilation", "filter", "depth_multiplier")) and \
                (not isinstance(value, int) or value < 1 or value > 4096):
            raise _err(f"{where}: {key} = {value} is out of range")
    if attrs.get("activation") not in (None, "NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
        raise UnsupportedOpError(f"{where}: fused activation {attrs['activation']} is not "
                                 "supported")
    del op_name


def read_tflite_bytes(data: bytes, name: str = "model") -> tuple[Graph, list[str]]:
    """Parse and validate a TFLite flatbuffer; returns the graph and its outputs."""
    if len(data) > MAX_FILE_BYTES:
        raise ModelError(f"TFLite file is {len(data)} bytes; the limit is {MAX_FILE_BYTES}")
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError("not a TFLite flatbuffer (file identifier TFL3 missing)")
    try:
        return _read(bytearray(data), name)
    except ModelError:
        raise
    except RecursionError as exc:
        raise _err("nesting too deep") from exc
    except Exception as exc:  # struct.error, IndexError, ValueError from bad offsets
        raise ModelError(f"malformed TFLite file ({type(exc).__name__}: {exc}); the file is "
                         "truncated or corrupted") from exc


def _read(buf: bytearray, name: str) -> tuple[Graph, list[str]]:
    budget = _Budget(len(buf))
    model = schema.Model.GetRootAs(buf, 0)
    if model.Version() != 3:
        raise UnsupportedOpError(f"TFLite schema version {model.Version()} is not supported "
                                 "(eedge reads version 3)")
    if model.SubgraphsLength() != 1:
        raise UnsupportedOpError(f"the model has {model.SubgraphsLength()} subgraphs; eedge "
                                 "reads single-subgraph models")
    opcodes = []
    budget.spend(model.OperatorCodesLength())
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        opcodes.append(_BUILTIN_NAMES.get(builtin, f"builtin {builtin}"))
    n_buffers = model.BuffersLength()
    budget.spend(n_buffers)
    graph = model.Subgraphs(0)
    n_tensors = graph.TensorsLength()
    budget.spend(n_tensors)
    tensors: dict[str, TensorInfo] = {}
    constants: dict[str, np.ndarray] = {}
    const_quant: dict[str, QuantParams] = {}
    names: list[str] = []
    for i in range(n_tensors):
        t = graph.Tensors(i)
        raw_name = t.Name()
        tname = raw_name.decode("utf-8", "replace") if raw_name else f"tensor{i}"
        if any(ord(c) < 32 or ord(c) == 127 for c in tname) or len(tname) > 1024:
            raise _err(f"tensor {i} has a name with control characters or over 1024 "
                       f"characters ({tname[:40]!r}); rename it")
        if tname in tensors or tname in constants:
            tname = f"{tname}#{i}"
        names.append(tname)
        shape = [int(d) for d in _vector(t.ShapeLength, t.ShapeAsNumpy, budget)]
        if len(shape) > 5 or any(d < 1 or d > (1 << 24) for d in shape):
            raise _err(f"tensor {tname!r} has shape {shape}")
        dtype = _TYPES.get(t.Type())
        if dtype is None:
            raise UnsupportedOpError(f"tensor {tname!r} has type {t.Type()}; eedge reads "
                                     "float32, int8, int32 and int64 tensors")
        quant = _quant(t, tname, shape, dtype, budget)
        buffer_index = t.Buffer()
        if not 0 <= buffer_index < max(n_buffers, 1):
            raise _err(f"tensor {tname!r} points at buffer {buffer_index} of {n_buffers}")
        data = None
        if buffer_index > 0:
            buffer = model.Buffers(buffer_index)
            if buffer.Offset() > 1 or buffer.Size() > 0:
                raise UnsupportedOpError("TFLite files with external buffers are not supported")
            if buffer.DataLength() > 0:
                budget.spend(buffer.DataLength() // 64)
                data = buffer.DataAsNumpy()
        if data is not None:
            expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            if data.size != expected:
                raise _err(f"constant {tname!r} has {data.size} bytes of data; shape {shape} "
                           f"{dtype} needs {expected}")
            constants[tname] = np.frombuffer(data.tobytes(), dtype=dtype).reshape(shape)
            if quant is not None:
                const_quant[tname] = quant
        else:
            if dtype == "int8" and quant is None:
                raise _err(f"int8 tensor {tname!r} has no quantization parameters")
            if quant is not None:
                check_activation_quant(tname, quant.scale)
            tensors[tname] = TensorInfo(tname, tuple(shape), dtype, quant)

    def tensor_name(index: int, where: str) -> str:
        if not 0 <= index < n_tensors:
            raise _err(f"{where} refers to tensor {index}, but there are {n_tensors}")
        return names[index]

    inputs = [tensor_name(int(i), "subgraph input")
              for i in _vector(graph.InputsLength, graph.InputsAsNumpy, budget)]
    outputs = [tensor_name(int(i), "subgraph output")
               for i in _vector(graph.OutputsLength, graph.OutputsAsNumpy, budget)]
    if not inputs or not outputs:
        raise _err("the subgraph declares no inputs or no outputs")
    exits = _signature_order(model, outputs, names, budget)
    nodes: list[Node] = []
    produced = set(inputs)
    budget.spend(graph.OperatorsLength())
    for i in range(graph.OperatorsLength()):
        operator = graph.Operators(i)
        code_index = operator.OpcodeIndex()
        if not 0 <= code_index < len(opcodes):
            raise _err(f"operator {i} uses operator code {code_index} of {len(opcodes)}")
        op_name = opcodes[code_index]
        where = f"operator {i} ({op_name})"
        if op_name not in SUPPORTED_BUILTINS and registry.builtin(op_name) is None:
            supported = list(SUPPORTED_BUILTINS) + sorted(registry.builtins())
            advice = nearest_alternative(op_name, supported, TFLITE_ALTERNATIVES)
            raise UnsupportedOpError(f"unsupported TFLite operator {op_name} ({where}); "
                                     f"{advice}")
        op_inputs = ["" if int(j) == -1 else tensor_name(int(j), where)
                     for j in _vector(operator.InputsLength, operator.InputsAsNumpy, budget)]
        op_outputs = [tensor_name(int(j), where)
                      for j in _vector(operator.OutputsLength, operator.OutputsAsNumpy, budget)]
        multi_output = registry.builtin(op_name) is not None  # SPLIT...: shapes check counts
        if (not op_outputs or (len(op_outputs) != 1 and not multi_output)
                or any(t in constants for t in op_outputs)
                or len(set(op_outputs)) != len(op_outputs)):
            raise _err(f"{where} must produce exactly one activation tensor" if not multi_output
                       else f"{where} must produce distinct activation tensors")
        for t in op_inputs:
            if t and t not in constants and t not in produced:
                raise _err(f"{where} reads {t!r} before it is computed")
        for t in op_outputs:
            if t in produced:
                raise _err(f"{where} writes {t!r}, which is already computed")
        attrs = _options(op_name, operator)
        _check_attrs(op_name, attrs, where)
        node = Node(f"{op_name.lower()}_{i}", op_name, op_inputs, op_outputs, attrs)
        _check_node(node, tensors, constants, const_quant)
        nodes.append(node)
        produced.update(op_outputs)
    for t in outputs:
        if t not in produced or t in inputs:
            raise _err(f"subgraph output {t!r} is not computed by any operator")
    for t in inputs:
        if t in constants:
            raise _err(f"subgraph input {t!r} is a constant")
    result = Graph(name=name, inputs=[tensors[t] for t in inputs], exits=exits,
                   nodes=nodes, constants=constants, tensors=tensors, opset=0, ir_version=0,
                   dialect="tflite", const_quant=const_quant)
    check_requantization(result)
    return result, outputs


def _signature_order(model: Any, outputs: list[str], names: list[str],
                     budget: _Budget) -> list[str]:
    """The outputs in the order of the file's serving signature, when it names all of them.

    TensorFlow's converter lists a multi-output subgraph's outputs in its own
    order (a Keras model with an early exit and a final classifier comes out
    final first); the SignatureDef keeps the model's order (``output_0``,
    ``output_1``...), which is the order the user wrote the exits in.
    """
    if model.SignatureDefsLength() != 1 or len(outputs) < 2:
        return outputs
    signature = model.SignatureDefs(0)
    budget.spend(signature.OutputsLength())
    entries = []
    for j in range(signature.OutputsLength()):
        entry = signature.Outputs(j)
        index = entry.TensorIndex()
        if not 0 <= index < len(names):
            return outputs
        key = (entry.Name() or b"").decode("utf-8", "replace")
        digits = "".join(ch for ch in key if ch.isdigit())
        entries.append((int(digits) if digits and len(digits) < 9 else j, key, names[index]))
    ordered = [name for _, _, name in sorted(entries)]
    return ordered if sorted(ordered) == sorted(outputs) else outputs


def _quant(t: Any, tname: str, shape: list[int], dtype: str,
           budget: _Budget) -> QuantParams | None:
    q = t.Quantization()
    if q is None or q.ScaleLength() == 0:
        return None
    scales = _vector(q.ScaleLength, q.ScaleAsNumpy, budget).astype(np.float64)
    zero_points = _vector(q.ZeroPointLength, q.ZeroPointAsNumpy, budget).astype(np.int64)
    axis = int(q.QuantizedDimension())
    if len(scales) != len(zero_points):
        raise _err(f"tensor {tname!r} has {len(scales)} scales but {len(zero_points)} zero points")
    check_quant_params(tname, dtype, scales, zero_points)
    if len(scales) > 1:
        if not 0 <= axis < len(shape) or shape[axis] != len(scales):
            raise _err(f"tensor {tname!r}: {len(scales)} scales do not match dimension {axis} "
                       f"of shape {shape}")
        return QuantParams(tuple(float(s) for s in scales), tuple(int(z) for z in zero_points),
                           axis)
    return QuantParams((float(scales[0]),), (int(zero_points[0]),))


def _shape_of(name: str, tensors: dict[str, TensorInfo], constants: dict[str, np.ndarray]
              ) -> tuple[int, ...]:
    if name in constants:
        return tuple(constants[name].shape)
    return tuple(int(d) for d in tensors[name].shape)


def _check_node(node: Node, tensors: dict[str, TensorInfo], constants: dict[str, np.ndarray],
                const_quant: dict[str, QuantParams]) -> None:
    """Semantic checks runtimes skip: layouts, types, bias scales."""
    op = node.op_type
    where = f"{node.name}"
    minimum = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "ADD": 2, "MUL": 2,
               "MEAN": 2, "RESHAPE": 1, "PAD": 2, "CONCATENATION": 1}.get(op, 1)
    if (registered := registry.builtin(op)) is not None:
        minimum = registered.min_inputs
    if len(node.inputs) < minimum or not node.inputs[0]:
        raise _err(f"{where} has {len(node.inputs)} inputs; it needs at least {minimum}")
    for t in node.inputs:
        if t and t not in tensors and t not in constants:
            raise _err(f"{where} reads unknown tensor {t!r}")
    out = tensors[node.outputs[0]]
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        w = node.inputs[1]
        if w not in constants:
            raise UnsupportedOpError(f"{where}: non-constant weights are not supported")
        w_shape = constants[w].shape
        x_shape = _shape_of(node.inputs[0], tensors, constants)
        if op == "FULLY_CONNECTED":
            if len(w_shape) != 2 or int(np.prod(x_shape)) % w_shape[1] != 0 or \
                    out.shape[-1] != w_shape[0]:
                raise _err(f"{where}: weights {list(w_shape)} do not fit input {list(x_shape)} "
                           f"and output {list(out.shape)} (FULLY_CONNECTED weights are "
                           "[out, in])")
        else:
            if len(w_shape) != 4 or len(x_shape) != 4 or len(out.shape) != 4:
                raise _err(f"{where}: convolution tensors must be 4-D NHWC")
            if op == "CONV_2D" and (w_shape[3] != x_shape[3] or w_shape[0] != out.shape[3]):
                raise _err(f"{where}: weights {list(w_shape)} (OHWI) do not fit input "
                           f"{list(x_shape)} and output {list(out.shape)}")
            if op == "DEPTHWISE_CONV_2D" and (
                    w_shape[0] != 1 or w_shape[3] != out.shape[3] or
                    w_shape[3] != x_shape[3] * node.attrs["depth_multiplier"]):
                raise _err(f"{where}: depthwise weights {list(w_shape)} do not fit input "
                           f"{list(x_shape)} and output {list(out.shape)}")
        if out.dtype == "int8":
            _check_int8_weights(node, tensors, constants, const_quant)
    if op in ("ADD", "MUL") and len(node.inputs) != 2:
        raise _err(f"{where} needs exactly two inputs")
    check_node_shapes(node, tensors, constants)


def _check_int8_weights(node: Node, tensors: dict[str, TensorInfo],
                        constants: dict[str, np.ndarray],
                        const_quant: dict[str, QuantParams]) -> None:
    where = node.name
    w, x, out = node.inputs[1], node.inputs[0], node.outputs[0]
    if constants[w].dtype != np.int8 or w not in const_quant:
        raise UnsupportedOpError(f"{where}: int8 layers need int8 weights with quantization "
                                 "parameters (hybrid models are not supported)")
    in_q = tensors[x].quant if x in tensors else None
    out_q = tensors[out].quant
    if in_q is None or out_q is None:
        raise _err(f"{where}: int8 input and output need quantization parameters")
    w_q = const_quant[w]
    if len(node.inputs) > 2 and node.inputs[2]:
        b = node.inputs[2]
        if b not in constants or constants[b].dtype != np.int32 or b not in const_quant:
            raise _err(f"{where}: the bias must be a constant int32 tensor with a scale")
        b_scales = np.asarray(const_quant[b].scale)
        expected = in_q.scale[0] * np.asarray(w_q.scale)
        if b_scales.size not in (1, expected.size) and expected.size != 1:
            raise _err(f"{where}: bias has {b_scales.size} scales for {expected.size} channels")
        if np.any(np.abs(expected - b_scales) / out_q.scale[0] > 0.02):
            raise _err(f"{where}: bias scale does not equal input scale x weight scale")


def _check_litert_loads(data: bytes, path: Path) -> None:
    """A user's file must also load in LiteRT (its flatbuffer verifier and Prepare).

    eedge's reader walks only the fields it uses; LiteRT verifies the whole
    buffer (names, metadata, signatures) and every operator's Prepare. Export
    keeps the file as the bundle's reference model, so a file LiteRT rejects is
    refused here, as a model error, before anything is written.
    """
    from eedge.errors import BundleError
    from eedge.runtime.interpreters import litert_interpreter

    try:
        litert_interpreter(data)
    except BundleError as exc:
        raise ModelError(f"{path.name}: {exc}; the file is corrupted or uses features eedge "
                         "does not read") from None


def load_tflite(path: Path, exits: Sequence[str] | None = None) -> tuple[Graph, bytes]:
    """Read a .tflite file; ``exits`` (tensor names) adds early exits before the outputs.

    Returns the graph and the whole-model reference: the file itself, or, when the
    exits are not the file's outputs in its order (``exits`` given, or the serving
    signature orders them differently), the graph written again with its exits as
    outputs, so exit k of the reference is exit k of the graph.
    """
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; check the path")
    data = path.read_bytes()
    graph, outputs = read_tflite_bytes(data, name=path.stem)
    _check_litert_loads(data, path)
    for name in outputs:
        if len(graph.tensors[name].shape) != 2:
            raise ModelError(f"output {name[:80]!r} of {path.name} has shape "
                             f"{list(graph.tensors[name].shape)}; the outputs of a .tflite "
                             "model are its exits: (batch, classes) logits")
    if exits:
        unknown = [e for e in exits if e not in graph.tensors]
        if unknown:
            raise ModelError(f"--exits names {', '.join(unknown)}, which are not tensors of the "
                             "model; list tensor names with `eedge inspect`")
        for e in exits:
            if len(graph.tensors[e].shape) != 2:
                raise ModelError(f"--exits names {e!r} with shape {list(graph.tensors[e].shape)}; "
                                 "an exit must be (batch, classes) logits")
        ordered = list(exits) + [o for o in graph.exits if o not in exits]
        graph = Graph(name=graph.name, inputs=graph.inputs, exits=ordered, nodes=graph.nodes,
                      constants=graph.constants, tensors=graph.tensors, opset=0, ir_version=0,
                      dialect="tflite", const_quant=graph.const_quant)
    if graph.exits == list(outputs):
        return graph, data
    from eedge.backends.tflite_writer import graph_to_tflite

    return graph, graph_to_tflite(graph, range(len(graph.nodes)),
                                  [i.name for i in graph.inputs], graph.exits,
                                  f"eedge {graph.name} (exits of {path.name} in exit order)")
