"""The graph IR every frontend produces and every pass and backend consumes.

It is deliberately small: operators keep ONNX names and attribute
conventions (NCHW, ONNX padding) because ONNX is the common ground of all
frontends; backends that need another layout (TFLite's NHWC) translate
when they write. What the IR adds over a raw ``onnx.ModelProto`` is a
static description of every tensor (shape with a symbolic batch dimension,
dtype), constants as numpy arrays, and the ordered list of exits, which is
what partitioning and cost accounting need.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Dim = int | str
"""A tensor dimension: a fixed size, or a symbol (only the batch dimension)."""


@dataclass(frozen=True)
class QuantParams:
    """Affine int quantization: real = scale * (q - zero_point).

    One scale/zero point per tensor, or one per channel along ``axis``
    (weights). Kept as tuples so tensors stay hashable and comparable.
    """

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def to_json(self) -> dict[str, Any]:
        return {"scale": list(self.scale), "zero_point": list(self.zero_point),
                "axis": self.axis}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "QuantParams":
        return cls(tuple(float(s) for s in data["scale"]),
                   tuple(int(z) for z in data["zero_point"]), data.get("axis"))


@dataclass(frozen=True)
class TensorInfo:
    """Name, static shape, element type (and int quantization) of one tensor."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str
    quant: QuantParams | None = None

    @property
    def has_symbolic_batch(self) -> bool:
        return bool(self.shape) and isinstance(self.shape[0], str)

    def elements_per_sample(self) -> int:
        """Element count ignoring the batch dimension (dim 0, or the symbol's axis).

        Inside a model the symbolic batch may sit on any axis (attention
        permutes it, recurrent layers are time-major).
        """
        symbolic = [i for i, d in enumerate(self.shape) if isinstance(d, str)]
        skip = symbolic[0] if symbolic else 0
        dims = [d for i, d in enumerate(self.shape) if i != skip]
        return int(np.prod([int(d) for d in dims], dtype=np.int64)) if dims else 1

    def bytes_per_sample(self) -> int:
        return self.elements_per_sample() * np.dtype(self.dtype).itemsize

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "shape": list(self.shape),
                                "dtype": self.dtype, "bytes_per_sample": self.bytes_per_sample()}
        if self.quant is not None:
            data["quant"] = self.quant.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TensorInfo":
        quant = QuantParams.from_json(data["quant"]) if data.get("quant") else None
        return cls(name=data["name"], shape=tuple(data["shape"]), dtype=data["dtype"],
                   quant=quant)


@dataclass
class Node:
    """One operator application; ``inputs`` may hold ``""`` for omitted optionals."""

    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """A whole multi-exit model: inputs, topologically ordered nodes, exits.

    ``exits`` are output tensor names in depth order (earliest exit first);
    the last one is the final classifier. ``dialect`` says which operator
    set and layout the nodes use: ``"onnx"`` (ONNX names, NCHW) as the
    frontends produce, or ``"tflite"`` (TFLite builtins, NHWC, optionally
    int8) after lowering or when read from a ``.tflite`` file.
    """

    name: str
    inputs: list[TensorInfo]
    exits: list[str]
    nodes: list[Node]
    constants: dict[str, np.ndarray]
    tensors: dict[str, TensorInfo]
    opset: int
    ir_version: int
    dialect: str = "onnx"
    const_quant: dict[str, QuantParams] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reindex()

    def reindex(self) -> None:
        """Rebuild the producer index after a pass edited ``nodes``."""
        self._producer = {out: i for i, n in enumerate(self.nodes) for out in n.outputs}

    def producer_index(self, tensor: str) -> int | None:
        """Index of the node producing ``tensor``; None for inputs and constants."""
        return self._producer.get(tensor)

    def activation_inputs(self, node: Node) -> list[str]:
        """Inputs of ``node`` that are activations (not constants, not omitted)."""
        return [t for t in node.inputs if t and t not in self.constants]

    def ancestors(self, tensors: Iterable[str]) -> set[int]:
        """Indices of every node needed to compute ``tensors``."""
        needed: set[int] = set()
        stack = [t for t in tensors]
        while stack:
            idx = self.producer_index(stack.pop())
            if idx is None or idx in needed:
                continue
            needed.add(idx)
            stack.extend(self.activation_inputs(self.nodes[idx]))
        return needed

    def consumers(self) -> dict[str, list[int]]:
        """Map from tensor name to the indices of nodes that read it."""
        result: dict[str, list[int]] = {}
        for i, node in enumerate(self.nodes):
            for t in self.activation_inputs(node):
                result.setdefault(t, []).append(i)
        return result

    def tensor(self, name: str) -> TensorInfo:
        return self.tensors[name]

    def constants_of(self, node_indices: Sequence[int]) -> list[str]:
        """Constant names used by the given nodes, in first-use order."""
        seen: dict[str, None] = {}
        for i in sorted(node_indices):
            for t in self.nodes[i].inputs:
                if t in self.constants:
                    seen.setdefault(t, None)
        return list(seen)
