"""Quoting a user value inside a message: escaped, and only a short prefix of it."""

from __future__ import annotations


def quoted(value: object, limit: int = 40) -> str:
    """`repr` (so controls and escapes show as `\\x1b`, never act), cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def printable(text: str) -> str:
    """`text` safe to print on a terminal: controls, invisible and direction characters escaped
    (`\\x1b`, `\\u202e`), everything else kept, so a name cannot forge or hide output lines."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
