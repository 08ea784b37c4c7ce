"""Post-training int8 quantization of the whole multi-exit graph, TFLite's spec.

The whole graph is quantized once, before it is cut into stages, so every
hand-off tensor has one scale and zero point that its producer and its
consumers agree on; that is what makes the staged int8 cascade equal the
monolithic int8 model byte for byte.

Spec followed: activations int8 asymmetric per tensor (range nudged to
contain 0); conv and depthwise weights int8 symmetric per output channel;
fully connected weights int8 symmetric per tensor (supported by every
TFLite and TFLM kernel version); biases int32 at scale s_in * s_w.
Operators that only move bytes (reshape, pooling, pad, concatenation,
standalone ReLU) share one parameter set across their inputs and output,
so no kernel needs to requantize and TFLM's and LiteRT's variants agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from eedge.errors import InputDataError, ModelError
from eedge.ir.graph import Graph, Node, QuantParams, TensorInfo
from eedge.ops import registry
from eedge.reference.executor import execute
from eedge.reference.fixedpoint import round_half_away

SHARED_PARAM_OPS = frozenset({"RESHAPE", "MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD",
                              "CONCATENATION", "RELU", "RELU6", "RELU_N1_TO_1"})
SOFTMAX_OUTPUT = QuantParams((float(np.float32(1.0 / 256)),), (-128,))
OBSERVERS = ("minmax", "percentile")
_MAX_SAMPLES_PER_TENSOR = 200_000


@dataclass
class TensorRange:
    low: float
    high: float


def observe_ranges(graph: Graph, batches: Iterable[Mapping[str, np.ndarray]],
                   observer: str = "minmax", percentile: float = 99.99
                   ) -> dict[str, TensorRange]:
    """Run the float graph on calibration batches and record every tensor's range."""
    if observer not in OBSERVERS:
        raise InputDataError(f"unknown observer {observer!r}; use one of {', '.join(OBSERVERS)}")
    lows: dict[str, float] = {}
    highs: dict[str, float] = {}
    samples: dict[str, list[np.ndarray]] = {}
    rng = np.random.default_rng(0)
    seen = 0
    for feeds in batches:
        seen += 1
        env = execute(graph, feeds)
        for name, value in env.items():
            if name not in graph.tensors or value.size == 0:
                continue
            flat = value.reshape(-1).astype(np.float64)
            if not np.all(np.isfinite(flat)):
                raise InputDataError(f"tensor {name!r} is not finite on the calibration data; "
                                     "check the inputs")
            lows[name] = min(lows.get(name, np.inf), float(flat.min()))
            highs[name] = max(highs.get(name, -np.inf), float(flat.max()))
            if observer == "percentile":
                if flat.size > _MAX_SAMPLES_PER_TENSOR:
                    flat = rng.choice(flat, _MAX_SAMPLES_PER_TENSOR, replace=False)
                samples.setdefault(name, []).append(flat)
    if not seen:
        raise InputDataError("no calibration data: give at least one sample")
    if observer == "percentile":
        for name, parts in samples.items():
            values = np.concatenate(parts)
            lows[name] = float(np.percentile(values, 100.0 - percentile))
            highs[name] = float(np.percentile(values, percentile))
    return {name: TensorRange(lows[name], highs[name]) for name in lows}


def affine_params(low: float, high: float) -> QuantParams:
    """int8 asymmetric parameters whose range contains 0 (so 0.0 is exact)."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high - low < 1e-8:
        high = low + 1e-8
    scale = float(np.float32((high - low) / 255.0))
    zero_point = int(np.clip(round_half_away(-128.0 - low / scale), -128, 127))
    return QuantParams((scale,), (zero_point,))


def symmetric_weights(weight: np.ndarray, axis: int | None) -> tuple[np.ndarray, QuantParams]:
    """int8 symmetric weights (range [-127, 127]); per channel along ``axis``."""
    w = weight.astype(np.float64)
    if axis is None:
        peak = np.array([np.abs(w).max()])
    else:
        peak = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    q = np.clip(round_half_away(w / scales.astype(np.float64).reshape(shape)), -127, 127)
    params = QuantParams(tuple(float(s) for s in scales), (0,) * len(scales), axis)
    return q.astype(np.int8), params


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def activation_params(graph: Graph, ranges: Mapping[str, TensorRange]) -> dict[str, QuantParams]:
    """One parameter set per activation tensor, honouring the shared-params ops."""
    groups = _UnionFind()
    for node in graph.nodes:
        op = registry.builtin(node.op_type)
        if node.op_type in SHARED_PARAM_OPS or (op is not None and op.quant == "shared"):
            for t in graph.activation_inputs(node) + node.outputs[1:]:
                groups.union(t, node.outputs[0])
    fixed: dict[str, QuantParams] = {}
    for node in graph.nodes:
        op = registry.builtin(node.op_type)
        if node.op_type == "SOFTMAX":
            fixed[groups.find(node.outputs[0])] = SOFTMAX_OUTPUT
        elif op is not None and isinstance(op.quant, QuantParams):
            for out in node.outputs:
                fixed[groups.find(out)] = op.quant
    merged: dict[str, TensorRange] = {}
    for name in graph.tensors:
        if name not in ranges:
            raise ModelError(f"tensor {name!r} was never computed during calibration")
        root = groups.find(name)
        r = ranges[name]
        if root in merged:
            merged[root] = TensorRange(min(merged[root].low, r.low), max(merged[root].high, r.high))
        else:
            merged[root] = TensorRange(r.low, r.high)
    params: dict[str, QuantParams] = {}
    for name in graph.tensors:
        root = groups.find(name)
        params[name] = fixed.get(root) or affine_params(merged[root].low, merged[root].high)
    return params


def quantize_graph(graph: Graph, ranges: Mapping[str, TensorRange]) -> Graph:
    """Float TFLite-dialect graph + observed ranges -> int8 TFLite-dialect graph."""
    if graph.dialect != "tflite":
        raise ModelError("quantize a lowered (TFLite-dialect) graph")
    act = activation_params(graph, ranges)
    constants: dict[str, np.ndarray] = {}
    const_quant: dict[str, QuantParams] = {}
    for node in graph.nodes:
        _quantize_constants(graph, node, act, constants, const_quant)
    for name, value in graph.constants.items():
        constants.setdefault(name, value)
    tensors = {name: TensorInfo(name, info.shape, "int8", act[name])
               for name, info in graph.tensors.items()}
    return Graph(name=graph.name, inputs=[tensors[i.name] for i in graph.inputs],
                 exits=list(graph.exits), nodes=[Node(n.name, n.op_type, list(n.inputs),
                                                      list(n.outputs), dict(n.attrs))
                                                 for n in graph.nodes],
                 constants=constants, tensors=tensors, opset=graph.opset,
                 ir_version=graph.ir_version, dialect="tflite", const_quant=const_quant)


def _quantize_constants(graph: Graph, node: Node, act: Mapping[str, QuantParams],
                        constants: dict[str, np.ndarray],
                        const_quant: dict[str, QuantParams]) -> None:
    op = node.op_type
    registered = registry.builtin(op)
    if registered is not None:
        if registered.quantize_constants is not None:
            registered.quantize_constants(graph, node, act, constants, const_quant)
        return
    if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        axis = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": None}[op]
        w_name, b_name = node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else ""
        if w_name in constants:
            raise ModelError(f"weights {w_name!r} are shared by two layers; eedge quantizes "
                             "each layer's weights on their own")
        q, wq = symmetric_weights(graph.constants[w_name], axis)
        constants[w_name], const_quant[w_name] = q, wq
        if b_name:
            s_in = np.float32(act[node.inputs[0]].scale[0])
            bias_scales = (s_in * np.asarray(wq.scale, np.float32)).astype(np.float32)
            bias = graph.constants[b_name].astype(np.float64)
            qb = np.clip(round_half_away(bias / bias_scales.astype(np.float64)),
                         -(1 << 31), (1 << 31) - 1).astype(np.int32)
            constants[b_name] = qb
            const_quant[b_name] = QuantParams(tuple(float(s) for s in bias_scales),
                                              (0,) * bias_scales.size,
                                              0 if axis is not None else None)
    elif op in ("ADD", "MUL"):
        for t in node.inputs:
            if t in graph.constants and t not in constants:
                value = graph.constants[t].astype(np.float64)
                params = affine_params(float(value.min()), float(value.max()))
                q = np.clip(round_half_away(value / params.scale[0]) + params.zero_point[0],
                            -128, 127)
                constants[t], const_quant[t] = q.astype(np.int8), params
