"""The SSH wire encoding (RFC 4251 section 5) that SSH keys and signatures are written in."""

from __future__ import annotations


class WireError(ValueError):
    """Bytes that do not decode as the expected SSH wire fields."""


def string(data: bytes) -> bytes:
    """`string`: uint32 length, then the bytes."""
    return len(data).to_bytes(4, "big") + data


def mpint(value: int) -> bytes:
    """`mpint` of a non-negative integer: big-endian, a leading zero when the top bit is set."""
    if value < 0:
        raise WireError("mpint: negative values are not used here")
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b""
    return string(raw)


class Reader:
    """Reads fields from a blob; every read is bounded by what is left (no huge allocations)."""

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._at = 0

    def raw(self, size: int) -> bytes:
        if size > len(self._data) - self._at:
            raise WireError("truncated: a field runs past the end")
        chunk = self._data[self._at : self._at + size]
        self._at += size
        return chunk

    def byte(self) -> int:
        return self.raw(1)[0]

    def uint32(self) -> int:
        return int.from_bytes(self.raw(4), "big")

    def string(self) -> bytes:
        return self.raw(self.uint32())

    def text(self) -> str:
        try:
            return self.string().decode("utf-8")
        except UnicodeDecodeError:
            raise WireError("a name field is not UTF-8") from None

    def mpint(self) -> int:
        raw = self.string()
        if raw and raw[0] & 0x80:
            raise WireError("mpint: negative")
        if len(raw) > 1 and raw[0] == 0 and not raw[1] & 0x80:
            raise WireError("mpint: not minimally encoded")
        return int.from_bytes(raw, "big")

    def done(self) -> None:
        if self._at != len(self._data):
            raise WireError("trailing data after the last field")
