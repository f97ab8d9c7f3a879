"""Identities (e-mail-like names of people and pipelines) compared the one canonical way."""

from __future__ import annotations


def canonical_identity(identity: str) -> str:
    """The form identities are compared in: surrounding space stripped, case folded."""
    return identity.strip().casefold()


def same_identity(a: str, b: str) -> bool:
    return canonical_identity(a) == canonical_identity(b)
