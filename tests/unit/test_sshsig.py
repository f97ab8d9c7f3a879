"""SSHSIG against the real `ssh-keygen -Y sign|verify`, both ways, and its refusals."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from governance import sshsig
from governance.sshsig import BadSignature, MalformedSignature, PublicKey
from governance.sshwire import string

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="./dev bootstrap installs it"),
]

MESSAGE = b'{"kind":"approve","release_id":"FIN-2026-11-042"}'


def keygen(*args: str | Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["ssh-keygen", *map(str, args)], input=stdin, capture_output=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Private key files made by ssh-keygen itself: ed25519 and ecdsa P-256."""
    folder = tmp_path_factory.mktemp("keys")
    made = {}
    for name, args in {"ed25519": ["-t", "ed25519"], "ecdsa": ["-t", "ecdsa", "-b", "256"]}.items():
        path = folder / name
        assert keygen("-q", *args, "-N", "", "-C", name, "-f", path).returncode == 0
        made[name] = path
    return made


def keygen_sign(key: Path, message: bytes, namespace: str = "finrelease") -> str:
    result = keygen("-Y", "sign", "-q", "-n", namespace, "-f", key, stdin=message)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def keygen_verifies(
    tmp_path: Path, identity: str, key: PublicKey, signature: str, message: bytes
) -> bool:
    signers = tmp_path / "allowed_signers"
    signers.write_text(sshsig.allowed_signers([(identity, key)]))
    sig = tmp_path / "message.sig"
    sig.write_text(signature)
    result = keygen(
        "-Y", "verify", "-f", signers, "-I", identity, "-n", "finrelease", "-s", sig, stdin=message
    )
    return result.returncode == 0


def flip_signature_byte(armored: str) -> str:
    """The same signature with one bit of its last byte (inside the signature value) flipped."""
    blob = bytearray(base64.b64decode("".join(armored.splitlines()[1:-1])))
    blob[-1] ^= 0x01
    parsed = sshsig.parse_signature(armored)
    return sshsig.Signature(
        parsed.public_key,
        parsed.namespace,
        parsed.hash_algorithm,
        bytes(blob[-len(parsed.ssh_signature) :]),
    ).armored()


def public_key(path: Path) -> PublicKey:
    return PublicKey.parse(path.with_suffix(".pub").read_text())


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
def test_signature_made_by_ssh_keygen_verifies_and_names_its_key(keys, kind):
    signature = keygen_sign(keys[kind], MESSAGE)
    signer = sshsig.verify(MESSAGE, signature)
    assert signer == public_key(keys[kind])
    fingerprint = keygen("-l", "-f", keys[kind].with_suffix(".pub")).stdout.decode().split()[1]
    assert signer.fingerprint == fingerprint


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
def test_signature_we_make_is_accepted_by_ssh_keygen(keys, kind, tmp_path):
    key = sshsig.load_private_key(keys[kind].read_bytes())
    signature = sshsig.sign(MESSAGE, key)
    assert keygen_verifies(
        tmp_path, "alice@example.com", public_key(keys[kind]), signature, MESSAGE
    )
    assert sshsig.verify(MESSAGE, signature) == public_key(keys[kind])


def test_ed25519_signature_is_byte_for_byte_what_ssh_keygen_writes(keys):
    key = sshsig.load_private_key(keys["ed25519"].read_bytes())
    assert sshsig.sign(MESSAGE, key) == keygen_sign(keys["ed25519"], MESSAGE)


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
def test_one_flipped_byte_fails_both_verifiers(keys, kind, tmp_path):
    for signature in (
        keygen_sign(keys[kind], MESSAGE),
        sshsig.sign(MESSAGE, sshsig.load_private_key(keys[kind].read_bytes())),
    ):
        forged = flip_signature_byte(signature)
        assert forged != signature
        with pytest.raises(BadSignature):
            sshsig.verify(MESSAGE, forged)
        assert not keygen_verifies(
            tmp_path, "alice@example.com", public_key(keys[kind]), forged, MESSAGE
        )
        assert keygen_verifies(
            tmp_path, "alice@example.com", public_key(keys[kind]), signature, MESSAGE
        )


def test_signature_over_another_message_is_refused(keys):
    signature = keygen_sign(keys["ed25519"], MESSAGE)
    with pytest.raises(BadSignature, match="does not verify"):
        sshsig.verify(MESSAGE.replace(b"approve", b"reject"), signature)


def test_signature_made_for_another_namespace_is_refused(keys):
    signature = keygen_sign(keys["ed25519"], MESSAGE, namespace="git")
    with pytest.raises(BadSignature, match="namespace 'git'"):
        sshsig.verify(MESSAGE, signature)


def test_signature_with_sha256_instead_of_sha512_is_refused(keys):
    result = keygen(
        "-Y", "sign", "-q", "-n", "finrelease", "-O", "hashalg=sha256", "-f", keys["ed25519"],
        stdin=MESSAGE,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with pytest.raises(BadSignature, match="sha256"):
        sshsig.verify(MESSAGE, result.stdout.decode())


def sk_signature(
    key: ed25519.Ed25519PrivateKey, message: bytes, flags: int
) -> tuple[PublicKey, str]:
    """What a FIDO authenticator returns (PROTOCOL.u2f; ssh-ed25519-sk.c), made in software."""
    raw = key.public_key().public_bytes_raw()
    public = PublicKey.from_blob(string(sshsig.SK_ED25519.encode()) + string(raw) + string(b"ssh:"))
    counter = (7).to_bytes(4, "big")
    data = sshsig.signed_data(message)
    signed = (
        hashlib.sha256(b"ssh:").digest() + bytes([flags]) + counter + hashlib.sha256(data).digest()
    )
    blob = string(sshsig.SK_ED25519.encode()) + string(key.sign(signed)) + bytes([flags]) + counter
    return public, sshsig.Signature(public, "finrelease", "sha512", blob).armored()


def test_fido_key_signature_verifies_here_and_in_ssh_keygen(tmp_path):
    public, signature = sk_signature(ed25519.Ed25519PrivateKey.generate(), MESSAGE, flags=0x01)
    assert sshsig.verify(MESSAGE, signature) == public
    assert keygen_verifies(tmp_path, "carol@example.com", public, signature, MESSAGE)
    forged = flip_signature_byte(signature)  # flips the counter's last byte: it is signed too
    with pytest.raises(BadSignature):
        sshsig.verify(MESSAGE, forged)
    assert not keygen_verifies(tmp_path, "carol@example.com", public, forged, MESSAGE)


def test_fido_signature_without_user_presence_is_refused():
    """Stricter than `ssh-keygen -Y verify` (9.2 accepts it): an approval needs a touch."""
    _, signature = sk_signature(ed25519.Ed25519PrivateKey.generate(), MESSAGE, flags=0x00)
    with pytest.raises(BadSignature, match="user presence"):
        sshsig.verify(MESSAGE, signature)


def test_key_vault_style_raw_p256_signature_is_accepted_by_ssh_keygen(tmp_path):
    """Key Vault's ES256 `sign(algorithm, digest)` takes a SHA-256 digest, returns r||s."""

    def key_vault_sign(digest: bytes) -> bytes:
        der = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    key = ec.generate_private_key(ec.SECP256R1())
    public = sshsig.public_key_of(key)
    raw = key_vault_sign(hashlib.sha256(sshsig.signed_data(MESSAGE)).digest())
    signature = sshsig.ecdsa_signature_from_raw(public, raw)
    assert sshsig.verify(MESSAGE, signature) == public
    assert keygen_verifies(tmp_path, "pipeline@example.com", public, signature, MESSAGE)
    with pytest.raises(MalformedSignature, match="64 bytes"):
        sshsig.ecdsa_signature_from_raw(public, raw[:63])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("hello", "does not start with"),
        ("-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n", "does not end with"),
        ("-----BEGIN SSH SIGNATURE-----\n%%%\n-----END SSH SIGNATURE-----\n", "not base64"),
        ("-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n", "preamble"),
        (
            "-----BEGIN SSH SIGNATURE-----\n" + "A" * 20_000 + "\n-----END SSH SIGNATURE-----\n",
            "longer than",
        ),
    ],
)
def test_malformed_armor_is_refused_with_its_reason(text, reason):
    with pytest.raises(MalformedSignature, match=reason):
        sshsig.verify(MESSAGE, text)


def test_trailing_data_and_future_versions_are_refused(keys):
    parsed = sshsig.parse_signature(keygen_sign(keys["ed25519"], MESSAGE))
    blob = parsed.blob()
    for bad, reason in (
        (blob + b"\x00", "trailing data"),
        (blob[:6] + b"\x00\x00\x00\x02" + blob[10:], "version 2"),
    ):
        encoded = base64.b64encode(bad).decode()
        with pytest.raises(MalformedSignature, match=reason):
            sshsig.parse_signature(
                f"-----BEGIN SSH SIGNATURE-----\n{encoded}\n-----END SSH SIGNATURE-----\n"
            )


def test_unsupported_key_types_are_refused_by_name(tmp_path):
    path = tmp_path / "rsa"
    assert keygen("-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", path).returncode == 0
    with pytest.raises(MalformedSignature, match="'ssh-rsa' not supported"):
        sshsig.verify(MESSAGE, keygen_sign(path, MESSAGE))
    with pytest.raises(MalformedSignature, match="not supported"):
        PublicKey.parse(path.with_suffix(".pub").read_text())


def test_public_key_line_must_declare_the_type_it_encodes(keys):
    line = keys["ed25519"].with_suffix(".pub").read_text()
    with pytest.raises(MalformedSignature, match="declared 'ecdsa-sha2-nistp256'"):
        PublicKey.parse(line.replace("ssh-ed25519", "ecdsa-sha2-nistp256"))


def test_allowed_signers_refuses_identities_ssh_keygen_would_misread(keys):
    key = public_key(keys["ed25519"])
    for identity in ("bob smith", "a,b", "*@example.com", "x" * 255):
        with pytest.raises(ValueError, match="allowed_signers"):
            sshsig.allowed_signers([(identity, key)])
    line = sshsig.allowed_signers([("bob@example.com", key)])
    assert line == f'bob@example.com namespaces="finrelease" {key.openssh()}\n'
