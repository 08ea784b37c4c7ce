"""TFLite reader: each operator's declared output must be what TFLite computes from its inputs.

Found by tests/fuzz/test_fuzz_tflite.py (issue 16 item 5): a RESHAPE target that
cannot hold its input escaped export as ``ValueError: cannot reshape`` (exit 1),
a stride changed in a file made LiteRT refuse the staged files eedge wrote from
it (``Cannot set tensor: Dimension mismatch``, exit 1), and a bias of the wrong
length, a missing non-optional input or a NUL in a tensor name got past the reader.
"""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
import pytest
from test_tflite_quant import _edit

from eedge.cli.main import main
from eedge.errors import ModelError
from eedge.frontends.tflite_frontend import load_tflite, read_tflite_bytes
from eedge.tflite_schema import schema as S


def _with_reshape_target(target: list[int]) -> bytes:
    """The hand-made model with the RESHAPE's constant shape tensor (buffer 5) replaced."""
    model = S.ModelT.InitFromObj(S.Model.GetRootAs(bytearray(_edit(lambda t, g: None)), 0))
    model.buffers[5].data = np.frombuffer(np.array(target, np.int32).tobytes(), np.uint8)
    model.subgraphs[0].tensors[8].shape = [len(target)]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _run(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    return int(exc.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize("target, message", [
    ([1, 9], r"RESHAPE computes shape \[1, 9\] from its inputs and options, but the file "
             r"declares \[1, 18\]"),
    ([1, 17], r"computes shape \[1, 17\]"),
    ([1, -1, 4], "cannot hold 18 elements"),
    ([-1, -1], "not a valid shape"),
    ([1, 0], "not a valid shape"),
    ([2, 9], "changes the batch dimension"),
])
def test_reshape_target_must_fit(target: list[int], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        read_tflite_bytes(_with_reshape_target(target))


def test_reshape_with_minus_one_resolves() -> None:
    read_tflite_bytes(_with_reshape_target([1, -1]))
    read_tflite_bytes(_with_reshape_target([-1, 18]))


@pytest.mark.parametrize("target", [[1, 9], [2, 9]])
def test_export_and_codegen_of_a_bad_reshape(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             target: list[int]) -> None:
    """[2, 9] was `internal error: ValueError: cannot reshape array of size 288 into (16,9)`
    from export, and codegen accepted both files."""
    path = tmp_path / "reshape.tflite"
    path.write_bytes(_with_reshape_target(target))
    for args in (["export", str(path), "--out", str(tmp_path / "b")],
                 ["codegen", str(path), "--target", "host", "--out", str(tmp_path / "p")]):
        code, err = _run(capsys, args)
        assert code == ModelError.exit_code and "RESHAPE" in err and "Traceback" not in err, err
    assert not (tmp_path / "b").exists() and not (tmp_path / "p").exists()


def _stride(tensors: dict[str, S.TensorT], graph: S.SubGraphT) -> None:
    graph.operators[0].builtinOptions.strideH = 2


def _fc_bias(tensors: dict[str, S.TensorT], graph: S.SubGraphT) -> None:
    graph.operators[2].inputs = [4, 5, 2]  # the conv's 2-element bias on a 3-output FC
    tensors["conv_b"].quantization.scale = [0.05 * 0.004] * 2


def _no_shape(tensors: dict[str, S.TensorT], graph: S.SubGraphT) -> None:
    graph.operators[1].inputs = [3, -1]


def _nul_name(tensors: dict[str, S.TensorT], graph: S.SubGraphT) -> None:
    tensors["conv_out"].name = b"conv\x00out"


def _float_out(tensors: dict[str, S.TensorT], graph: S.SubGraphT) -> None:
    tensors["conv_out"].type = S.TensorType.FLOAT32


@pytest.mark.parametrize("edit, message", [
    (_stride, r"CONV_2D computes shape \[1, 2, 3, 2\] .* declares \[1, 3, 3, 2\]"),
    (_fc_bias, r"bias shape \[2\] does not match the 3 output channels"),
    (_no_shape, "RESHAPE input 1 is missing"),
    (_nul_name, "control characters"),
    (_float_out, "CONV_2D reads int8 but writes float32"),
])
def test_declared_outputs_and_inputs_are_checked(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelError, match=message):
        read_tflite_bytes(_edit(edit))


def test_a_file_litert_refuses_is_a_model_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """eedge reads an int8 CONV_2D without bias; LiteRT does not: refused before any work."""
    def no_bias(tensors: dict[str, S.TensorT], graph: S.SubGraphT) -> None:
        graph.operators[0].inputs = [0, 1, -1]

    path = tmp_path / "nobias.tflite"
    path.write_bytes(_edit(no_bias))
    read_tflite_bytes(path.read_bytes())
    with pytest.raises(ModelError, match="LiteRT cannot load"):
        load_tflite(path)
    code, err = _run(capsys, ["export", str(path), "--out", str(tmp_path / "b")])
    assert code == ModelError.exit_code and "LiteRT cannot load" in err, err
    assert not (tmp_path / "b").exists()


def test_an_output_that_is_not_logits_is_a_model_error(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    """Found by the fuzzer: an output index moved to a 4-D tensor was exported, and only the
    bundle check after the export refused it (BundleError, exit 4)."""
    def conv_out_is_an_output(tensors: dict[str, S.TensorT], graph: S.SubGraphT) -> None:
        graph.outputs = [7, 3]

    path = tmp_path / "four_d.tflite"
    path.write_bytes(_edit(conv_out_is_an_output))
    with pytest.raises(ModelError, match=r"output 'conv_out' .* shape \[1, 3, 3, 2\]"):
        load_tflite(path)
    code, err = _run(capsys, ["export", str(path), "--out", str(tmp_path / "b")])
    assert code == ModelError.exit_code and "(batch, classes)" in err, err
