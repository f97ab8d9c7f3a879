"""Signed statements: each refusal has its own reason, and only a good statement counts."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from governance import sshsig, statements
from governance.statements import StatementRefused, make_statement, sign_statement, verify_statement

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)
DIGEST = "ab" * 32
RELEASE = "FIN-2026-11-042"
CAROL = ed25519.Ed25519PrivateKey.generate()
BOB = ed25519.Ed25519PrivateKey.generate()
MALLORY = ed25519.Ed25519PrivateKey.generate()
KEYS = {
    "carol@example.com": [sshsig.public_key_of(CAROL)],
    "bob@example.com": [sshsig.public_key_of(BOB)],
}


def approval(signer: str = "carol@example.com", **changes) -> statements.Statement:
    fields = dict(
        release_id=RELEASE,
        bundle_digest=DIGEST,
        signer=signer,
        issued_at=NOW,
        lifetime=timedelta(minutes=10),
        nonce="n0nce-0123456789abcdef",
        comment="tax tags checked",
        role="finance",
    )
    fields.update(changes)
    return make_statement("approve", **fields)


def check(statement, signature, **changes):
    arguments = dict(
        kind="approve",
        release_id=RELEASE,
        bundle_digest=DIGEST,
        keys_of=KEYS,
        now=NOW + timedelta(minutes=1),
        seen_nonces=set(),
        comment="tax tags checked",
    )
    arguments.update(changes)
    return verify_statement(statement, signature, **arguments)


def refusal(statement, signature, **changes) -> str:
    with pytest.raises(StatementRefused) as caught:
        check(statement, signature, **changes)
    assert str(caught.value).startswith(caught.value.reason + ": ")
    return caught.value.reason


def test_a_statement_signed_by_its_signer_verifies_and_names_them():
    statement = approval()
    verified = check(statement.canonical(), sign_statement(statement, CAROL))
    assert verified.identity == "carol@example.com"
    assert verified.statement.role == "finance"
    assert verified.key == sshsig.public_key_of(CAROL)


def test_the_signed_bytes_are_canonical_json_with_the_comment_only_as_its_hash():
    text = approval().canonical().decode()
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert set(data) == {
        "kind", "release_id", "bundle_digest", "role", "comment_sha256",
        "issued_at", "expires_at", "nonce", "signer",
    }  # fmt: skip
    assert (
        data["issued_at"] == "2026-12-03T14:00:00Z" and data["expires_at"] == "2026-12-03T14:10:00Z"
    )
    assert "tax tags" not in text


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda s, sig: (s.replace(b'"finance"', b'"platform"'), sig), "bad_signature"),
        (lambda s, sig: (s, sig.replace("-----END", "AAAA\n-----END")), "malformed"),
        (lambda s, sig: (s + b" ", sig), "malformed"),
        (lambda s, sig: (s.replace(b'{"', b'{ "'), sig), "malformed"),
    ],
)
def test_tampered_statement_or_signature_is_refused(tamper, reason):
    statement = approval()
    assert refusal(*tamper(statement.canonical(), sign_statement(statement, CAROL))) == reason


def test_each_failed_check_has_its_own_reason():
    good = approval()
    signed = sign_statement(good, CAROL)
    assert refusal(good.canonical(), sign_statement(good, MALLORY)) == "unknown_key"
    assert refusal(good.canonical(), sign_statement(good, BOB)) == "signer_not_key_owner"
    assert refusal(good.canonical(), signed, kind="reject") == "wrong_kind"
    assert refusal(good.canonical(), signed, release_id="FIN-2026-12-001") == "wrong_release"
    assert refusal(good.canonical(), signed, bundle_digest="cd" * 32) == "wrong_digest"
    assert refusal(good.canonical(), signed, comment="something else") == "comment_mismatch"
    assert refusal(good.canonical(), signed, now=NOW - timedelta(minutes=3)) == "issued_in_future"
    assert refusal(good.canonical(), signed, now=NOW + timedelta(minutes=10)) == "expired"
    assert refusal(good.canonical(), signed, seen_nonces={good.nonce}) == "reused_nonce"
    assert check(good.canonical(), signed).identity == "carol@example.com"


def test_max_age_cuts_a_long_lived_statement_short():
    long_lived = approval(lifetime=timedelta(days=30))
    signed = sign_statement(long_lived, CAROL)
    later = NOW + timedelta(hours=1)
    assert refusal(long_lived.canonical(), signed, now=later) == "expired"
    assert check(long_lived.canonical(), signed, now=later, max_age=timedelta(hours=2))


def test_a_signer_with_several_keys_may_use_any_of_them():
    second = ed25519.Ed25519PrivateKey.generate()
    keys = {
        **KEYS,
        "carol@example.com": [sshsig.public_key_of(CAROL), sshsig.public_key_of(second)],
    }
    statement = approval()
    assert check(statement.canonical(), sign_statement(statement, second), keys_of=keys)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"signer": "x" * 255}, "signer"),
        ({"signer": "carol\n@example.com"}, "signer"),
        ({"signer": "carol\x1b[31m"}, "signer"),
        ({"signer": "bob smith@example.com"}, "signer"),
        ({"signer": "carol\u202e@example.com"}, "signer"),
        ({"comment": "é" * 1025}, "comment"),
        ({"bundle_digest": "AB" * 32}, "bundle_digest"),
        ({"nonce": "short"}, "nonce"),
        ({"role": "fin ance"}, "role"),
        ({"release_id": "x"}, "release_id"),
        ({"lifetime": timedelta(0)}, "expires_at"),
        ({"wave": "canary"}, "'wave'"),
    ],
)
def test_bad_fields_are_refused_as_malformed_naming_the_field(changes, field):
    with pytest.raises(StatementRefused) as caught:
        approval(**changes)
    assert caught.value.reason == "malformed"
    assert f"malformed: {field}" in str(caught.value)
    assert len(str(caught.value)) < 200


def test_each_kind_carries_exactly_its_own_fields():
    common = dict(
        release_id=RELEASE, bundle_digest=DIGEST, signer="erin@example.com", issued_at=NOW,
        lifetime=timedelta(minutes=5), nonce="0123456789abcdef",
    )  # fmt: skip
    assert make_statement("promote", wave="wave-2", **common).wave == "wave-2"
    decided = make_statement("decide", tenant="berlin", choice="restore", **common)
    assert (decided.tenant, decided.choice) == ("berlin", "restore")
    assert make_statement("pause", **common).as_json().keys() >= {"kind", "nonce"}
    for kind, extra, rule in [
        ("decide", {"tenant": "berlin", "choice": "ignore"}, "choice: must be one of"),
        ("promote", {}, "wave: missing"),
        ("pause", {"role": "finance"}, "'role': not a field of a pause statement"),
        ("sudo", {}, "kind: must be one of"),
    ]:
        with pytest.raises(StatementRefused, match=rule):
            make_statement(kind, **extra, **common)


def test_duplicate_keys_and_non_json_are_malformed():
    text = approval().canonical().decode()
    duplicated = text.replace('{"bundle_digest"', '{"kind":"reject","bundle_digest"')
    for bad in (duplicated, "[]", "not json", "x" * 5000):
        with pytest.raises(StatementRefused, match="^malformed: "):
            statements.parse_statement(bad)


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="./dev bootstrap installs it")
def test_an_auditor_checks_a_statement_with_plain_ssh_keygen(tmp_path):
    statement = approval()
    (tmp_path / "statement.json").write_bytes(statement.canonical())
    (tmp_path / "statement.sig").write_text(sign_statement(statement, CAROL))
    (tmp_path / "allowed_signers").write_text(
        sshsig.allowed_signers((who, key) for who, keys in KEYS.items() for key in keys)
    )

    def keygen_verify(identity: str) -> int:
        return subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", tmp_path / "allowed_signers", "-I", identity,
             "-n", "finrelease", "-s", tmp_path / "statement.sig"],
            input=(tmp_path / "statement.json").read_bytes(), capture_output=True, timeout=60, check=False,
        ).returncode  # fmt: skip

    assert keygen_verify("carol@example.com") == 0
    assert keygen_verify("bob@example.com") != 0
