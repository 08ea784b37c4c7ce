"""Turn a multi-exit ``torch.nn.Module`` into ONNX once, then into the IR.

The contract: ``forward(x)`` returns one logits tensor per exit, in depth
order. The module is exported with torch's dynamo exporter with all exits
as outputs and a symbolic batch dimension, so one file holds the whole
model and every later step (partitioning, quantization) sees every exit.
Dynamo writes absolute source paths into metadata; they are stripped so
exports are reproducible and leak no paths.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from eedge.errors import ModelError

if TYPE_CHECKING:
    import torch


def exit_names(count: int) -> list[str]:
    return [f"exit{i}" for i in range(count)]


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs and warns about things irrelevant to the user."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                              "onnxscript", "torch.fx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def strip_metadata(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove metadata_props and doc strings everywhere (paths, stack traces)."""
    del model.metadata_props[:]
    model.doc_string = ""
    graph = model.graph
    graph.doc_string = ""
    del graph.metadata_props[:]
    for collection in (graph.node, graph.input, graph.output, graph.value_info,
                       graph.initializer):
        for item in collection:
            if hasattr(item, "metadata_props"):
                del item.metadata_props[:]
            if hasattr(item, "doc_string"):
                item.doc_string = ""
    return model


def _as_output_list(outputs: Any) -> list["torch.Tensor"]:
    import torch

    if isinstance(outputs, torch.Tensor):
        outputs = [outputs]
    if not isinstance(outputs, (list, tuple)) or not outputs or not all(
            isinstance(o, torch.Tensor) for o in outputs):
        raise ModelError("the module's forward() must return one logits tensor per exit "
                         f"(a tuple of tensors, earliest exit first); it returned "
                         f"{type(outputs).__name__}")
    for i, out in enumerate(outputs):
        if out.dim() != 2:
            raise ModelError(f"exit {i} returns shape {list(out.shape)}; each exit must "
                             "return (batch, classes) logits")
    return list(outputs)


def torch_to_onnx(module: "torch.nn.Module", example: np.ndarray) -> onnx.ModelProto:
    """Export ``module`` with every exit as an output and a dynamic batch axis.

    ``example`` is one input batch; a batch of one is doubled because the
    exporter specializes size-1 dimensions and would lose the batch symbol.
    """
    import torch

    module = module.eval()
    x = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
    if x.shape[0] == 1:
        x = torch.cat([x, x])
    with torch.no_grad():
        try:
            count = len(_as_output_list(module(x)))
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"running the module on an input of shape {list(x.shape)} "
                             f"failed: {exc}; check --input-shape") from exc
    names = exit_names(count)
    batch = torch.export.Dim("batch")
    errors: list[str] = []
    for dynamic in (True, False):
        try:
            with _quiet_exporter():
                program = torch.onnx.export(
                    module, (x,), dynamo=True, input_names=["input"], output_names=names,
                    dynamic_shapes=({0: batch},) if dynamic else None, verbose=False,
                    optimize=True, report=False)
            model = program.model_proto
            break
        except Exception as exc:  # a module may specialize on the batch size
            errors.append(str(exc).strip().splitlines()[0] if str(exc).strip() else
                          type(exc).__name__)
    else:
        raise ModelError(f"torch could not export the module to ONNX: {errors[-1]}")
    return strip_metadata(model)


def load_module_factory(spec: str) -> "torch.nn.Module":
    """Build a module from ``path/to/file.py:factory`` or ``package.module:factory``.

    This imports *the user's own model code*, the one way a torch model's
    architecture can be given without unpickling data.
    """
    import torch

    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ModelError(f"cannot read {spec!r} as a torch model: write FILE.py:FACTORY or "
                         "MODULE:FACTORY, where FACTORY() returns the nn.Module")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ModelError(f"model definition file {path} does not exist")
        module_spec = importlib.util.spec_from_file_location(f"eedge_user_{path.stem}", path)
        assert module_spec is not None and module_spec.loader is not None
        py_module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = py_module
        module_spec.loader.exec_module(py_module)
    else:
        try:
            py_module = importlib.import_module(target)
        except ImportError as exc:
            raise ModelError(f"cannot import {target!r}: {exc}") from exc
    factory = getattr(py_module, attr, None)
    if not callable(factory):
        raise ModelError(f"{target} has no callable {attr!r}")
    module = factory()
    if not isinstance(module, torch.nn.Module):
        raise ModelError(f"{spec} returned {type(module).__name__}, not a torch.nn.Module")
    return module


def load_weights(module: "torch.nn.Module", path: Path) -> None:
    """Load a state dict safely (``weights_only=True``: no arbitrary unpickling)."""
    import torch

    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"cannot load weights from {path}: {str(exc).splitlines()[0]}; "
                         "save them with torch.save(model.state_dict(), path)") from exc
    if not isinstance(state, dict):
        raise ModelError(f"{path} does not hold a state dict; save "
                         "model.state_dict(), not the model object")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"weights in {path} do not fit the model: "
                         f"{str(exc).splitlines()[0]}") from exc


def torch_outputs(module: "torch.nn.Module", x: np.ndarray) -> Sequence[np.ndarray]:
    """Reference outputs of the torch module, used to check the export."""
    import torch

    with torch.no_grad():
        outs = _as_output_list(module.eval()(torch.from_numpy(
            np.ascontiguousarray(x, dtype=np.float32))))
    return [o.numpy() for o in outs]
