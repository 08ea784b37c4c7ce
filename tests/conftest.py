"""Shared fixtures: exported test models, cached per test session (per worker)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from zoo import TORCH_MODELS, build_torch, example_input, onnx_two_exit_mlp  # noqa: E402

from eedge.export import ExportResult, export_onnx  # noqa: E402
from eedge.frontends.torch_frontend import torch_to_onnx  # noqa: E402

_ONNX_CACHE: dict[str, onnx.ModelProto] = {}


def exported_onnx(name: str) -> onnx.ModelProto:
    """ONNX export of a zoo model (dynamo export is slow: do it once per worker)."""
    if name not in _ONNX_CACHE:
        _ONNX_CACHE[name] = torch_to_onnx(build_torch(name), example_input(name=name))
    return _ONNX_CACHE[name]


@pytest.fixture(params=sorted(TORCH_MODELS))
def zoo_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def onnx_file(tmp_path: Path) -> Callable[[str], Path]:
    """Write a zoo model (or 'mlp' for the onnx.helper model) to a file."""

    def write(name: str) -> Path:
        model = onnx_two_exit_mlp() if name == "mlp" else exported_onnx(name)
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, path)
        return path

    return write


@pytest.fixture
def bundle_of(tmp_path: Path, onnx_file: Callable[[str], Path]) -> Callable[..., ExportResult]:
    def make(name: str, **kwargs: object) -> ExportResult:
        out = tmp_path / f"{name}-bundle"
        return export_onnx(onnx_file(name), out, force=True, **kwargs)  # type: ignore[arg-type]

    return make
