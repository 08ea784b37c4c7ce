"""manifest.json is read as strict, bounded JSON (issue 16, item 8).

Python's json accepted NaN thresholds (int8 runtimes and codegen crashed,
onnx never exited), raised bare ValueError/RecursionError on 5,000-digit
integers and deep nesting (internal errors), and let a repeated key win
silently. Markup in a model name crashed `eedge inspect`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from eedge.errors import BundleError
from eedge.ir.bundle import MANIFEST_NAME, load_bundle, update_manifest
from eedge.ir.manifest_json import MAX_MANIFEST_BYTES, nesting_depth
from eedge.policies.apply import finite_or_null, record_thresholds

sys.path.insert(0, str(Path(__file__).parents[1]))

from cli_runner import run_cli  # noqa: E402


@pytest.fixture
def bundle_dir(bundle_of) -> Path:  # type: ignore[no-untyped-def]
    return bundle_of("mlp").bundle.path


def _write(bundle_dir: Path, text: str | bytes) -> None:
    path = bundle_dir / MANIFEST_NAME
    path.write_bytes(text.encode() if isinstance(text, str) else text)


def _with(bundle_dir: Path, placeholder_path: list, literal: str) -> str:  # type: ignore[type-arg]
    """The bundle's manifest text with the value at ``placeholder_path`` written as ``literal``."""
    manifest = json.loads((bundle_dir / MANIFEST_NAME).read_text())
    node = manifest
    for key in placeholder_path[:-1]:
        node = node[key]
    node[placeholder_path[-1]] = "@@PLACEHOLDER@@"
    return json.dumps(manifest, indent=1).replace('"@@PLACEHOLDER@@"', literal)


@pytest.mark.parametrize("literal,message", [
    ("NaN", "NaN is not a finite number"),
    ("-Infinity", "-Infinity is not a finite number"),
    ("1e999", "1e999 overflows to infinity"),
    ("9" * 5000, "an integer of 5000 digits is out of range"),
    ("[" * 100_000 + "]" * 100_000, "nests 100004 levels deep"),
    ('{"a": ' * 40 + "1" + "}" * 40, "nests 44 levels deep"),
])
def test_hostile_values_are_bundle_errors(bundle_dir: Path, literal: str, message: str) -> None:
    _write(bundle_dir, _with(bundle_dir, ["exits", 0, "policy", "threshold"], literal))
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_dir)


def test_big_integers_below_the_digit_limit_are_named_by_the_schema(bundle_dir: Path) -> None:
    _write(bundle_dir, _with(bundle_dir, ["exits", 0, "num_classes"], "1" + "0" * 30))
    with pytest.raises(BundleError, match="exits/0/num_classes is invalid: 1000"):
        load_bundle(bundle_dir)


def test_duplicate_keys_are_refused(bundle_dir: Path) -> None:
    text = (bundle_dir / MANIFEST_NAME).read_text()
    _write(bundle_dir, text.replace('"threshold": null', '"threshold": null, "threshold": 0.5',
                                    1))
    with pytest.raises(BundleError, match="key 'threshold' appears twice"):
        load_bundle(bundle_dir)


def test_not_utf8_and_lone_surrogates(bundle_dir: Path) -> None:
    text = (bundle_dir / MANIFEST_NAME).read_bytes()
    _write(bundle_dir, text.replace(b'"mlp"', b'"ml\xffp"', 1))
    with pytest.raises(BundleError, match="is not UTF-8"):
        load_bundle(bundle_dir)
    _write(bundle_dir, text.replace(b'"mlp"', b'"ml\\ud800p"', 1))
    with pytest.raises(BundleError, match="unpaired UTF-16 surrogate"):
        load_bundle(bundle_dir)


def test_oversized_manifest_is_refused_without_parsing(bundle_dir: Path) -> None:
    text = (bundle_dir / MANIFEST_NAME).read_text()
    _write(bundle_dir, text + " " * MAX_MANIFEST_BYTES)
    start = time.perf_counter()
    with pytest.raises(BundleError, match="a manifest is at most 8 MiB"):
        load_bundle(bundle_dir)
    assert time.perf_counter() - start < 1.0


def test_nesting_depth_ignores_brackets_in_strings() -> None:
    assert nesting_depth(b'{"a": ["[[[[", {"b": "}}}"}]}') == 3
    assert nesting_depth(b'["\\"[[[["]') == 1
    assert nesting_depth(b"1") == 0


def test_manifest_markup_is_printed_literally_by_inspect(
        bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    update_manifest(load_bundle(bundle_dir), lambda m: (
        m["model"].update(name="x[bold]y"), m.update(eedge_version="[/x]")))
    code, out, err = run_cli(capsys, "inspect", str(bundle_dir))
    assert code == 0, err
    assert "x[bold]y: 2 stages" in out and "(eedge [/x], schema" in out


def test_schema_messages_stay_one_short_line(bundle_dir: Path) -> None:
    _write(bundle_dir, _with(bundle_dir, ["model", "name"], json.dumps("x" * 100_000)))
    with pytest.raises(BundleError) as caught:
        load_bundle(bundle_dir)
    assert "model/name" in str(caught.value) and len(str(caught.value)) < 400


def test_statistics_are_written_finite(bundle_dir: Path) -> None:
    """NaN statistics become null: a manifest with NaN could never be loaded again."""
    assert finite_or_null({"a": [float("nan"), 1.0], "b": float("inf")}) == {"a": [None, 1.0],
                                                                              "b": None}
    bundle = record_thresholds(load_bundle(bundle_dir), [0.5, None], None, "test",
                               {"final_accuracy": float("nan"), "cost": 3.0})
    assert load_bundle(bundle.path).manifest["calibration"] == {"final_accuracy": None,
                                                                "cost": 3.0}
    with pytest.raises(ValueError):
        update_manifest(bundle, lambda m: m.update(calibration={"x": float("nan")}))
    load_bundle(bundle.path)  # the refused write left the manifest as it was


@pytest.mark.parametrize("change", [
    lambda m: m["quantization"].pop("calibration_samples"),
    lambda m: m["verification"]["tflite_int8"]["reference_vs_tflm"]["stages"][0].update(
        why="a reason"),
    lambda m: m["verification"]["onnx"].update(max_abs_diff="0"),
])
def test_sections_inspect_prints_are_complete(bundle_of, change) -> None:  # type: ignore[no-untyped-def]
    """Found by the manifest fuzz: a dropped key crashed `eedge inspect` with a KeyError."""
    calibration = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)
    bundle_dir = bundle_of("mlp", formats=("onnx", "tflite"), int8=True,
                           calibration=calibration).bundle.path
    manifest = json.loads((bundle_dir / MANIFEST_NAME).read_text())
    change(manifest)
    _write(bundle_dir, json.dumps(manifest))
    with pytest.raises(BundleError, match="manifest field (quantization|verification)"):
        load_bundle(bundle_dir)


def test_markup_in_manifest_text_does_not_crash_thresholds(
        bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    update_manifest(load_bundle(bundle_dir), lambda m: m["exits"][0]["policy"].update(
        method="[/]"))
    code, out, err = run_cli(capsys, "thresholds", str(bundle_dir))
    assert code == 0, err
    assert "[/]" in out


def test_stage_names_are_eedge_names(bundle_dir: Path) -> None:
    """eedge names stages itself; markup in one crashed `eedge profile`'s table."""
    manifest = json.loads((bundle_dir / MANIFEST_NAME).read_text())
    manifest["stages"][0]["name"] = "[/]stage0"
    _write(bundle_dir, json.dumps(manifest))
    with pytest.raises(BundleError, match="stages/0/name is invalid"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("name", ['x"\n#include "/etc/passwd', "../../elsewhere", "a\\b"])
def test_model_names_cannot_escape_c_strings_or_directories(bundle_dir: Path, name: str) -> None:
    """codegen writes `#define EEDGE_MODEL_NAME "<name>"`; split --triton makes a directory."""
    manifest = json.loads((bundle_dir / MANIFEST_NAME).read_text())
    manifest["model"]["name"] = name
    _write(bundle_dir, json.dumps(manifest))
    with pytest.raises(BundleError, match="model/name is invalid"):
        load_bundle(bundle_dir)
