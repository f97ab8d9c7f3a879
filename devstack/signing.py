"""Throwaway keys for the demo's personas and the tests: a trust root, a signed governance
bundle, signed statements. Never for production keys (those live in ssh-agent, on a FIDO
token or in Key Vault; see the README's "Keys and signatures").

A `Keyring` holds one Ed25519 key per identity, generated on first use; with a folder it
writes each as `<identity>.key` (OpenSSH private key, mode 0600, usable by `ssh-keygen -Y
sign` and `finrelease --key`) and `<identity>.key.pub`, and reads them back next time.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from governance import sshsig
from governance.bundle import pack_bundle, sign_bundle
from governance.statements import make_statement, sign_statement
from workflows.messages import SignedBundle, SignedStatement

GOVERNANCE_ADMINS = ("gov-admin-1@example.com", "gov-admin-2@example.com")
STATEMENT_LIFETIME = timedelta(minutes=10)


class Keyring:
    """identity -> Ed25519 key; in memory, or persisted under `folder`."""

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder
        self._keys: dict[str, ed25519.Ed25519PrivateKey] = {}

    def key(self, identity: str) -> sshsig.SigningKey:
        if identity not in self._keys:
            self._keys[identity] = self._load_or_create(identity)
        return self._keys[identity]

    def key_file(self, identity: str) -> Path:
        """The private key file of `identity` (a folder keyring only)."""
        if self._folder is None:
            raise ValueError("an in-memory keyring has no key files")
        self.key(identity)
        return self._folder / f"{_file_name(identity)}.key"

    def public(self, identity: str) -> str:
        return sshsig.public_key_of(self.key(identity)).openssh()

    def members(self, identities: Iterable[str]) -> dict[str, list[str]]:
        return {identity: [self.public(identity)] for identity in sorted(set(identities))}

    def _load_or_create(self, identity: str) -> ed25519.Ed25519PrivateKey:
        if self._folder is not None:
            path = self._folder / f"{_file_name(identity)}.key"
            if path.exists():
                key = sshsig.load_private_key(path.read_bytes())
                assert isinstance(key, ed25519.Ed25519PrivateKey)
                return key
        key = ed25519.Ed25519PrivateKey.generate()
        if self._folder is not None:
            self._folder.mkdir(parents=True, exist_ok=True)
            private = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
            path = self._folder / f"{_file_name(identity)}.key"
            path.write_bytes(private)
            os.chmod(path, 0o600)
            path.with_name(f"{path.name}.pub").write_text(f"{self.public_of(key)} {identity}\n")
        return key

    @staticmethod
    def public_of(key: ed25519.Ed25519PrivateKey) -> str:
        return sshsig.public_key_of(key).openssh()


def _file_name(identity: str) -> str:
    """A file name for an identity: itself when plain, else sanitised plus a short hash."""
    plain = re.sub(r"[^A-Za-z0-9@._-]", "_", identity)
    if plain == identity:
        return identity
    return f"{plain}-{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def demo_keyring(root: Path) -> Keyring:
    """The demo personas' keys under `<root>/keys`, kept between runs."""
    return Keyring(root / "keys")


def demo_trust_root(root: Path) -> Path:
    """Write `<root>/trust-root.yaml` (2 of the demo's 2 governance administrators)."""
    path = root / "trust-root.yaml"
    path.write_text(trust_root_text(demo_keyring(root)))
    return path


def trust_root_text(
    keyring: Keyring, admins: Iterable[str] = GOVERNANCE_ADMINS, threshold: int = 2
) -> str:
    """A trust root: `threshold` of `admins` must sign a governance bundle."""
    document = {"threshold": threshold, "admins": keyring.members(admins)}
    return yaml.safe_dump(document, sort_keys=False)


def signed_bundle(
    keyring: Keyring,
    *,
    policy: str,
    inventory: str,
    calendars: Mapping[str, str],
    people: Iterable[str],
    serial: int = 1,
    signers: Iterable[str] = GOVERNANCE_ADMINS,
) -> SignedBundle:
    """A bundle of these documents with a key for each of `people`, signed by `signers`."""
    data = pack_bundle(
        serial=serial,
        policy=policy,
        inventory=inventory,
        calendars=calendars,
        members=keyring.members(people),
    )
    return SignedBundle(
        data.decode("utf-8"), [sign_bundle(data, keyring.key(admin)) for admin in signers]
    )


def signed_statement(
    keyring: Keyring,
    kind: str,
    *,
    release_id: str,
    digest: str,
    signer: str,
    now: datetime,
    comment: str = "",
    lifetime: timedelta = STATEMENT_LIFETIME,
    key_of: str | None = None,
    **extra: str,
) -> SignedStatement:
    """`signer`'s statement of `kind`, signed with the key of `key_of` (default: the signer)."""
    statement = make_statement(
        kind,
        release_id=release_id,
        bundle_digest=digest,
        signer=signer,
        issued_at=now,
        lifetime=lifetime,
        nonce=secrets.token_hex(16),
        comment=comment,
        **extra,
    )
    signature = sign_statement(statement, keyring.key(key_of or signer))
    return SignedStatement(statement.canonical().decode("utf-8"), signature, comment)
