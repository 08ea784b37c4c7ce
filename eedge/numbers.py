"""Numbers typed by users (options, comma-separated lists): finite or refused.

``float("nan")``, ``float("inf")`` and ``float("1" * 400)`` (= inf) all parse,
and a NaN then slips through every ``<``/``>`` check (each is False) to print
as "nan%" or poison a search. Every float eedge reads from a command line goes
through :func:`parse_float`, which refuses non-finite values and checks a range.
"""

from __future__ import annotations

import math

from eedge.errors import InputDataError


def parse_float(text: str, option: str, low: float | None = None, high: float | None = None,
                low_open: bool = False) -> float:
    """``text`` as a finite float in [low, high] (``(low, high]`` with ``low_open``)."""
    try:
        value = float(str(text).strip())
    except (ValueError, OverflowError):
        raise InputDataError(f"{option}: {str(text)[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise InputDataError(f"{option}: {str(text)[:40]!r} is not a finite number")
    check_range(value, option, low, high, low_open)
    return value


def check_range(value: float, option: str, low: float | None = None,
                high: float | None = None, low_open: bool = False) -> None:
    """Raise InputDataError unless ``value`` is finite and inside the range."""
    if not math.isfinite(value):
        raise InputDataError(f"{option}: {value} is not a finite number")
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        bracket = "(" if low_open or low is None else "["
        raise InputDataError(f"{option}: {value:g} is outside {bracket}{lo}, {hi}]")


def parse_floats(text: str, option: str, low: float | None = None,
                 high: float | None = None, count: int | None = None,
                 max_count: int = 4096) -> list[float]:
    """A comma-separated list of finite floats (``count`` of them, if given)."""
    parts = str(text).split(",")
    if len(parts) > max(max_count, count or 0):
        raise InputDataError(f"{option}: {len(parts)} values is too many")
    if count is not None and len(parts) != count:
        raise InputDataError(f"{option}: needs {count} comma-separated values, got "
                             f"{len(parts)}")
    return [parse_float(p, option, low, high) for p in parts]
