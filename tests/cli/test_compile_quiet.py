"""`eedge compile --backend tvm` shows eedge's output only, not TVM's internal warnings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from zoo import onnx_two_exit_mlp

from eedge.export import export_onnx


def _dotted_names_model() -> onnx.ModelProto:
    """The test MLP with tensor names as torch's legacy exporter writes them.

    TVM's ONNX importer renames `input.1` (and warns) because its IR cannot spell it.
    """
    model = onnx_two_exit_mlp()
    renames = {"x": "input.1", "h": "onnx::Gemm_7"}
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        value.name = renames.get(value.name, value.name)
    onnx.checker.check_model(model)
    return model


def test_compile_prints_no_tvm_warnings(tmp_path: Path) -> None:
    pytest.importorskip("tvm")
    source = tmp_path / "dotted.onnx"
    onnx.save(_dotted_names_model(), source)
    bundle = export_onnx(source, tmp_path / "bundle").bundle
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    proc = subprocess.run([sys.executable, "-m", "eedge.cli.main", "compile", str(bundle.path),
                           "--backend", "tvm", "--target", "host"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    assert "stage0.tvm-host.so" in proc.stdout
