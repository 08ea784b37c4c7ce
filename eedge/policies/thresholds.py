"""Per-exit thresholds given by hand: how many a bundle takes, parsing and validation.

One parser and one validator for every command that takes thresholds
(``eedge run --thresholds``, ``eedge thresholds``), so a count or a value one
command refuses is refused by all, with the same message; the manifest
writer (``apply.record_thresholds``) validates with the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from eedge.errors import InputDataError

# every criterion scores in [0, 1] (see criteria.py): a threshold outside it either
# never or always exits, which "none" or 0 say honestly
CRITERION_RANGES = {"max_softmax": (0.0, 1.0), "margin": (0.0, 1.0), "entropy": (0.0, 1.0),
                    "gate": (0.0, 1.0)}
NONE_WORDS = ("none", "never", "-")


def deciding_exits(manifest: Mapping[str, Any]) -> int:
    """How many exits (the first ones) decide with a threshold.

    All but the final exit, which always decides; a split head bundle has no
    final exit (what its exits keep goes to the server), and with an exit
    ensemble its members decide together, whatever their thresholds (unless
    the ensemble is a running mean, whose members each decide with theirs).
    """
    exits = len(manifest["exits"])
    if (manifest.get("split") or {}).get("role") == "head":
        return exits
    if (manifest.get("ensemble") or {}).get("mode") == "running_mean":
        return exits - 1
    members = (manifest.get("ensemble") or {}).get("members") or []
    return min(members) if members else exits - 1


def _count_hint(manifest: Mapping[str, Any]) -> str:
    exits = len(manifest["exits"])
    count = deciding_exits(manifest)
    if (manifest.get("split") or {}).get("role") == "head":
        why = "one per exit (a head bundle has no final exit)"
    elif count < exits - 1:
        why = f"one per exit before the ensemble of exits {count}..{exits - 1}"
    else:
        why = "one per early exit; the final exit always decides"
    plural = "exit" if exits == 1 else "exits"
    if count == 0:
        return f"the bundle has {exits} {plural} and none takes a threshold ({why})"
    return f"the bundle has {exits} {plural}: give {count} ({why})"


def parse_thresholds(text: str, manifest: Mapping[str, Any],
                     option: str = "--thresholds") -> list[float | None]:
    """``0.9,0.8`` (or ``none`` for an exit that never stops) -> one value per exit.

    Exactly one value per deciding exit: a value too many is refused as much
    as one too few (it would otherwise be silently ignored). Exits that do
    not decide get None.
    """
    parts = [p.strip().lower() for p in text.split(",")]
    count = deciding_exits(manifest)
    if len(parts) != count:
        raise InputDataError(f"{option} has {len(parts)} "
                             f"value{'s' if len(parts) != 1 else ''}; {_count_hint(manifest)}")
    values: list[float | None] = []
    for part in parts:
        if part in NONE_WORDS:
            values.append(None)
            continue
        try:
            values.append(float(part))
        except ValueError:
            raise InputDataError(f"bad threshold {part!r} in {option}; write numbers in [0, 1] "
                                 "separated by commas, or 'none' for an exit that never "
                                 "stops") from None
    return values + [None] * (len(manifest["exits"]) - count)


def check_thresholds(thresholds: Sequence[float | None], criteria: Sequence[str]) -> None:
    """Every threshold finite and inside its criterion's score range, else one error."""
    for k, (t, criterion) in enumerate(zip(thresholds, criteria)):
        if criterion not in CRITERION_RANGES:
            raise InputDataError(f"unknown criterion {criterion!r} for exit{k}; use one of "
                                 f"{', '.join(CRITERION_RANGES)}")
        if t is None:
            continue
        low, high = CRITERION_RANGES[criterion]
        if not (isinstance(t, (int, float)) and math.isfinite(t)):
            raise InputDataError(f"threshold {t} for exit{k} is not a finite number; give one "
                                 f"in the {criterion} score range [{low:g}, {high:g}], or "
                                 "'none' for an exit that never stops")
        if not low <= t <= high:
            raise InputDataError(f"threshold {t} for exit{k} is outside the {criterion} score "
                                 f"range [{low:g}, {high:g}]; give a number in it, or 'none' "
                                 "for an exit that never stops")
