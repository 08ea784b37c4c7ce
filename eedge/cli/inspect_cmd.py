"""``eedge inspect``: show a bundle and prove its files are the ones exported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from eedge.cli.console import debug_option, json_option, out_console, print_json
from eedge.cli.tables import human_bytes, stage_table, summary_lines
from eedge.ir.bundle import load_bundle


@click.command("inspect")
@click.argument("bundle", type=click.Path(path_type=Path))
@json_option
@debug_option
def command(bundle: Path, as_json: bool) -> None:
    """Print BUNDLE's stages and exits and verify every file's sha256.

    A missing, modified or corrupted file is an error that names it.

    \b
    Example:
      eedge inspect demo-out/bundle
    """
    loaded = load_bundle(bundle, verify_checksums=True)
    manifest = loaded.manifest
    if as_json:
        print_json({"bundle": str(loaded.path), "checksums": "ok", "manifest": manifest})
        return
    # names, versions and methods are user text: never read as rich markup
    out_console.print(stage_table(_escaped(manifest)))
    for line in summary_lines(manifest):
        out_console.print(line, markup=False)
    for stage in manifest["stages"]:
        ins = ", ".join(f"{t['name']}{t['shape']}" for t in stage["inputs"])
        outs = ", ".join(f"{t['name']}{t['shape']}" for t in stage["outputs"])
        out_console.print(f"  {stage['name']}: {ins} -> {outs}", markup=False)
    for note in manifest["model"].get("notes", []):  # what import changed in the model
        out_console.print(f"note: {note}", markup=False)
    total = sum(f["bytes"] for f in manifest["files"].values())
    out_console.print(f"{len(manifest['files'])} files, {human_bytes(total)}, all sha256 "
                      f"checksums match (eedge {manifest['eedge_version']}, schema "
                      f"v{manifest['schema_version']})", markup=False)


def _escaped(value: Any) -> Any:
    """A copy with every string markup-escaped, for the table (its title and cells are markup)."""
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value
