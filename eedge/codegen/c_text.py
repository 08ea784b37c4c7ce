"""User text (model names, source paths) placed into generated C, made inert.

A model or folder name is the user's: a ``*/`` would end the comment it sits in, a
quote or backslash would end or bend a string literal, and ``??/`` is a backslash
under ``-std=c99`` (trigraphs). Everything else in the generated C is eedge's own.
"""

from __future__ import annotations


def c_comment_text(text: str) -> str:
    """Text safe inside ``/* ... */``: one line, no comment terminator."""
    flat = "".join(ch if ch.isprintable() else "?" for ch in text)
    return flat.replace("*/", "* /")


def c_string_body(text: str) -> str:
    """The inside of a C string literal that reads back as ``text`` (UTF-8 bytes)."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\?':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")  # octal escapes take at most three digits
    return "".join(out)
