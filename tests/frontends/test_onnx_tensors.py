"""ONNX import: malformed tensors and signatures are one ModelError (found by the ONNX fuzzer).

Before: raw data longer than its dims, a changed element type or a length that is
not a multiple of the item size escaped as ``ValueError: cannot reshape`` / ``buffer
size must be a multiple of element size`` (exit 1); a NUL in an external-data
location as ``ValueError: embedded null byte``; an input dimension of 0 or a Conv
with both auto_pad and pads got through to a BundleError after the export.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).parents[1]))

from fuzz.small_models import tiny_cnn  # noqa: E402

from eedge.cli.main import main  # noqa: E402
from eedge.errors import ModelError  # noqa: E402
from eedge.frontends.onnx_frontend import import_onnx, read_onnx_file  # noqa: E402

Edit = Callable[[onnx.ModelProto], None]


def _init(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(i for i in model.graph.initializer if i.name == name)


def _longer(m: onnx.ModelProto) -> None:
    _init(m, "c2.b").raw_data += b"\x01" * 8


def _odd_length(m: onnx.ModelProto) -> None:
    _init(m, "c0.b").raw_data += b"\x01"


def _double(m: onnx.ModelProto) -> None:
    _init(m, "c2.w").data_type = TensorProto.DOUBLE


def _unknown_type(m: onnx.ModelProto) -> None:
    _init(m, "c0.b").data_type = 999


def _dims(values: list[int]) -> Edit:
    def edit(m: onnx.ModelProto) -> None:
        init = _init(m, "c2.w")
        del init.dims[:]
        init.dims.extend(values)
    return edit


def _input_dim(value: int) -> Edit:
    def edit(m: onnx.ModelProto) -> None:
        m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = value
    return edit


def _auto_pad(value: str) -> Edit:
    def edit(m: onnx.ModelProto) -> None:
        m.graph.node[0].attribute.append(helper.make_attribute("auto_pad", value))
    return edit


def _group(value: int) -> Edit:
    def edit(m: onnx.ModelProto) -> None:
        m.graph.node[0].attribute.append(helper.make_attribute("group", value))
    return edit


def _symbolic_channels(m: onnx.ModelProto) -> None:
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "M"


def _dilation(m: onnx.ModelProto) -> None:
    m.graph.node[0].attribute.append(helper.make_attribute("dilations", [7, 7]))


def _nan_weight(m: onnx.ModelProto) -> None:
    init = _init(m, "c1.w")
    init.raw_data = b"\x00\x00\xc0\x7f" + init.raw_data[4:]


def _inf_weight(m: onnx.ModelProto) -> None:
    init = _init(m, "c1.w")
    init.raw_data = b"\x00\x00\x80\x7f" + init.raw_data[4:]


def _opset(m: onnx.ModelProto) -> None:
    m.opset_import[0].version = 99


def _long_name(m: onnx.ModelProto) -> None:
    m.graph.output[2].name = m.graph.node[-1].output[0] = "x" * 5000


@pytest.mark.parametrize("edit, message", [
    (_group(1 << 40), r"group 1099511627776 does not fit 1 input channels and weights \[4, 1"),
    (_symbolic_channels, "only the batch .* may be symbolic"),
    (_dilation, r"has shape \[.*, 4, -4, -4\]: an empty dimension"),
    (_nan_weight, "'c1.w' holds NaN values"),
    (_inf_weight, "'c1.w' holds infinite values"),  # was "not finite on the calibration data"
    (_input_dim(1 << 40), "dimensions above 16777216"),
    (_opset, "imports operator set 99"),
    (_long_name, "over 1024 characters"),
    (_longer, r"'c2.b' holds 40 bytes of data but its dims \[8\] and type need 32"),
    (_odd_length, "holds 17 bytes"),
    (_double, "holds 2304 bytes of data but its dims .* need 4608"),
    (_unknown_type, "element type 999, which ONNX does not define"),
    (_dims([1] * 40), "holds 2304 bytes"),
    (_dims([1 << 40, 1 << 40]), "declares 1208925819614629174706176 elements"),
    (_dims([-3, 2]), "negative dimension -3"),
    (_input_dim(0), r"input 'input' has shape \['N', 1, 0, 8\]; dimensions must be positive"),
    (_auto_pad("SAME_UPPER"), "has both auto_pad SAME_UPPER and pads"),
    (_auto_pad("bogus"), "has auto_pad 'bogus'"),
])
def test_malformed_models_are_model_errors(edit: Edit, message: str) -> None:
    model = tiny_cnn()
    edit(model)
    with pytest.raises(ModelError, match=message):
        import_onnx(model)


def test_external_location_with_nul(tmp_path: Path) -> None:
    model = tiny_cnn()
    init = _init(model, "c0.b")
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    init.external_data.add(key="location", value="data.bin\x00x")
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match="NUL character"):
        read_onnx_file(path)


def test_export_cli_gives_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny_cnn()
    _longer(model)  # was `internal error: ValueError: cannot reshape array of size 10 into (8,)`
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(SystemExit) as exc:
        main(["export", str(path), "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert exc.value.code == ModelError.exit_code and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and "c2.b" in err


def test_offset_past_the_end_without_length(tmp_path: Path) -> None:
    """Was `ValueError: read length must be non-negative or -1`."""
    model = tiny_cnn()
    init = _init(model, "c0.b")
    (tmp_path / "data.bin").write_bytes(init.raw_data)
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    init.external_data.add(key="location", value="data.bin")
    init.external_data.add(key="offset", value=str(1 << 40))
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match="lies outside data.bin"):
        read_onnx_file(path)


@pytest.mark.parametrize("field", ["name", "location"])
def test_text_that_is_not_utf8(tmp_path: Path, field: str) -> None:
    """Bit flips in names: UnicodeDecodeError / `bytes-like object is required` (exit 1)."""
    model = tiny_cnn()
    if field == "location":
        init = _init(model, "c0.b")
        init.ClearField("raw_data")
        init.data_location = TensorProto.EXTERNAL
        init.external_data.add(key="location", value="dataXbin")
        marker = b"dataXbin"
    else:
        model.graph.node[1].name = "nodeXname"
        marker = b"nodeXname"
    data = model.SerializeToString().replace(marker, marker.replace(b"X", b"\xd1"))
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    with pytest.raises(ModelError, match="not UTF-8"):
        import_onnx(read_onnx_file(path))
