"""Split computing: choose a head/tail cut, encode hand-offs, serve the tail.

``eedge.split.Client`` is the device-side entry point the README documents. It is
resolved lazily so that importing the planner or the hand-off codec does not load
the runtimes the client needs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Client", "SplitResult"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from eedge.split import client

        return getattr(client, name)
    raise AttributeError(f"module 'eedge.split' has no attribute {name!r}")
