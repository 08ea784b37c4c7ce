"""Click option types for numbers: bounded, finite, one place.

``type=float`` accepts ``nan``, ``inf`` and ``1e999``, and a NaN then passes
every comparison; a bare ``default=1`` int accepts ``--threads 100000`` (which
started 28,306 threads) or ``-5``. Every numeric option of every command takes
one of these types instead, so bad numbers are usage errors (exit 2) that say
the accepted range.
"""

from __future__ import annotations

import os
from typing import Any

import click

from eedge.errors import InputDataError
from eedge.numbers import parse_float

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
        """The rules of :func:`eedge.numbers.parse_float`, reported as a usage error."""
        try:
            return parse_float(value, "", self.min, self.max, self.min_open)
        except InputDataError as exc:
            self.fail(str(exc).removeprefix(": "), param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "NUMBER"


def threads_option(help_text: str) -> Any:
    """``--threads N`` bounded to 1..MAX_THREADS (default 1)."""
    return click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=1,
                        show_default=True, help=f"{help_text} (1..{MAX_THREADS}).")
