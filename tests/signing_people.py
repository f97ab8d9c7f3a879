"""The example policy's people and documents, for the tests that sign governance statements."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PEOPLE = (
    "bob@example.com",
    "dan@example.com",
    "carol@example.com",
    "erin@example.com",
    "cfo@example.com",
)
