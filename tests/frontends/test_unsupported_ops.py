"""An unsupported operator is refused in one line naming it, its node and what to use instead.

Through the CLI, as a user meets it: exit code 3 (UnsupportedOpError), one line on
stderr, for ONNX files (hand-written advice, or the closest supported name) and
for TFLite files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from cli_runner import run_cli
from onnx import TensorProto, helper, numpy_helper
from test_tflite_frontend import hand_made_int8_model

from eedge.frontends.ops import nearest_alternative, supported_onnx_ops
from eedge.tflite_schema import schema as S


def _onnx_with(op: str, path: Path, **attrs: object) -> Path:
    """x[1,4] -> op -> Gemm -> exit0: a valid opset-20 model with one foreign operator."""
    w = numpy_helper.from_array(np.ones((3, 4), np.float32), "w")
    nodes = [helper.make_node(op, ["x"], ["h"], name="the_node", **attrs),
             helper.make_node("Gemm", ["h", "w"], ["exit0"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                        [1, 4])],
                              [helper.make_tensor_value_info("exit0", TensorProto.FLOAT, [1, 3])],
                              [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.save(model, path)
    return path


def _refused(capsys: pytest.CaptureFixture[str], path: Path, tmp_path: Path) -> str:
    code, _out, err = run_cli(capsys, "export", str(path), "--out", str(tmp_path / "b"))
    assert code == 3, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("op, attrs, advice", [
    ("Erf", {}, "eedge fuses GELU's"),
    ("ReduceProd", {"keepdims": 0}, "nearest supported operator: ReduceSum"),
    ("ReduceMin", {"keepdims": 0}, "ReduceMax"),
    ("Cos", {}, "README's Operators table"),
])
def test_onnx_unsupported_op_is_one_line_with_advice(op: str, attrs: dict, advice: str,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused(capsys, _onnx_with(op, tmp_path / "m.onnx", **attrs), tmp_path)
    assert f"unsupported operator {op} in node 'the_node'" in line
    assert advice in line


def test_tflite_unsupported_builtin_is_one_line_with_advice(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.tflite"
    path.write_bytes(hand_made_int8_model(op=S.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM))
    line = _refused(capsys, path, tmp_path)
    op = "UNIDIRECTIONAL_SEQUENCE_LSTM"
    assert f"unsupported TFLite operator {op} (operator 0 ({op}))" in line
    assert "eedge unrolls ONNX GRU, LSTM and RNN" in line


def test_advice_never_names_an_unsupported_operator() -> None:
    supported = supported_onnx_ops()
    for op in ("Softsign", "ReduceL2", "Conv3", "relu"):
        advice = nearest_alternative(op, supported, {})
        if "nearest supported operator: " in advice:
            name = advice.split("nearest supported operator: ")[1].split(" ")[0]
            assert name in supported
