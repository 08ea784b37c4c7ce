"""``eedge thresholds``: show a bundle's per-exit thresholds, or set them by hand.

Calibration chooses thresholds from data; this command is for when you know
the ones you want (from your own analysis, or to try one on a device). They
go into the manifest exactly as calibrate's do, so ``eedge codegen`` and
``eedge run --target`` (which take thresholds only from the bundle) use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from eedge.cli.console import debug_option, json_option, out_console, print_json
from eedge.policies.criteria import CRITERIA

METHOD = "set by hand (eedge thresholds)"


@click.command("thresholds")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("values", required=False)
@click.option("--criterion", type=click.Choice(list(CRITERIA)),
              help="Score the thresholds are in (default: keep each exit's criterion).")
@json_option
@debug_option
def thresholds(bundle: Path, values: str | None, criterion: str | None, as_json: bool) -> None:
    """Show BUNDLE's exit thresholds, or set them to VALUES (for firmware too).

    VALUES is one threshold per early exit, comma-separated, in the
    criterion's score range [0, 1] ('none': that exit never stops a sample;
    the final exit always decides). They are validated and written to the
    manifest atomically, recorded as set by hand; the bundle's calibration
    statistics, which described other thresholds, are removed.

    \b
    Examples:
      eedge thresholds bundle                      # show the current ones
      eedge thresholds bundle 0.9,0.8
      eedge thresholds bundle 0.3,none --criterion margin
      eedge run bundle --input test.npz --target host   # the C runtime uses them
    """
    from eedge.ir.bundle import load_bundle
    from eedge.policies.apply import record_thresholds
    from eedge.policies.thresholds import parse_thresholds

    loaded = load_bundle(bundle)
    if values is None and criterion is not None:
        raise click.UsageError("--criterion changes what every threshold means: give the "
                               "thresholds too, e.g. `eedge thresholds BUNDLE 0.3,0.2 "
                               "--criterion margin`")
    if values is not None:
        loaded = record_thresholds(loaded, parse_thresholds(values, loaded.manifest, "VALUES"),
                                   criterion, METHOD)
    rows = _rows(loaded.manifest)
    if as_json:
        print_json({"bundle": str(loaded.path), "written": values is not None, "exits": rows})
        return
    table = Table(title=f"{escape(str(loaded.path))}: {len(rows)} exits")
    integer = any("threshold_q" in r for r in rows)
    windows = any("window_low" in r for r in rows)  # selective: rejected below window_low
    columns = ["exit", "criterion", "threshold"] + (["int8 score ≥"] if integer else []) + (
        ["reject below"] if windows else []) + ["method"]
    for name in columns:
        table.add_column(name, justify="left" if name == "method" else "right")
    for r in rows:
        shown = r["role"] if r["role"] != "early" else (
            "never" if r["threshold"] is None else f"{r['threshold']:.4f}")
        device = [] if not integer else [
            "-" if r.get("threshold_q") is None else str(r["threshold_q"])]
        window = [] if not windows else [
            "-" if r.get("window_low") is None else f"{r['window_low']:.4f}"]
        table.add_row(f"exit{r['index']}", r["criterion"], shown, *device, *window,
                      escape(r["method"] or "-"))  # manifest text: never markup
    out_console.print(table)
    if values is not None:
        out_console.print(f"thresholds written to {escape(str(loaded.path))}/manifest.json; "
                          "`eedge codegen` "
                          "and `eedge run --target` use them")


def _rows(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per exit: its role, criterion, threshold, and the device's integer for it."""
    from eedge.policies.fixed_point import gate_quant, threshold_q
    from eedge.policies.running_mean import running_members, sum_threshold_q
    from eedge.policies.thresholds import deciding_exits

    count = deciding_exits(manifest)
    ensemble = bool((manifest.get("ensemble") or {}).get("members"))
    int8 = all("tflite_int8" in s["files"] for s in manifest["stages"])
    rows = []
    for k, e in enumerate(manifest["exits"]):
        policy = e["policy"]
        role = "early" if k < count else ("ensemble" if ensemble else "final")
        row: dict[str, Any] = {"index": k, "role": role, "criterion": policy["criterion"],
                               "threshold": policy["threshold"] if role == "early" else None,
                               "method": policy.get("method")}
        if policy.get("window_low") is not None:
            row["window_low"] = policy["window_low"]
        members = running_members(manifest)
        if int8 and role == "early" and policy["threshold"] is not None and k in members:
            # a running-mean member compares the ensemble's integer sum (running_mean.py)
            row["threshold_q"] = sum_threshold_q(policy["threshold"], False,
                                                 policy["criterion"], int(e["num_classes"]),
                                                 members.index(k) + 1)
        elif int8 and role == "early" and policy["threshold"] is not None:
            row["threshold_q"] = threshold_q(policy["threshold"], False, policy["criterion"],
                                            int(e["num_classes"]), gate_quant(e))
        rows.append(row)
    return rows
