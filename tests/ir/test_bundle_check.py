"""The manifest against its stage files and itself (issue 16, item 3 and item 8's cross-references).

Before these checks a hand-edited input scale passed `eedge inspect` ("all
sha256 checksums match") and made `eedge run --runtime int8` answer at chance
level; a stage file swapped for another valid one (sha256 updated) crashed
`run` and was compiled by `codegen`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eedge.errors import BundleError
from eedge.ir import bundle_check
from eedge.ir.bundle import MANIFEST_NAME, load_bundle
from eedge.policies.apply import write_thresholds

sys.path.insert(0, str(Path(__file__).parents[1]))

from cli_runner import run_cli  # noqa: E402


@pytest.fixture
def int8_dir(bundle_of) -> Path:  # type: ignore[no-untyped-def]
    """The two-exit MLP with ONNX, float TFLite and int8 TFLite stages."""
    calibration = np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32)
    result = bundle_of("mlp", formats=("onnx", "tflite"), int8=True, calibration=calibration)
    write_thresholds(result.bundle, [0.6, None], "test")
    return result.bundle.path


def _edit(bundle_dir: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = bundle_dir / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _resign(bundle_dir: Path, name: str) -> None:
    data = (bundle_dir / name).read_bytes()
    _edit(bundle_dir, lambda m: m["files"].__setitem__(
        name, {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}))


def test_edited_input_scale_is_refused_at_load(int8_dir: Path) -> None:
    _edit(int8_dir, lambda m: m["stages"][0]["io"]["tflite_int8"]["inputs"][0]["quant"]
          .update(scale=[1.0]))
    with pytest.raises(BundleError, match=r"stage0\.int8\.tflite \(stage 0, tflite_int8\): "
                       r"input 'x' has scale \[[0-9.]+\] zero point \[-?\d+\] in the file, "
                       r"scale \[1\]"):
        load_bundle(int8_dir)


def test_edited_zero_point_is_refused(int8_dir: Path) -> None:
    def change(m: dict[str, Any]) -> None:
        quant = m["stages"][1]["io"]["tflite_int8"]["outputs"][0]["quant"]
        quant["zero_point"] = [quant["zero_point"][0] + 1 if quant["zero_point"][0] < 127
                               else 0]
    _edit(int8_dir, change)
    with pytest.raises(BundleError, match=r"stage1\.int8\.tflite.*output 'exit1' has scale"):
        load_bundle(int8_dir)


def test_cli_reports_the_mismatch_in_one_line(int8_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _edit(int8_dir, lambda m: m["stages"][0]["io"]["tflite_int8"]["inputs"][0]["quant"]
          .update(scale=[1.0]))
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((3, 16), np.float32))
    for args in (["inspect", str(int8_dir)],
                 ["run", str(int8_dir), "--input", str(x), "--runtime", "int8"],
                 ["codegen", str(int8_dir), "--target", "host", "--out", str(tmp_path / "fw")]):
        code, _out, err = run_cli(capsys, *args)
        assert code == 4, (args, err)
        assert len(err.strip().splitlines()) == 1 and "scale" in err
    assert not (tmp_path / "fw").exists()


@pytest.mark.parametrize("fmt,suffix", [("tflite_int8", ".int8.tflite"), ("onnx", ".onnx"),
                                        ("tflite", ".f32.tflite")])
def test_swapped_stage_file_with_updated_sha_is_refused(int8_dir: Path, fmt: str,
                                                        suffix: str) -> None:
    shutil.copy(int8_dir / f"stage1{suffix}", int8_dir / f"stage0{suffix}")
    _resign(int8_dir, f"stage0{suffix}")
    with pytest.raises(BundleError, match=rf"stage0{suffix.replace('.', '[.]')} \(stage 0, "
                       rf"{fmt}\): input 0 of the file is 'h', the manifest says 'x'"):
        load_bundle(int8_dir)


def test_whole_model_file_in_place_of_a_stage_is_refused(int8_dir: Path) -> None:
    shutil.copy(int8_dir / "model.int8.tflite", int8_dir / "stage1.int8.tflite")
    _resign(int8_dir, "stage1.int8.tflite")
    with pytest.raises(BundleError, match="stage1.int8.tflite .*input 0 of the file is 'x'"):
        load_bundle(int8_dir)


def test_garbage_stage_file_with_updated_sha_is_a_bundle_error(int8_dir: Path) -> None:
    (int8_dir / "stage0.onnx").write_bytes(b"\x08\x07\x3a\xff\xff\xff\x0f")
    _resign(int8_dir, "stage0.onnx")
    with pytest.raises(BundleError, match="stage0.onnx .*malformed ONNX"):
        load_bundle(int8_dir)
    (int8_dir / "stage0.int8.tflite").write_bytes(b"\x10\x00\x00\x00TFL3" + b"\xff" * 40)
    _resign(int8_dir, "stage0.int8.tflite")
    with pytest.raises(BundleError, match="malformed|subgraph|tensor"):
        load_bundle(int8_dir)


@pytest.mark.parametrize("change,message", [
    (lambda m: m["stages"][0]["io"]["onnx"]["inputs"][0].update(dtype="int32"),
     "stage 0 .onnx. reads int32"),
    (lambda m: m["stages"][1]["io"]["onnx"]["outputs"][0].update(dtype="float16",
                                                                  bytes_per_sample=8),
     "output 'exit1' is float32 in the file, float16 in the manifest"),
    (lambda m: m["stages"][0]["io"]["tflite"]["outputs"][1]["shape"].__setitem__(1, 33),
     r"bytes per sample|output 'h' has shape"),
    (lambda m: m["stages"][0]["io"]["onnx"]["outputs"].reverse(),
     "lists 'h' first|output 0 of the file"),
])
def test_edited_io_descriptions_are_refused(int8_dir: Path, change: Any, message: str) -> None:
    _edit(int8_dir, change)
    with pytest.raises(BundleError, match=message):
        load_bundle(int8_dir)


# --- cross-references (item 8) -------------------------------------------------------------

@pytest.mark.parametrize("change,message", [
    (lambda m: m["exits"][1].update(num_classes=10 ** 30),
     "exits/1/num_classes is invalid: 1000000000000000000000000000000 breaks maximum"),
    (lambda m: m["exits"][0].update(num_classes=5), r"exit 0 has num_classes 5.*\[batch, 5\]"),
    (lambda m: m.update(ensemble={"members": [0, 99], "aggregation": "mean_softmax"}),
     r"ensemble members \[0, 99\] must be the last 2 exits"),
    (lambda m: m.update(ensemble={"members": [1, 0], "aggregation": "mean_softmax"}),
     r"ensemble members \[1, 0\] must be the last 2 exits in order"),
    (lambda m: m["exits"][1].update(stage=0), "does not produce it"),
    (lambda m: m["stages"][1].update(exit=None), "points at stage 1, which does not produce"),
    (lambda m: m["exits"][0].update(tensor="h"), "exit 0 is tensor 'h'"),
    (lambda m: m["inputs"][0].update(dtype="foo"), r"inputs/0/dtype is invalid: 'foo' is not "
                                                   "one of"),
    (lambda m: m["inputs"][0].update(shape=["N", 17], bytes_per_sample=68),
     r"model input 'x' has shape \['N', 17\]"),
    (lambda m: m["stages"][1]["io"]["onnx"]["inputs"][0].update(name="nowhere"),
     "reads 'nowhere', which is neither a model input nor an output of an earlier stage"),
    (lambda m: m["exits"].reverse(), "exit 0 is listed with index 1"),
    (lambda m: m["stages"][0]["inputs"][0]["shape"].__setitem__(1, "features"),
     "only the first .batch. dimension may be symbolic"),
])
def test_inconsistent_manifests_are_refused(int8_dir: Path, change: Any, message: str) -> None:
    _edit(int8_dir, change)
    with pytest.raises(BundleError, match=message):
        load_bundle(int8_dir)


def test_thresholds_stay_editable(int8_dir: Path) -> None:
    _edit(int8_dir, lambda m: m["exits"][0]["policy"].update(threshold=0.25, window_low=0.1,
                                                             criterion="margin"))
    assert load_bundle(int8_dir).exits[0]["policy"]["threshold"] == 0.25


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("field", ["threshold", "window_low"])
def test_non_finite_policy_numbers_are_refused(int8_dir: Path, field: str, value: str) -> None:
    """A NaN threshold never compares: onnx never exited, int8 and codegen crashed."""
    path = int8_dir / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest["exits"][0]["policy"][field] = "@@"
    path.write_text(json.dumps(manifest).replace('"@@"', value))
    with pytest.raises(BundleError, match="not a finite number|overflows to infinity"):
        load_bundle(int8_dir)


def test_stage_files_are_parsed_once_per_content(int8_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = bundle_check.read_tflite_io

    def counting(data: bytes) -> Any:
        calls.append(len(data))
        return original(data)

    monkeypatch.setattr(bundle_check, "read_tflite_io", counting)
    monkeypatch.setattr(bundle_check, "_CACHE", {})
    load_bundle(int8_dir)
    first = len(calls)
    assert first == 4  # two stages, float and int8 TFLite
    load_bundle(int8_dir)
    assert len(calls) == first


def test_onnx_io_reader_skips_weights(int8_dir: Path) -> None:
    io = bundle_check.read_onnx_io((int8_dir / "stage1.onnx").read_bytes())
    assert [t.name for t in io.inputs] == ["h"]
    assert [(t.name, t.dtype) for t in io.outputs] == [("exit1", "float32")]
    assert io.outputs[0].shape[1] == 4 and isinstance(io.outputs[0].shape[0], str)


def test_window_edges_from_the_python_api_are_validated(int8_dir: Path) -> None:
    from eedge.errors import InputDataError
    from eedge.runtime.cascade import Cascade

    cascade = Cascade(load_bundle(int8_dir), runtime="int8-reference")
    with pytest.raises(InputDataError, match="window edge nan for exit0"):
        cascade.set_policy(window_low=[float("nan"), None])
    cascade.set_policy(window_low=[0.1, None])
