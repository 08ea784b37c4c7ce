"""Make foreign text (library exceptions, tool output) safe for one-line messages.

Other libraries put terminal escape codes into their exception text (torch's
``weights_only`` refusal makes a phrase bold with ``ESC[1m``) and tools put
line breaks into theirs. Quoted into an eedge error, either would break the
promise of one plain line on stderr, and escapes would end up in log files
and JSON.
"""

from __future__ import annotations

import re

# CSI sequences (colors, cursor moves), OSC sequences (titles, hyperlinks) and
# two-byte escapes; then any other C0/C1 control character except tab and newline.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]?")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain_text(text: str) -> str:
    """``text`` without terminal escape sequences or control characters."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def one_line(text: str, limit: int | None = None) -> str:
    """Plain ``text`` with its lines joined by "; " (and cut to ``limit`` characters)."""
    lines = [ln.strip() for ln in plain_text(text.replace("\r", "\n")).splitlines()]
    joined = "; ".join(ln for ln in lines if ln)
    if limit is not None and len(joined) > limit:
        joined = joined[: limit - 1].rstrip() + "…"
    return joined
