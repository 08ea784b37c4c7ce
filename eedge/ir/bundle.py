"""Bundles: the directory every eedge command reads and writes.

A bundle is written all at once or not at all: files go to a hidden
temporary directory beside the target, are checked, and the directory is
renamed into place. Loading reads the manifest as strict, bounded JSON
(:mod:`eedge.ir.manifest_json`), verifies it against its schema, every file
against its sha256, and the manifest's claims against each other and against
the stage files' own inputs and outputs (:mod:`eedge.ir.bundle_check`), so a
tampered, truncated, missing or swapped file, or a hand-edited number, is an
error that names it rather than a wrong answer later.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from eedge.errors import BundleError
from eedge.ir.bundle_check import check_cross_references, check_stage_files
from eedge.ir.manifest_json import parse_manifest
from eedge.ir.manifest_schema import MANIFEST_SCHEMA, SCHEMA_VERSION

MANIFEST_NAME = "manifest.json"
# built once: jsonschema.validate() re-checks the schema itself on every call (~40 ms)
_VALIDATOR = jsonschema.Draft202012Validator(MANIFEST_SCHEMA)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def validate_manifest(manifest: Any, where: str) -> None:
    """Schema and cross-references; used on every load and before every write.

    Checking before writing too means no eedge command can store a manifest
    that a later command would refuse.
    """
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: the manifest is not a JSON object; re-export the bundle")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{where}: manifest schema_version {_short(version)} is not "
                          f"supported (this eedge reads version {SCHEMA_VERSION}); re-export "
                          "the bundle with this eedge")
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(manifest))
    if error is not None:
        location = "/".join(str(p)[:40] for p in error.absolute_path) or "(top level)"
        raise BundleError(f"{where}: manifest field {location} is invalid: "
                          f"{_schema_message(error)}; re-export the bundle") from None
    check_cross_references(manifest, where)


def _short(value: Any, limit: int = 60) -> str:
    """A value as it may appear in a one-line message: repr'd and cut."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _schema_message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message without the whole offending value (it may be megabytes)."""
    if error.validator in ("enum", "const"):
        return f"{_short(error.instance)} is not one of {_short(error.validator_value, 120)}"
    if error.validator == "required":
        return error.message
    if error.validator in ("type", "anyOf", "oneOf"):
        return f"{_short(error.instance)} is not valid here (expected {_expected(error)})"
    bound = error.validator_value if error.validator != "pattern" else "the allowed characters"
    return f"{_short(error.instance)} breaks {error.validator} {_short(bound, 80)}"


def _expected(error: jsonschema.ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if "type" in schema:
        return str(schema["type"])
    options = schema.get("anyOf") or schema.get("oneOf") or []
    kinds = [str(o.get("type") or ("one of " + _short(o.get("enum"), 80) if "enum" in o
                                   else "a constant"))
             for o in options if isinstance(o, dict)]
    return " or ".join(kinds) or "another value"


@dataclass
class Bundle:
    """A loaded, verified bundle directory."""

    path: Path
    manifest: dict[str, Any]

    def file(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise BundleError(f"{self.path}: the manifest lists no file {name!r}")
        return self.path / name

    @property
    def stages(self) -> list[dict[str, Any]]:
        return self.manifest["stages"]

    @property
    def exits(self) -> list[dict[str, Any]]:
        return self.manifest["exits"]

    @property
    def has_int8_stages(self) -> bool:
        """Every stage has its int8 TFLite file (an int8 export, or halves split from one)."""
        return bool(self.stages) and all("tflite_int8" in s["files"] for s in self.stages)


def load_bundle(path: Path | str, verify_checksums: bool = True) -> Bundle:
    """Read and check a bundle; raises :class:`BundleError` naming what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"bundle {path} does not exist or is not a directory; create one "
                          "with `eedge export`")
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{path} has no {MANIFEST_NAME}; it is not an eedge bundle")
    manifest = parse_manifest(manifest_path)
    validate_manifest(manifest, str(path))
    _check_file_entries(manifest, path)
    if verify_checksums:
        for name, entry in manifest["files"].items():
            file_path = path / name
            if not file_path.is_file():
                raise BundleError(f"{path}: file {name} listed in the manifest is missing; "
                                  "re-export the bundle")
            if sha256_file(file_path) != entry["sha256"]:
                raise BundleError(f"{path}: file {name} does not match its sha256 in the "
                                  "manifest (modified or corrupted); re-export the bundle")
    check_stage_files(manifest, path, verified=verify_checksums)
    return Bundle(path=path, manifest=manifest)


def _check_file_entries(manifest: Mapping[str, Any], path: Path) -> None:
    files = manifest["files"]
    referenced = [manifest["model"]["file"], *manifest["model"].get("files", {}).values()] + [
        f for stage in manifest["stages"] for f in stage["files"].values()]
    for name in referenced:
        if name not in files:
            raise BundleError(f"{path}: manifest refers to {name}, which has no checksum "
                              "entry; the manifest was edited by hand: re-export")


def file_entries(directory: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    return {name: {"sha256": sha256_file(directory / name),
                   "bytes": (directory / name).stat().st_size} for name in sorted(names)}


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest via a temp file and rename (never half-written)."""
    validate_manifest(manifest, str(directory))
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=".manifest-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            # strict JSON: the loader refuses NaN/Infinity, so never write them
            json.dump(manifest, out, indent=2, sort_keys=False, allow_nan=False)
            out.write("\n")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; bundles are shared
        os.replace(tmp, directory / MANIFEST_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _listing(directory: Path, limit: int = 3) -> str:
    names = sorted(p.name for p in directory.iterdir())
    if not names:
        return "it is empty"
    shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit
                                        else "")
    return f"it holds {shown}"


def check_replaceable(out: Path, force: bool, marker: str) -> None:
    """Refuse to replace anything eedge did not make.

    ``--force`` replaces a previous bundle or project, recognised by ``marker``
    (the manifest, a project's ``eedge-project.json``). A source tree or a home
    folder passed as ``--out`` by mistake must never be deleted, and a symbolic
    link is not followed: replacing it would delete what it points to.
    """
    if out.is_symlink():
        raise BundleError(f"{out} is a symbolic link; eedge does not write through links: "
                          "choose another --out")
    if not out.exists():
        return
    if not out.is_dir():
        raise BundleError(f"{out} exists and is not a directory; choose another --out")
    if not force:
        raise BundleError(f"{out} already exists; pass --force to replace it")
    if not (out / marker).is_file():
        raise BundleError(f"{out} was not made by eedge (no {marker}; {_listing(out)}); "
                          "--force only replaces eedge's own output: choose another --out")


@contextmanager
def staging_directory(out: Path, force: bool, marker: str = MANIFEST_NAME) -> Iterator[Path]:
    """Yield a temp dir beside ``out``; on success it becomes ``out`` atomically.

    Any exception (including Ctrl-C) removes the temp dir, so ``out`` is
    either absent, the old bundle, or the complete new one. An existing
    ``out`` is only replaced with ``force`` and only if ``marker`` shows that
    eedge made it (see :func:`check_replaceable`).
    """
    out = Path(os.path.abspath(out))  # absolute, but a final symlink is not resolved
    check_replaceable(out, force, marker)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The name is chosen before the directory exists and made inside the try: a signal
    # that lands right after mkdtemp returned (before the try) once left the temp dir
    # behind. 64 random bits make a name clash with another writer practically impossible.
    tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(8)}"
    try:
        os.mkdir(tmp, 0o777)  # the umask applies: a bundle is as readable as other files
        yield tmp
        if out.exists():
            check_replaceable(out, force, marker)  # still ours after the work?
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, old / "bundle")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def update_manifest(bundle: Bundle, change: Callable[[dict[str, Any]], None]) -> Bundle:
    """Apply ``change`` to a copy of the manifest and write it atomically."""
    manifest = json.loads(json.dumps(bundle.manifest))
    change(manifest)
    write_manifest(bundle.path, manifest)
    return Bundle(path=bundle.path, manifest=manifest)
