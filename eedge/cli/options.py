"""Click option types for numbers: bounded, finite, one place.

``type=float`` accepts ``nan``, ``inf`` and ``1e999``, and a NaN then passes
every comparison; a bare ``default=1`` int accepts ``--threads 100000`` (which
started 28,306 threads) or ``-5``. Every numeric option of every command takes
one of these types instead, so bad numbers are usage errors (exit 2) that say
the accepted range.
"""

from __future__ import annotations

import math
import os
from typing import Any

import click

#: Most threads any command starts: far more than helps, far fewer than hurts.
MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))


class FiniteFloat(click.ParamType):
    """A finite float, optionally bounded (``min_open``: strictly above ``min``)."""

    name = "number"

    def __init__(self, min: float | None = None, max: float | None = None,  # noqa: A002
                 min_open: bool = False) -> None:
        self.min, self.max, self.min_open = min, max, min_open

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float) and math.isfinite(value):
            number = value
        else:
            try:
                number = float(str(value).strip())
            except (ValueError, OverflowError):
                self.fail(f"{str(value)[:40]!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{str(value)[:40]!r} is not a finite number", param, ctx)
        low = self.min is not None and (number <= self.min if self.min_open
                                        else number < self.min)
        if low or (self.max is not None and number > self.max):
            self.fail(f"{number:g} is not in {self._range()}", param, ctx)
        return number

    def _range(self) -> str:
        lo = "-inf" if self.min is None else f"{self.min:g}"
        hi = "inf" if self.max is None else f"{self.max:g}"
        return f"{'(' if self.min_open or self.min is None else '['}{lo}, {hi}]"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "NUMBER"


def threads_option(help_text: str) -> Any:
    """``--threads N`` bounded to 1..MAX_THREADS (default 1)."""
    return click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=1,
                        show_default=True, help=f"{help_text} (1..{MAX_THREADS}).")
