"""Offline audit of recorded statements: each bad record is named with its position and reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from governance import sshsig
from governance.statement_audit import RecordedStatement, audit_statements
from governance.statements import make_statement, sign_statement

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
RELEASE, DIGEST = "FIN-2026-11-042", "ab" * 32
CAROL, BOB = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
KEYS = {
    "carol@example.com": [sshsig.public_key_of(CAROL)],
    "bob@example.com": [sshsig.public_key_of(BOB)],
}


def record(
    key, who: str, kind: str, nonce: str, recorded_at: datetime, **extra
) -> RecordedStatement:
    statement = make_statement(
        kind, release_id=RELEASE, bundle_digest=DIGEST, signer=who, issued_at=T0,
        lifetime=timedelta(minutes=10), nonce=nonce, **extra,
    )  # fmt: skip
    return RecordedStatement(
        statement.canonical().decode(), sign_statement(statement, key), recorded_at
    )


def test_audit_keeps_good_statements_and_names_each_bad_one():
    carol = record(
        CAROL,
        "carol@example.com",
        "approve",
        "nonce-carol-000001",
        T0 + timedelta(minutes=1),
        role="finance",
    )
    bob = record(
        BOB,
        "bob@example.com",
        "approve",
        "nonce-bob-00000001",
        T0 + timedelta(minutes=2),
        role="platform",
    )
    late = record(
        BOB,
        "bob@example.com",
        "promote",
        "nonce-bob-00000002",
        T0 + timedelta(hours=2),
        wave="rest",
    )
    forged = RecordedStatement(
        carol.statement.replace("finance", "platform"), carol.signature, carol.recorded_at
    )
    replayed = RecordedStatement(carol.statement, carol.signature, T0 + timedelta(minutes=3))
    held, findings = audit_statements(
        [carol, bob, late, forged, replayed], release_id=RELEASE, bundle_digest=DIGEST, keys_of=KEYS
    )
    assert [v.identity for v in held] == ["carol@example.com", "bob@example.com"]
    assert [(f.index, f.reason) for f in findings] == [
        (2, "expired"),
        (3, "bad_signature"),
        (4, "reused_nonce"),
    ]


def test_audit_against_other_keys_finds_every_statement_unknown():
    carol = record(CAROL, "carol@example.com", "approve", "nonce-carol-000001", T0, role="finance")
    other = {"carol@example.com": [sshsig.public_key_of(ed25519.Ed25519PrivateKey.generate())]}
    held, findings = audit_statements(
        [carol], release_id=RELEASE, bundle_digest=DIGEST, keys_of=other
    )
    assert held == [] and findings[0].reason == "unknown_key"
