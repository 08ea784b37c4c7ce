"""One registry of operators: what every path of eedge does with each one.

An operator is only useful when every path supports it: ONNX import,
lowering to TFLite builtins, the float and int8 reference kernels, PTQ, the
TFLite writer and reader, and the C kernels. The older operators keep their
per-path tables (``_Lowerer.op_*``, ``FLOAT_KERNELS``, ``INT8_KERNELS``,
``emit._HANDLERS``...); operators added later are declared here once, with
one field per path, and each path consults the registry when its own table
has no entry. The README's op x path table is derived from both, so
"supported" always means supported end to end (TVM's per-op attribute
registry and hls4ml's per-backend layer templates are the models).

Family modules (:data:`FAMILIES`) register their ops when first imported;
:func:`builtin` and :func:`lowering` import them lazily, so the paths that
import this module do not form import cycles with the family modules (which
import the paths' helpers).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from eedge.ir.graph import Graph, Node, QuantParams

if TYPE_CHECKING:
    from eedge.codegen.emit import EmitContext, Emitted

FAMILIES = ("eedge.ops.activations", "eedge.ops.binary", "eedge.ops.resize",
            "eedge.ops.movement", "eedge.ops.reductions", "eedge.ops.matmul",
            "eedge.ops.sequence_lowering")

Kernel = Callable[[Node, Graph, list[np.ndarray | None]], "np.ndarray | tuple[np.ndarray, ...]"]
"""A reference kernel: one array, or a tuple with one array per output for multi-output ops."""

QuantRule = str | QuantParams
"""``"observed"`` (output params from its calibrated range), ``"shared"`` (inputs and
outputs share one parameter set: ops that move or compare bytes), or fixed
output parameters (LOGISTIC: 1/256, -128)."""


@dataclass(frozen=True)
class Builtin:
    """A TFLite builtin in eedge's TFLite dialect (NHWC), and what each path does with it.

    ``attrs`` of a node are the builtin's options as plain Python values
    (the reader produces them, the writer consumes them).
    """

    name: str
    summary: str
    float_kernel: Kernel
    int8_kernel: Kernel
    emit_c: "Callable[[EmitContext, Node], Emitted]"
    write_options: Callable[[dict[str, Any]], tuple[int, Any]]
    read_options: Callable[[Any], dict[str, Any]]
    output_shapes: Callable[[Node, list[tuple[int, ...]], dict[str, np.ndarray]],
                            list[tuple[int, ...]]]
    """The output shape(s) TFLite computes from input shapes, options and constant inputs."""
    quant: QuantRule = "observed"
    quantize_constants: Callable[..., None] | None = None
    """(graph, node, act_params, constants, const_quant) -> None: int8 forms of constant inputs."""
    derived_multipliers: Callable[[Node, Graph], list[tuple[int, int]]] | None = None
    """Multiplier/shift pairs the int8 kernel derives (the reader checks they are representable)."""
    int8_version: int = 1
    min_inputs: int = 1
    dsp: bool = False
    """Whether the C kernel has a Cortex-M DSP (SIMD) path besides the portable one."""
    in_place: bool = False
    """Whether the C kernel reads element i before writing element i (output may reuse input 0)."""
    same_type: bool = True
    """Whether every data input has the output's type (checked by the reader)."""


@dataclass(frozen=True)
class Lowering:
    """An ONNX operator (NCHW) and how :class:`eedge.passes.lower_tflite._Lowerer` lowers it."""

    onnx_op: str
    summary: str
    lower: Callable[[Any, Node], None]
    """(lowerer, node): emits TFLite-dialect nodes through the lowerer's helpers."""
    builtins: tuple[str, ...]
    """The TFLite builtins it may lower to (for the README's table)."""


def options_table(operator: Any, name: str) -> Any | None:
    """The operator's builtin options read as the schema's ``name`` table (e.g.
    ``"LeakyReluOptions"``), or None when the file stores none or another kind; a
    ``Builtin.read_options`` then applies the schema's defaults or refuses the file."""
    from eedge.tflite_schema import schema

    table = operator.BuiltinOptions()
    if table is None or operator.BuiltinOptionsType() != getattr(schema.BuiltinOptions, name):
        return None
    opts = getattr(schema, name)()
    opts.Init(table.Bytes, table.Pos)
    return opts


_BUILTINS: dict[str, Builtin] = {}
_LOWERINGS: dict[str, Lowering] = {}
_loaded = False


def register_builtin(op: Builtin) -> Builtin:
    if op.name in _BUILTINS:
        raise RuntimeError(f"TFLite builtin {op.name} is registered twice")
    _BUILTINS[op.name] = op
    return op


def register_lowering(op: Lowering) -> Lowering:
    if op.onnx_op in _LOWERINGS:
        raise RuntimeError(f"ONNX operator {op.onnx_op} is registered twice")
    _LOWERINGS[op.onnx_op] = op
    return op


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in FAMILIES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a family that exists but fails to import is a bug
                raise


def builtin(name: str) -> Builtin | None:
    """The registered TFLite builtin ``name``, or None."""
    _load()
    return _BUILTINS.get(name)


def lowering(onnx_op: str) -> Lowering | None:
    """The registered lowering of ONNX operator ``onnx_op``, or None."""
    _load()
    return _LOWERINGS.get(onnx_op)


def builtins() -> dict[str, Builtin]:
    _load()
    return dict(_BUILTINS)


def lowerings() -> dict[str, Lowering]:
    _load()
    return dict(_LOWERINGS)
