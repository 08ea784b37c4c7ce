"""Torch frontend: one ONNX export with every exit, path-free, deterministic."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import exported_onnx
from zoo import build_torch, example_input

from eedge.backends.onnx_writer import serialize
from eedge.errors import ModelError
from eedge.frontends.torch_frontend import (load_module_factory, load_weights, torch_outputs,
                                            torch_to_onnx)


def test_export_has_every_exit_and_a_batch_symbol() -> None:
    model = exported_onnx("sequential")
    assert [o.name for o in model.graph.output] == ["exit0", "exit1", "exit2"]
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param, "the batch dimension must stay symbolic"


def test_export_is_path_free_and_reproducible() -> None:
    first = serialize(torch_to_onnx(build_torch("residual"), example_input()))
    second = serialize(torch_to_onnx(build_torch("residual"), example_input()))
    assert first == second
    assert os.getcwd().encode() not in first
    assert b".py" not in first, "source file names leaked into the ONNX file"


def test_forward_must_return_logits_per_exit() -> None:
    class Bad(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> dict:
            return {"a": x}

    with pytest.raises(ModelError, match="one logits tensor per exit"):
        torch_to_onnx(Bad(), example_input())

    class NotLogits(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(ModelError, match=r"\(batch, classes\)"):
        torch_to_onnx(NotLogits(), example_input())


def test_wrong_input_shape_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="--input-shape"):
        torch_to_onnx(build_torch("sequential"), np.zeros((2, 5, 8, 8), np.float32))


def test_factory_from_file_and_safe_weights(tmp_path: Path) -> None:
    source = tmp_path / "mynet.py"
    source.write_text("import torch\n"
                      "def make():\n"
                      "    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))\n")
    module = load_module_factory(f"{source}:make")
    weights = tmp_path / "w.pt"
    torch.save({k: torch.ones_like(v) for k, v in module.state_dict().items()}, weights)
    load_weights(module, weights)
    out = torch_outputs(module, np.ones((1, 2, 2), np.float32))
    assert np.allclose(out[0], 5.0)


def test_weights_that_do_not_fit_or_are_pickled_objects(tmp_path: Path) -> None:
    module = torch.nn.Linear(4, 3)
    wrong = tmp_path / "wrong.pt"
    torch.save({"weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(ModelError, match="do not fit"):
        load_weights(module, wrong)
    whole = tmp_path / "whole.pt"
    torch.save(module, whole)  # a pickled module object, not a state dict
    with pytest.raises(ModelError, match="cannot load weights|state dict"):
        load_weights(module, whole)


@pytest.mark.parametrize("spec, message", [
    ("nofactory", "FILE.py:FACTORY"), ("missing_file.py:make", "does not exist"),
    ("eedge.examples.digits:nothing_here", "no callable"),
    ("eedge.examples.digits:load_digits_splits", "not a torch.nn.Module")])
def test_bad_factory_specs(spec: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        load_module_factory(spec)
