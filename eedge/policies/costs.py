"""What a sample costs when it leaves at each exit: MACs, or latency from a profile.

A latency profile is in milliseconds (host, SSH) or in the device's own
unit: instructions (QEMU, exact under -icount) or cycles (boards). The
latter carry per-stage millisecond estimates from the target's clock, so a
millisecond budget can use them, labelled as estimates with the profile's
basis (e.g. "1.0 cycles per instruction at 25 MHz") wherever they are shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from eedge.errors import InputDataError
from eedge.ir.bundle import Bundle


@dataclass
class ExitCosts:
    values: list[float]          # cost of a sample leaving at each exit (cumulative)
    unit: str                    # "MACs" or "ms"
    basis: str | None = None     # how the values were estimated; None when measured

    @property
    def estimated(self) -> bool:
        return self.basis is not None

    def label(self) -> str:
        """The unit, marked when it is an estimate (for tables)."""
        return f"{self.unit} (estimate)" if self.estimated else self.unit


def mac_costs(bundle: Bundle) -> ExitCosts:
    return ExitCosts([float(e["cumulative_macs"]) for e in bundle.exits], "MACs")


def latency_costs(bundle: Bundle, report: Any, source: str) -> ExitCosts:
    """Milliseconds to each exit from an ``eedge profile`` report (a dict).

    Measured milliseconds are used as they are; instruction or cycle
    profiles through their per-stage millisecond estimates.
    """
    try:
        unit = report["unit"]
        exits = report["exits"]
        cumulative = [float(e["cumulative"]) for e in exits]
        exit_stages = [int(e["stage"]) for e in exits]
        stages = report["stages"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputDataError(f"{source} is not a report from `eedge profile --report` "
                             f"(missing or bad field {exc})") from None
    if len(cumulative) != len(bundle.exits):
        raise InputDataError(f"{source} describes {len(cumulative)} exits; the bundle has "
                             f"{len(bundle.exits)}: profile this bundle")
    if unit == "ms":
        return ExitCosts(cumulative, "ms")
    estimates = [(s.get("estimates") or {}).get("ms") if isinstance(s, Mapping) else None
                 for s in stages]
    if not estimates or any(v is None for v in estimates) or max(exit_stages) >= len(estimates):
        raise InputDataError(f"{source} is in {unit} with no millisecond estimates per stage: "
                             "use --budget-macs, or a profile from `eedge profile` with a "
                             "target that has clock_hz")
    running = np.cumsum([float(v) for v in estimates])
    environment = report.get("environment") or {}
    basis = str(environment.get("estimate_basis") or "the target's clock")
    basis = basis.removesuffix(" (estimate)")
    return ExitCosts([float(running[s]) for s in exit_stages], "ms",
                     f"ms estimated from {report.get('target', 'the target')}'s {unit} "
                     f"({basis})")
