"""One JSON writer for everything eedge prints or sends: standard JSON only.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which strict
parsers (JavaScript's ``JSON.parse``, Go, jq) reject. eedge never has a
reason to emit them (inputs are checked to be finite, undefined statistics
are ``null``), so a non-finite number reaching the writer is a bug: it fails
loudly, naming where the value sits, rather than writing invalid JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python values (``default`` hook of json.dumps)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _where_nonfinite(data: Any, path: str = "$") -> str | None:
    data = _plain(data) if hasattr(data, "tolist") else data
    if isinstance(data, float) and not math.isfinite(data):
        return path
    if isinstance(data, dict):
        items = ((f"{path}.{k}", v) for k, v in data.items())
    elif isinstance(data, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(data))
    else:
        return None
    for where, value in items:
        found = _where_nonfinite(value, where)
        if found:
            return found
    return None


def dumps(data: Any, indent: int | None = None) -> str:
    """``json.dumps`` with ``allow_nan=False`` and numpy values converted.

    Raises ValueError naming the first non-finite value's path (e.g.
    ``$.exits[1].ece``) instead of writing ``NaN``.
    """
    try:
        return json.dumps(data, indent=indent, default=_plain, allow_nan=False)
    except ValueError as exc:
        where = _where_nonfinite(data)
        if where is None:
            raise
        raise ValueError(f"non-finite number at {where} in JSON output (eedge never "
                         "writes NaN or Infinity)") from exc
