"""Evidence chain: append-only, hash-linked entries an auditor can verify on their own.

Each entry is `{seq, at, kind, actor, data, prev, hash}`: `seq` counts from 0, `at` is an
ISO 8601 string, `prev` is the previous entry's hash (64 zeros for the first) and
`hash = sha256_hex((prev + canonical_json(entry without "hash")).encode())`. The bundle is
`{"release_id", "entries", "head"}` with `head` the last hash (64 zeros when empty).
`data` is stored as its JSON round trip, so an entry hashes the same after being written
to a file and read back. A head that does not match the last entry (a truncated chain)
is reported as a break at `seq = len(entries)`.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

GENESIS = "0" * 64
ENTRY_KEYS = frozenset({"seq", "at", "kind", "actor", "data", "prev", "hash"})


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, UTF-8 characters kept: the same data, the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry_hash(entry: dict[str, Any]) -> str:
    """The hash an entry must carry, computed from its other fields."""
    body = {key: value for key, value in entry.items() if key != "hash"}
    return sha256_hex((str(entry.get("prev", "")) + canonical_json(body)).encode("utf-8"))


@dataclass(frozen=True)
class Break:
    """Where and why a chain does not hold."""

    seq: int
    reason: str


class EvidenceChain:
    """The evidence of one release; rebuild it from stored entries to keep appending."""

    def __init__(self, release_id: str, entries: list[dict[str, Any]] | None = None) -> None:
        self.release_id = release_id
        self._entries: list[dict[str, Any]] = copy.deepcopy(list(entries or []))
        broken = find_break(self.bundle())
        if broken is not None:
            raise ValueError(f"evidence entry {broken.seq} is broken: {broken.reason}")

    def append(self, kind: str, actor: str, data: dict[str, Any], at: datetime | str) -> dict:
        """Append and return the entry {seq, at, kind, actor, data, prev, hash}."""
        entry: dict[str, Any] = {
            "seq": len(self._entries),
            "at": at.isoformat() if isinstance(at, datetime) else str(at),
            "kind": kind,
            "actor": actor,
            "data": json.loads(canonical_json(data)),  # TypeError when not JSON data
            "prev": self.head,
        }
        entry["hash"] = entry_hash(entry)
        self._entries.append(entry)
        return copy.deepcopy(entry)

    @property
    def head(self) -> str:
        return self._entries[-1]["hash"] if self._entries else GENESIS

    @property
    def entries(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._entries)

    def bundle(self) -> dict[str, Any]:
        """{"release_id", "entries", "head"}."""
        return {"release_id": self.release_id, "entries": self.entries, "head": self.head}


def find_break(bundle: Any) -> Break | None:
    """The first entry that breaks the chain and why, or None when it holds."""
    if not isinstance(bundle, dict) or not isinstance(bundle.get("entries"), list):
        return Break(0, "not an evidence bundle: expected {release_id, entries, head}")
    prev = GENESIS
    for index, entry in enumerate(bundle["entries"]):
        if not isinstance(entry, dict) or set(entry) != ENTRY_KEYS:
            return Break(index, f"fields must be exactly {', '.join(sorted(ENTRY_KEYS))}")
        if entry["seq"] != index or isinstance(entry["seq"], bool):
            return Break(index, f"seq is {entry['seq']!r}, expected {index}")
        if entry["prev"] != prev:
            return Break(index, "prev does not match the hash of the entry before")
        try:
            expected = entry_hash(entry)
        except (TypeError, ValueError):
            return Break(index, "entry is not JSON data")
        if entry["hash"] != expected:
            return Break(index, "hash does not match the entry's content")
        prev = expected
    if bundle.get("head") != prev:
        return Break(len(bundle["entries"]), "head does not match the last entry (truncated?)")
    return None


def verify(bundle: dict[str, Any]) -> int | None:
    """Return the seq of the first broken entry, or None when the chain holds."""
    broken = find_break(bundle)
    return None if broken is None else broken.seq
