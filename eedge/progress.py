"""The two callbacks through which long library work reports progress.

The library never draws anything (it may run inside a server, a notebook or a
test); the CLI turns these calls into a live display on stderr
(``eedge.cli.progress``). Both are optional everywhere they are accepted.
"""

from __future__ import annotations

from collections.abc import Callable

Say = Callable[[str], None]
"""A phase begins: ``say("building the firmware")``."""

Tick = Callable[[int, int], None]
"""A counted loop moved on: ``tick(done, total)`` (samples, timing passes)."""


def quiet_say(_text: str) -> None:
    """A :data:`Say` that reports nothing."""


def quiet_tick(_done: int, _total: int) -> None:
    """A :data:`Tick` that reports nothing."""
