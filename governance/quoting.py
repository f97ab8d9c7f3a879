"""Quoting a user value inside a message: escaped, and only a short prefix of it."""

from __future__ import annotations


def quoted(value: object, limit: int = 40) -> str:
    """`repr` (so controls and escapes show as `\\x1b`, never act), cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
