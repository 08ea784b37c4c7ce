"""Cascades of .tflite members (merged at the IR level): all-int8 cascades keep every
member's bytes (TFLite Micro on the member file == the bundle's exit), all-float ones are
quantized as a whole, ONNX members mixed with float .tflite ones are lowered first (the
bundle reads NHWC); mixing float and int8, or int8 inputs quantized differently, fails."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from eedge.cascade import build_cascade
from eedge.cascade.members import run_tflite
from eedge.errors import ModelError
from eedge.export import export_onnx
from eedge.ir.bundle import load_bundle
from eedge.runtime.cascade import Cascade
from cascade_fixtures import cascade_case  # noqa: F401


@pytest.fixture(scope="module")
def tflite_members(cascade_case, tmp_path_factory) -> dict[str, list[Path]]:  # type: ignore[no-untyped-def]
    """Each member exported alone by eedge (same calibration data, so the int8 files
    quantize the input alike), as a user holding .tflite files would have them."""
    root = tmp_path_factory.mktemp("tflite-members")
    calib = cascade_case.data.x_train[:128]
    files: dict[str, list[Path]] = {"int8": [], "f32": []}
    for path in cascade_case.members[:2]:
        out = root / path.stem
        export_onnx(path, out, formats=("tflite",), int8=True, calibration=calib)
        files["int8"].append(out / "model.int8.tflite")
        files["f32"].append(out / "model.f32.tflite")
    return files


def test_int8_members_keep_their_bytes(tflite_members, cascade_case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = build_cascade(tflite_members["int8"], tmp_path / "b").bundle
    m = bundle.manifest
    assert [s["exit"] for s in m["stages"]] == [0, 1]
    assert set(m["stages"][0]["files"]) == {"tflite_int8"}
    assert m["inputs"][0]["dtype"] == "int8"
    assert m["cascade"]["merge_check"]["max_abs_diff"] == 0.0
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, size=(20, 8, 8, 1), dtype=np.int8)
    staged = Cascade(bundle, runtime="int8-tflm").run_all_exits(x, raw=True)
    for path, got in zip(tflite_members["int8"], staged):
        want = run_tflite(path.read_bytes(), x, 1)[0]
        assert np.array_equal(got, want)  # equal bytes
    # and the generated C on qemu-cortex-m4 gives TFLite Micro's bytes for every member
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from device_compare import assert_c_bit_exact

    assert assert_c_bit_exact(bundle.path, x[:8]) == 8 * 2


def test_float_members_quantized_as_a_whole(tflite_members, cascade_case, tmp_path: Path  # type: ignore[no-untyped-def]
                                            ) -> None:
    data = cascade_case.data
    bundle = build_cascade(tflite_members["f32"], tmp_path / "b", int8=True,
                           calibration=data.x_train[:128].transpose(0, 2, 3, 1)).bundle
    assert set(bundle.stages[1]["files"]) == {"tflite", "tflite_int8"}
    x = data.x_test[:64].transpose(0, 2, 3, 1)
    floats = Cascade(bundle, runtime="tflite").run_all_exits(x)
    ints = Cascade(bundle, runtime="int8-reference").run_all_exits(x)
    for a, b in zip(floats, ints):
        assert np.mean(np.argmax(a, -1) == data.y_test[:64]) > 0.85
        assert np.mean(np.argmax(a, -1) == np.argmax(b, -1)) >= 0.95


def test_mixed_float_and_int8_members_fail(tflite_members, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelError, match="mix float and int8"):
        build_cascade([tflite_members["f32"][0], tflite_members["int8"][1]], tmp_path / "b")


def test_int8_inputs_quantized_differently_fail(cascade_case, tflite_members,  # type: ignore[no-untyped-def]
                                                tmp_path: Path) -> None:
    other = tmp_path / "other"
    export_onnx(cascade_case.members[1], other, formats=("tflite",), int8=True,
                calibration=cascade_case.data.x_train[:128] * 0.5)  # another input range
    with pytest.raises(ModelError, match="share the input's scale"):
        build_cascade([tflite_members["int8"][0], other / "model.int8.tflite"], tmp_path / "b")
    assert load_bundle(other).manifest["inputs"][0]["dtype"] == "float32"


def test_onnx_and_float_tflite_members_mixed(tflite_members, cascade_case, tmp_path: Path  # type: ignore[no-untyped-def]
                                             ) -> None:
    """small.onnx, medium as a float .tflite, large.onnx (which resizes): each exit is the
    member as torch computes it, with the input in TFLite's layout."""
    import torch

    members = [cascade_case.members[0], tflite_members["f32"][1], cascade_case.members[2]]
    bundle = build_cascade(members, tmp_path / "b").bundle
    m = bundle.manifest
    assert m["inputs"][0]["shape"] == [1, 8, 8, 1] and m["inputs"][0]["layout"] == "NHWC"
    assert [e["format"] for e in m["cascade"]["members"]] == ["onnx", "tflite", "onnx"]
    x = cascade_case.data.x_test[:32]
    got = Cascade(bundle, runtime="tflite").run_all_exits(x.transpose(0, 2, 3, 1))
    for module, logits in zip(cascade_case.modules, got):
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(logits, want, atol=1e-4)


def test_int8_tflite_with_onnx_member_fails(tflite_members, cascade_case, tmp_path: Path  # type: ignore[no-untyped-def]
                                            ) -> None:
    with pytest.raises(ModelError, match="mix float and int8"):
        build_cascade([cascade_case.members[0], tflite_members["int8"][1]], tmp_path / "b")
