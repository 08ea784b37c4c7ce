"""Read ``manifest.json`` as strict, bounded JSON.

Python's ``json`` module is lenient where a manifest must not be: it accepts
``NaN``/``Infinity`` (a NaN threshold never compares, so an exit never fires
or always does), turns ``1e999`` into ``inf``, builds 4,000-digit integers
(and raises a bare ValueError beyond 4,300 digits), lets a repeated key
silently override the first, and recurses until RecursionError on deep
nesting. Every one of these becomes a :class:`BundleError` here, before the
schema sees the document; size and nesting depth are checked on the raw bytes,
before anything is parsed into Python objects.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from eedge.errors import BundleError

MAX_MANIFEST_BYTES = 8 << 20   # a 1,000-stage model's manifest is well under 1 MB
MAX_DEPTH = 32                 # eedge writes 9 levels
MAX_INT_DIGITS = 400           # int() of longer ones costs quadratic time; the schema names
                               # the field of any shorter one that is out of range

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = frozenset(b"[{")


class _Refused(ValueError):
    """Raised from json's hooks; carries the one-line reason."""


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a finite number (JSON has no NaN or infinity)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"{text[:40]} overflows to infinity")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(text.lstrip('-'))} digits is out of range")
    return int(text)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"key {key[:60]!r} appears twice in one object")
            seen.add(key)
    return result


def _check_strings(document: Any) -> None:
    """Refuse escaped lone surrogates (``"\\ud800"``): no printer can encode them."""
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise _Refused("a string holds an unpaired UTF-16 surrogate escape") from None


def nesting_depth(data: bytes) -> int:
    """Deepest bracket nesting of a JSON text, ignoring brackets inside strings."""
    skeleton = _STRING.sub(b"", data).translate(None, delete=bytes(
        c for c in range(256) if c not in b"[]{}"))
    if not skeleton:
        return 0
    steps = np.frombuffer(skeleton, np.uint8)
    depth = np.cumsum(np.where(np.isin(steps, np.frombuffer(bytes(_OPEN), np.uint8)), 1, -1))
    return int(depth.max())


def parse_manifest(path: Path) -> Any:
    """The manifest at ``path`` as Python objects, or a BundleError naming the problem."""
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{path} is {size} bytes; a manifest is at most "
                              f"{MAX_MANIFEST_BYTES >> 20} MiB: the bundle is damaged, "
                              "re-export it")
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_MANIFEST_BYTES:  # grew between stat and read
        raise BundleError(f"{path} is larger than {MAX_MANIFEST_BYTES >> 20} MiB; the bundle "
                          "is damaged: re-export it")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path} is not UTF-8 (byte {exc.start}); the bundle is damaged: "
                          "re-export it") from None
    depth = nesting_depth(data)
    if depth > MAX_DEPTH:
        raise BundleError(f"{path} nests {depth} levels deep (a manifest has at most "
                          f"{MAX_DEPTH}); the bundle is damaged: re-export it")
    try:
        manifest = json.loads(text, parse_constant=_constant, parse_float=_float,
                              parse_int=_int, object_pairs_hook=_object)
        _check_strings(manifest)
        return manifest
    except _Refused as exc:
        raise BundleError(f"{path}: {exc}; the manifest was edited by hand or damaged: "
                          "re-export the bundle") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno} column "
                          f"{exc.colno}); the bundle is damaged: re-export it") from None
    except (ValueError, RecursionError) as exc:
        raise BundleError(f"{path} cannot be read as JSON ({type(exc).__name__}); the bundle "
                          "is damaged: re-export it") from None
