"""Evidence chain: append-only, hash-linked entries an auditor can verify on their own.

INTERFACE STUB — the governance work implements it; names and signatures are the contract.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

GENESIS = "0" * 64


def canonical_json(obj: Any) -> str:
    raise NotImplementedError


def sha256_hex(data: bytes) -> str:
    raise NotImplementedError


class EvidenceChain:
    def __init__(self, release_id: str, entries: list[dict[str, Any]] | None = None) -> None:
        raise NotImplementedError

    def append(self, kind: str, actor: str, data: dict[str, Any], at: datetime | str) -> dict:
        """Append and return the entry {seq, at, kind, actor, data, prev, hash}."""
        raise NotImplementedError

    @property
    def head(self) -> str:
        raise NotImplementedError

    @property
    def entries(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def bundle(self) -> dict[str, Any]:
        """{"release_id", "entries", "head"}."""
        raise NotImplementedError


def verify(bundle: dict[str, Any]) -> int | None:
    """Return the seq of the first broken entry, or None when the chain holds."""
    raise NotImplementedError
