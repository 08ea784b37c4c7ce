"""Write chosen exit thresholds into a bundle's manifest (atomically).

Everything that sets thresholds (``eedge calibrate``, ``eedge thresholds``,
the demo) goes through here, so the manifest records them the same way: the
exit's ``policy`` (criterion, threshold, method), validated, written via a
temporary file and a rename. Only ``manifest.json`` changes, and it is not
among the checksummed files, so every checksum stays valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from eedge.errors import InputDataError
from eedge.ir.bundle import Bundle, update_manifest
from eedge.policies.thresholds import check_thresholds


def write_thresholds(bundle: Bundle, thresholds: Sequence[float | None],
                     method: str) -> Bundle:
    """Store one threshold per exit, keeping each exit's criterion and window."""
    if len(thresholds) != len(bundle.exits):
        raise InputDataError(f"got {len(thresholds)} thresholds for {len(bundle.exits)} exits")
    check_thresholds(thresholds, [e["policy"]["criterion"] for e in bundle.exits])

    def change(manifest: dict[str, Any]) -> None:
        for entry, threshold in zip(manifest["exits"], thresholds):
            entry["policy"]["threshold"] = threshold
            entry["policy"]["method"] = method

    return update_manifest(bundle, change)


def record_thresholds(bundle: Bundle, thresholds: Sequence[float | None],
                      criterion: str | None, method: str,
                      calibration: Mapping[str, Any] | None = None) -> Bundle:
    """Set every exit's policy to ``criterion`` (None: keep each exit's) and a threshold.

    ``calibration`` (the search's statistics) replaces the manifest's
    ``calibration`` section; without it the section is removed, since it
    would describe thresholds the bundle no longer has. A window
    (``window_low``) survives only where the criterion stays the same: it is
    a score of that criterion.
    """
    if len(thresholds) != len(bundle.exits):
        raise InputDataError(f"got {len(thresholds)} thresholds for {len(bundle.exits)} exits")
    criteria = [criterion or e["policy"]["criterion"] for e in bundle.exits]
    check_thresholds(thresholds, criteria)

    def change(manifest: dict[str, Any]) -> None:
        for entry, threshold, name in zip(manifest["exits"], thresholds, criteria):
            policy = {"criterion": name, "threshold": threshold, "method": method}
            old = entry["policy"]
            if old.get("window_low") is not None and old["criterion"] == name:
                policy["window_low"] = old["window_low"]
            entry["policy"] = policy
        if calibration is not None:
            manifest["calibration"] = finite_or_null(dict(calibration))
        else:
            manifest.pop("calibration", None)

    return update_manifest(bundle, change)


def finite_or_null(value: Any) -> Any:
    """Statistics for the manifest: NaN/inf (an undefined accuracy, an unbounded cost) as null.

    The manifest is strict JSON and the loader refuses non-finite numbers, so
    writing one would leave a bundle no command can open again.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "tolist") and not isinstance(value, (list, dict, str)):
        return finite_or_null(value.tolist())  # numpy scalars and arrays
    if isinstance(value, Mapping):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value
