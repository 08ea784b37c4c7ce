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
import re
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from eedge.errors import ModelError
from eedge.plain import one_line, plain_text

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
                             f"failed: {one_line(str(exc), 300)}; check --input-shape") from exc
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
            lines = plain_text(str(exc)).strip().splitlines()
            errors.append(lines[0].strip() if lines else type(exc).__name__)
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


# Where training scripts put the state dict inside a checkpoint dict, in the order tried.
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")
# Key prefixes added by wrappers: DataParallel/DistributedDataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
SHOWN_KEYS = 3


def load_weights(module: "torch.nn.Module", path: Path) -> None:
    """Load a state dict safely (``weights_only=True``: no arbitrary unpickling).

    Accepts what training scripts save: a bare state dict, or a checkpoint
    dict holding one (see :data:`CHECKPOINT_KEYS`), with or without a
    DataParallel ``module.`` prefix. Keys are compared before loading so a
    mismatch names the keys instead of torch's multi-line report.
    """
    import torch

    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(_load_failure(path, exc)) from exc
    expected = module.state_dict()
    state = strip_wrapper_prefixes(unwrap_checkpoint(loaded, path), expected)
    problem = describe_mismatch(state, expected)
    if problem:
        raise ModelError(f"weights in {path} do not fit the model: {problem}; save "
                         "model.state_dict() of the architecture the factory builds")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"weights in {path} do not fit the model: "
                         f"{one_line(str(exc), 300)}") from exc


def _load_failure(path: Path, exc: Exception) -> str:
    """One plain line for a failed ``torch.load`` (torch's own text is long and has escapes)."""
    text = plain_text(str(exc))
    refused = re.findall(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return (f"{path} holds pickled Python objects ({', '.join(dict.fromkeys(refused))}), "
                "not a state dict of tensors, and eedge loads weights with weights_only=True: "
                "save them with torch.save(model.state_dict(), path)")
    return (f"cannot load weights from {path}: {one_line(text, 200) or type(exc).__name__}; "
            "save them with torch.save(model.state_dict(), path)")


def _is_state_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and (isinstance(v, torch.Tensor) or k.endswith("_extra_state"))
        for k, v in obj.items())


def unwrap_checkpoint(obj: Any, path: Path) -> dict[str, Any]:
    """The state dict in ``obj``: ``obj`` itself or the one under a checkpoint key."""
    while not _is_state_dict(obj):
        if not isinstance(obj, Mapping):
            raise ModelError(f"{path} holds a {type(obj).__name__}, not a state dict; save "
                             "the weights with torch.save(model.state_dict(), path)")
        key = next((k for k in CHECKPOINT_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            keys = ", ".join(repr(k) for k in list(obj)[:5]) + (", …" if len(obj) > 5 else "")
            raise ModelError(f"{path} holds a dict ({keys or 'empty'}) with no state dict under "
                             f"{', '.join(repr(k) for k in CHECKPOINT_KEYS)}; save "
                             "model.state_dict() or {'state_dict': model.state_dict(), ...}")
        obj = obj[key]
    return dict(obj)


def strip_wrapper_prefixes(state: dict[str, Any], expected: Mapping[str, Any]) -> dict[str, Any]:
    """Drop a prefix every key has and the model's own keys do not (``module.``)."""
    changed = True
    while changed and state:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state) and not any(
                    k.startswith(prefix) for k in expected):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def _few(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f", … {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")


def describe_mismatch(state: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
    """Missing, unexpected and reshaped keys (first few of each, with counts); "" if none."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f"{k} {list(state[k].shape)} vs {list(expected[k].shape)} in the model"
                for k in expected if k in state and hasattr(state[k], "shape")
                and tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) ({_few(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) ({_few(unexpected)})")
    if reshaped:
        parts.append(f"{len(reshaped)} with another shape ({_few(reshaped)})")
    return "; ".join(parts)


def torch_outputs(module: "torch.nn.Module", x: np.ndarray) -> Sequence[np.ndarray]:
    """Reference outputs of the torch module, used to check the export."""
    import torch

    with torch.no_grad():
        outs = _as_output_list(module.eval()(torch.from_numpy(
            np.ascontiguousarray(x, dtype=np.float32))))
    return [o.numpy() for o in outs]
