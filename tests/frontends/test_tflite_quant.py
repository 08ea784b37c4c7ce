"""TFLite reader: quantization parameters the int8 arithmetic cannot use are refused.

Issue 16 item 5: an int8 zero point of -1,962,934,400 passed the reader (it only
checked |zp| <= 2^31), the export "verified" and the generated C overflowed int32.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import flatbuffers
import pytest
from test_tflite_frontend import hand_made_int8_model

from eedge.cli.main import main
from eedge.errors import ModelError
from eedge.frontends.tflite_frontend import read_tflite_bytes
from eedge.tflite_schema import schema as S


def _edit(edit: Callable[[dict[str, S.TensorT], S.SubGraphT], None]) -> bytes:
    """The hand-made CONV -> RESHAPE -> FC model with EDIT applied to its tensors."""
    model = S.ModelT.InitFromObj(S.Model.GetRootAs(bytearray(hand_made_int8_model()), 0))
    graph = model.subgraphs[0]
    edit({t.name.decode(): t for t in graph.tensors}, graph)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _quant(name: str, scale: list[float] | None = None, zero: list[int] | None = None,
           axis: int = 0) -> Callable[[dict[str, S.TensorT], S.SubGraphT], None]:
    def edit(tensors: dict[str, S.TensorT], _graph: S.SubGraphT) -> None:
        q = tensors[name].quantization
        q.quantizedDimension = axis or q.quantizedDimension
        if scale is not None:
            q.scale = scale
        if zero is not None:
            q.zeroPoint = zero
    return edit


def test_the_unedited_model_reads() -> None:
    read_tflite_bytes(_edit(lambda tensors, graph: None))


@pytest.mark.parametrize("edit, message", [
    (_quant("x", zero=[-1_962_934_400]), r"'x' \(int8\) has zero point -1962934400; it must "
                                         r"be -128\.\.127"),
    (_quant("conv_out", zero=[128]), "zero point 128"),
    (_quant("logits", zero=[-129]), "zero point -129"),
    (_quant("conv_b", zero=[0, 5]), r"'conv_b' \(int32\) has zero point 5; it must be 0"),
    (_quant("conv_w", zero=[0, 3]), "non-zero zero point"),
    (_quant("conv_w", zero=[0, 300]), "zero point 300"),
    (_quant("x", scale=[float("nan")]), "non-finite scale"),
    (_quant("x", scale=[0.0]), "non-positive"),
    (_quant("x", scale=[1e-40]), r"scale 1e-40, outside 2\^-100\.\.2\^100"),
    (_quant("logits", scale=[1e35]), "outside 2"),
    (_quant("conv_out", scale=[0.05, 0.05], zero=[5, 5], axis=3), "activations are quantized per tensor"),
])
def test_out_of_range_quantization_is_refused(edit: Callable, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        read_tflite_bytes(_edit(edit))


def test_in_range_edges_are_accepted() -> None:
    read_tflite_bytes(_edit(_quant("x", zero=[-128])))
    read_tflite_bytes(_edit(_quant("logits", zero=[127])))
    read_tflite_bytes(_edit(_quant("fc_w", zero=[3])))  # per-tensor FC weights may be asymmetric


def test_requantization_shift_out_of_range_is_refused() -> None:
    """in x weight / out scale of 4e11 needs a left shift of 39 bits: TFLite allows 30."""
    def edit(tensors: dict[str, S.TensorT], graph: S.SubGraphT) -> None:
        tensors["x"].quantization.scale = [1e12]
        graph.operators[0].inputs = [0, 1, -1]  # no bias, so no bias-scale mismatch first

    with pytest.raises(ModelError, match=r"shift 3\d; TFLite's fixed-point requantization "
                                         r"supports shifts -31\.\.30"):
        read_tflite_bytes(_edit(edit))


def test_export_refuses_the_huge_zero_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    path = tmp_path / "zp.tflite"
    path.write_bytes(_edit(_quant("x", zero=[-1_962_934_400])))
    for args in (["export", str(path), "--out", str(tmp_path / "b")],
                 ["codegen", str(path), "--target", "host", "--out", str(tmp_path / "p")]):
        with pytest.raises(SystemExit) as exc:
            main(args)
        err = capsys.readouterr().err
        assert exc.value.code == ModelError.exit_code, err
        assert "zero point -1962934400" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists() and not (tmp_path / "p").exists()
