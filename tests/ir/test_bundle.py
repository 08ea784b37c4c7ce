"""Bundles: checksums, schema, atomic writes and replacement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eedge.errors import BundleError
from eedge.ir.bundle import MANIFEST_NAME, load_bundle, staging_directory, update_manifest


@pytest.fixture
def bundle_dir(bundle_of) -> Path:  # type: ignore[no-untyped-def]
    return bundle_of("mlp").bundle.path


def test_fresh_bundle_loads_and_lists_every_file(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert set(bundle.manifest["files"]) == {"model.onnx", "stage0.onnx", "stage1.onnx"}
    assert bundle.manifest["schema_version"] == 1


def test_tampered_file_is_named(bundle_dir: Path) -> None:
    path = bundle_dir / "stage1.onnx"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="stage1.onnx does not match its sha256"):
        load_bundle(bundle_dir)


def test_missing_file_is_named(bundle_dir: Path) -> None:
    (bundle_dir / "stage0.onnx").unlink()
    with pytest.raises(BundleError, match="stage0.onnx listed in the manifest is missing"):
        load_bundle(bundle_dir)


def test_truncated_manifest(bundle_dir: Path) -> None:
    manifest = bundle_dir / MANIFEST_NAME
    manifest.write_text(manifest.read_text()[:50])
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_dir)


def _edit(bundle_dir: Path, change) -> None:  # type: ignore[no-untyped-def]
    path = bundle_dir / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_unknown_schema_version(bundle_dir: Path) -> None:
    _edit(bundle_dir, lambda m: m.update(schema_version=99))
    with pytest.raises(BundleError, match="schema_version 99 is not supported"):
        load_bundle(bundle_dir)


def test_path_traversal_in_file_names_is_rejected(bundle_dir: Path) -> None:
    _edit(bundle_dir, lambda m: m["stages"][0]["files"].update(onnx="../../etc/passwd"))
    with pytest.raises(BundleError, match="stages/0/files/onnx"):
        load_bundle(bundle_dir)


def test_file_without_checksum_entry(bundle_dir: Path) -> None:
    _edit(bundle_dir, lambda m: m["files"].pop("stage1.onnx"))
    with pytest.raises(BundleError, match="no checksum entry"):
        load_bundle(bundle_dir)


def test_exit_pointing_at_wrong_stage(bundle_dir: Path) -> None:
    _edit(bundle_dir, lambda m: m["exits"][0].update(stage=1))
    with pytest.raises(BundleError, match="does not produce it"):
        load_bundle(bundle_dir)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nothing")
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path)


def test_update_manifest_is_validated_and_atomic(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    before = (bundle_dir / MANIFEST_NAME).read_text()
    with pytest.raises(BundleError):
        update_manifest(bundle, lambda m: m["exits"][0]["policy"].update(threshold=2.0))
    assert (bundle_dir / MANIFEST_NAME).read_text() == before
    assert sorted(p.name for p in bundle_dir.iterdir()) == [
        "manifest.json", "model.onnx", "stage0.onnx", "stage1.onnx"]


def test_staging_leaves_nothing_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "b"
    with pytest.raises(RuntimeError):
        with staging_directory(out, force=False) as tmp:
            (tmp / "x").write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_staging_refuses_to_overwrite_without_force_and_replaces_with_it(tmp_path: Path) -> None:
    out = tmp_path / "b"
    out.mkdir()
    (out / MANIFEST_NAME).write_text("{}")
    with pytest.raises(BundleError, match="--force"):
        with staging_directory(out, force=False):
            pass
    with staging_directory(out, force=True) as tmp:
        (tmp / "new").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_force_never_replaces_what_eedge_did_not_make(tmp_path: Path) -> None:
    """--force on a source tree or home folder must not delete it (it did)."""
    precious = tmp_path / "src"
    precious.mkdir()
    (precious / "main.c").write_text("int main(void) { return 0; }")
    (precious / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match=r"not made by eedge.*main.c, notes.txt"):
        with staging_directory(precious, force=True) as tmp:
            (tmp / MANIFEST_NAME).write_text("{}")
    assert sorted(p.name for p in precious.iterdir()) == ["main.c", "notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_force_does_not_follow_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / MANIFEST_NAME).write_text("{}")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(BundleError, match="symbolic link"):
        with staging_directory(link, force=True):
            pass
    assert (real / MANIFEST_NAME).read_text() == "{}" and link.is_symlink()


def test_manifest_is_readable_by_others(bundle_dir: Path) -> None:
    """mkstemp makes files 0600; a bundle's manifest must be as readable as its files."""
    mode = (bundle_dir / MANIFEST_NAME).stat().st_mode & 0o777
    stage_mode = next(p for p in bundle_dir.iterdir() if p.suffix == ".onnx").stat().st_mode
    assert mode == stage_mode & 0o777
    assert mode & 0o044 == 0o044
