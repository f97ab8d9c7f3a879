"""The governance bundle counts K distinct administrators, and checks what it carries."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from governance import sshsig
from governance.bundle import BundleRefused, pack_bundle, parse_bundle, sign_bundle, verify_bundle
from governance.problems import ValidationFailed
from governance.trust import parse_trust_root
from tests.signing_people import EXAMPLES, PEOPLE

pytestmark = pytest.mark.unit

MEMBER_KEYS = {who: ed25519.Ed25519PrivateKey.generate() for who in PEOPLE}
ADMINS = {
    "alice@example.com": ed25519.Ed25519PrivateKey.generate(),
    "grace@example.com": ed25519.Ed25519PrivateKey.generate(),
    "hsm@example.com": ec.generate_private_key(ec.SECP256R1()),
}


def line(key) -> str:
    return sshsig.public_key_of(key).openssh()


def documents(**changes) -> dict:
    texts = dict(
        serial=3,
        policy=(EXAMPLES / "policy.yaml").read_text(),
        inventory=(EXAMPLES / "tenants.yaml").read_text(),
        calendars={p.stem: p.read_text() for p in (EXAMPLES / "calendars").glob("*.yaml")},
        members={who: [line(key)] for who, key in MEMBER_KEYS.items()},
    )
    texts.update(changes)
    return texts


BUNDLE = pack_bundle(**documents())


def trust_root(threshold: int = 2, admins: dict | None = None):
    entries = "\n".join(f"  {who}: ['{line(key)}']" for who, key in (admins or ADMINS).items())
    return parse_trust_root(f"threshold: {threshold}\nadmins:\n{entries}\n")


def test_bundle_signed_by_k_distinct_admins_is_accepted_with_its_documents():
    signatures = [
        sign_bundle(BUNDLE, ADMINS["alice@example.com"]),
        sign_bundle(BUNDLE, ADMINS["hsm@example.com"]),
    ]
    verdict = verify_bundle(BUNDLE, signatures, trust_root())
    assert verdict.signed_by == ("alice@example.com", "hsm@example.com")
    bundle = verdict.bundle
    assert bundle.policy.approvers["finance"] == ("carol@example.com",)
    assert bundle.inventory.names == ("berlin", "newyork", "tokyo")
    assert set(bundle.calendars) == {"berlin", "demo", "newyork", "tokyo"}
    assert bundle.keys_of()["carol@example.com"] == (
        sshsig.public_key_of(MEMBER_KEYS["carol@example.com"]),
    )
    assert len(bundle.digest) == 64 and bundle.serial == 3


def test_fewer_than_k_distinct_admins_is_refused_saying_who_signed():
    alice = sign_bundle(BUNDLE, ADMINS["alice@example.com"])
    stranger = sign_bundle(BUNDLE, ed25519.Ed25519PrivateKey.generate())
    other = pack_bundle(**documents(serial=4))
    grace_on_other = sign_bundle(other, ADMINS["grace@example.com"])
    for signatures in ([], [alice], [alice, alice], [alice, stranger], [alice, grace_on_other]):
        with pytest.raises(BundleRefused) as caught:
            verify_bundle(BUNDLE, signatures, trust_root())
        assert caught.value.reason == "quorum_not_met"
    message = str(caught.value)
    assert "2 of 3 governance administrators" in message
    assert "valid signatures from 1 (alice@example.com)" in message
    assert "1 did not verify, 0 by keys outside the trust root" in message


def test_a_requester_cannot_widen_the_policy_without_the_admins():
    """Approved bundle bytes changed by one byte no longer carry the admins' signatures."""
    signatures = [
        sign_bundle(BUNDLE, ADMINS[who]) for who in ("alice@example.com", "grace@example.com")
    ]
    assert verify_bundle(BUNDLE, signatures, trust_root())
    policy = (
        (EXAMPLES / "policy.yaml")
        .read_text()
        .replace("finance: [carol@example.com]", "finance: [bob@example.com]")
    )
    widened = pack_bundle(**documents(policy=policy))
    with pytest.raises(BundleRefused, match="quorum_not_met"):
        verify_bundle(widened, signatures, trust_root())


def test_an_older_serial_is_refused_once_a_newer_one_was_seen():
    signatures = [
        sign_bundle(BUNDLE, ADMINS[who]) for who in ("alice@example.com", "grace@example.com")
    ]
    with pytest.raises(BundleRefused, match="serial_too_old: serial 3"):
        verify_bundle(BUNDLE, signatures, trust_root(), min_serial=4)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"members": {who: [line(k)] for who, k in MEMBER_KEYS.items() if who != "carol@example.com"}},
         "policy.approvers.finance: 'carol@example.com' has no key under members"),
        ({"calendars": {}}, "inventory.tenants[0].calendar: no calendar 'berlin' in the bundle"),
        ({"policy": "approvers: {}\n"}, "policy"),
        ({"members": {**{w: [line(k)] for w, k in MEMBER_KEYS.items()}, "Carol@example.com": [line(ed25519.Ed25519PrivateKey.generate())]}},
         "carol@example.com: the same identity as 'Carol@example.com' (case aside)"),
        ({"members": {**{w: [line(k)] for w, k in MEMBER_KEYS.items()}, "mallory@example.com": [line(MEMBER_KEYS["bob@example.com"])]}},
         "is also 'bob@example.com''s"),
        ({"members": {**{w: [line(k)] for w, k in MEMBER_KEYS.items()}, "eve\x1b[2J@example.com": [line(ed25519.Ed25519PrivateKey.generate())]}},
         "contains a space, control or invisible character"),
        ({"serial": 0}, "serial: must be ≥ 1"),
    ],
)  # fmt: skip
def test_bundle_contents_are_checked_naming_the_document_and_field(changes, problem):
    with pytest.raises(BundleRefused) as caught:
        pack_bundle(**documents(**changes))
    assert caught.value.reason == "malformed"
    assert problem in str(caught.value)
    assert "\x1b" not in str(caught.value)


def test_non_canonical_or_foreign_bytes_are_malformed():
    pretty = json.dumps(json.loads(BUNDLE), indent=2).encode()
    for data, problem in (
        (pretty, "not canonical JSON"),
        (b"\xff", "not JSON"),
        (b'{"kind":"approve"}', "format: is required"),
        (b"x" * (2 * 1024 * 1024 + 1), "at most 2,097,152"),
    ):
        with pytest.raises(BundleRefused, match=problem):
            parse_bundle(data)


def test_trust_root_rules():
    alice = line(ADMINS["alice@example.com"])
    for text, problem in (
        (
            f"threshold: 2\nadmins:\n  alice@example.com: ['{alice}']\n",
            "2 signatures asked of 1 admins",
        ),
        (f"threshold: 0\nadmins:\n  alice@example.com: ['{alice}']\n", "threshold: must be ≥ 1"),
        (f"threshold: 1\nadmins:\n  a@x: ['{alice}']\n  b@x: ['{alice}']\n", "is also 'a@x''s"),
        (
            "threshold: 1\nadmins:\n  a@x: ['ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ']\n",
            "admins.a@x[0]: public key",
        ),
        ("threshold: 1\nadmins: {}\n", "must name at least one identity"),
    ):
        with pytest.raises(ValidationFailed, match=problem.replace("[", r"\[")):
            parse_trust_root(text)
    assert trust_root(3).threshold == 3
