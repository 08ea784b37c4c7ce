"""Write chosen exit thresholds into a bundle's manifest (atomically)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eedge.errors import InputDataError
from eedge.ir.bundle import Bundle, update_manifest


def write_thresholds(bundle: Bundle, thresholds: Sequence[float | None],
                     method: str) -> Bundle:
    """Store one threshold per exit; ``method`` records how they were chosen."""
    if len(thresholds) != len(bundle.exits):
        raise InputDataError(f"got {len(thresholds)} thresholds for {len(bundle.exits)} exits")
    for t in thresholds:
        if t is not None and not 0.0 <= t <= 1.0:
            raise InputDataError(f"threshold {t} is outside [0, 1]")

    def change(manifest: dict[str, Any]) -> None:
        for entry, threshold in zip(manifest["exits"], thresholds):
            entry["policy"]["threshold"] = threshold
            entry["policy"]["method"] = method

    return update_manifest(bundle, change)
