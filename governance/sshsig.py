"""SSH signatures (SSHSIG): what an approver's `ssh-keygen -Y sign` makes, checked in pure Python.

An auditor re-checks any of them offline with `ssh-keygen -Y verify -n finrelease`. Format,
as specified in openssh-portable PROTOCOL.sshsig (v1.4) and implemented by its sshsig.c
(`sshsig_armor`, `sshsig_wrap_sign`, `sshsig_wrap_verify`):

    armored:     "-----BEGIN SSH SIGNATURE-----\\n" base64(blob) "\\n-----END SSH SIGNATURE-----"
    blob:        byte[6] "SSHSIG", uint32 1, string publickey, string namespace,
                 string reserved, string hash_algorithm, string signature
    signed data: byte[6] "SSHSIG", string namespace, string reserved, string hash_algorithm,
                 string H(message)

(sshsig.c puts H(message) with `sshbuf_put_stringb`, i.e. as a string, as the spec says.)
The namespace is fixed to `finrelease` so no signature made for git, a file or a login can be
replayed here, and the hash to sha512, ssh-keygen's default. Key types: `ssh-ed25519`,
`ecdsa-sha2-nistp256` (Key Vault / Managed HSM keys) and `sk-ssh-ed25519@openssh.com`
(FIDO keys; their signature carries flags and a counter and signs the application's hash,
see openssh-portable ssh-ed25519-sk.c `ssh_ed25519_sk_verify`). Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from governance.quoting import quoted
from governance.sshwire import Reader, WireError, mpint, string

NAMESPACE = "finrelease"
HASH_ALGORITHM = "sha512"
MAX_ARMORED_CHARS = 16 * 1024  # a P-256 or FIDO signature is under 1 KiB armored

ED25519 = "ssh-ed25519"
ECDSA_P256 = "ecdsa-sha2-nistp256"
SK_ED25519 = "sk-ssh-ed25519@openssh.com"
KEY_TYPES = (ED25519, ECDSA_P256, SK_ED25519)

_MAGIC = b"SSHSIG"
_VERSION = 1
_BEGIN = "-----BEGIN SSH SIGNATURE-----"
_END = "-----END SSH SIGNATURE-----"
_WRAP = 70  # sshbuf_dtob64(..., wrap=1) breaks lines at 70, so our output matches ssh-keygen's
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]*$")
_SK_USER_PRESENT = 0x01  # PROTOCOL.u2f flag; we require it (ssh-keygen -Y verify 9.2 does not)
_PRINCIPAL = re.compile(r"^[^\s,*?!\"'#]+$")


class MalformedSignature(ValueError):
    """The text is not an SSHSIG signature this verifier accepts (the message says why)."""


class BadSignature(ValueError):
    """A well-formed signature that does not verify: other message, namespace or key."""


@dataclass(frozen=True)
class PublicKey:
    """An SSH public key as its wire blob; compare keys by `blob`."""

    key_type: str
    blob: bytes

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """`ssh-ed25519 AAAA... [comment]`, as in `id_ed25519.pub` or `allowed_signers`."""
        if not isinstance(text, str) or len(text) > 4096:
            raise MalformedSignature("public key: not a line of text of at most 4096 characters")
        fields = text.strip().split()
        if len(fields) < 2:
            raise MalformedSignature("public key: expected '<type> <base64> [comment]'")
        try:
            blob = base64.b64decode(fields[1], validate=True)
        except (binascii.Error, ValueError):
            raise MalformedSignature("public key: its second field is not base64") from None
        key = cls.from_blob(blob)
        if key.key_type != fields[0]:
            raise MalformedSignature(
                f"public key: declared {quoted(fields[0])} but encodes {key.key_type}"
            )
        return key

    @classmethod
    def from_blob(cls, blob: bytes) -> PublicKey:
        """Check a wire blob (RFC 4253 / RFC 5656 / PROTOCOL.u2f) for a supported key type."""
        try:
            reader = Reader(blob)
            key_type = reader.text()
            if key_type not in KEY_TYPES:
                raise MalformedSignature(
                    f"public key: type {quoted(key_type)} not supported; use one of "
                    + ", ".join(KEY_TYPES)
                )
            if key_type == ECDSA_P256:
                if reader.text() != "nistp256":
                    raise MalformedSignature("public key: ecdsa-sha2-nistp256 with another curve")
                point = reader.string()
                try:
                    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
                except ValueError:
                    raise MalformedSignature("public key: not a point on P-256") from None
            else:
                if len(reader.string()) != 32:
                    raise MalformedSignature("public key: an Ed25519 key has 32 bytes")
                if key_type == SK_ED25519:
                    reader.text()  # the FIDO application, "ssh:" unless chosen at key creation
            reader.done()
        except WireError as exc:
            raise MalformedSignature(f"public key: {exc}") from None
        return cls(key_type, bytes(blob))

    def openssh(self) -> str:
        """The `<type> <base64>` line form."""
        return f"{self.key_type} {base64.b64encode(self.blob).decode('ascii')}"

    @property
    def fingerprint(self) -> str:
        """`SHA256:...`, as `ssh-keygen -l` prints it."""
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode("ascii")
        return "SHA256:" + digest.rstrip("=")

    def verify(self, ssh_signature: bytes, data: bytes) -> None:
        """Check an SSH signature blob over `data`; raise `BadSignature` when it fails."""
        try:
            key_reader = Reader(self.blob)
            key_reader.text()
            sig = Reader(ssh_signature)
            if sig.text() != self.key_type:
                raise BadSignature("signature made with another key type than its public key")
            if self.key_type == ECDSA_P256:
                key_reader.text()
                point = key_reader.string()
                rs = Reader(sig.string())
                der = encode_dss_signature(rs.mpint(), rs.mpint())
                rs.done()
                sig.done()
                key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
                key.verify(der, data, ec.ECDSA(hashes.SHA256()))
                return
            raw = key_reader.string()
            signature = sig.string()
            if self.key_type == SK_ED25519:
                application = key_reader.string()
                flags, counter = sig.byte(), sig.uint32()
                sig.done()
                if not flags & _SK_USER_PRESENT:
                    raise BadSignature("FIDO signature made without user presence (touch)")
                data = (
                    hashlib.sha256(application).digest()
                    + bytes([flags])
                    + counter.to_bytes(4, "big")
                    + hashlib.sha256(data).digest()
                )
            sig.done()
            ed25519.Ed25519PublicKey.from_public_bytes(raw).verify(signature, data)
        except BadSignature:
            raise
        except (WireError, InvalidSignature, ValueError):
            raise BadSignature("signature does not verify with its public key") from None


@dataclass(frozen=True)
class Signature:
    """A parsed SSHSIG blob."""

    public_key: PublicKey
    namespace: str
    hash_algorithm: str
    ssh_signature: bytes

    def blob(self) -> bytes:
        return (
            _MAGIC
            + _VERSION.to_bytes(4, "big")
            + string(self.public_key.blob)
            + string(self.namespace.encode())
            + string(b"")
            + string(self.hash_algorithm.encode())
            + string(self.ssh_signature)
        )

    def armored(self) -> str:
        """The text `ssh-keygen -Y sign` writes (lines of 70, trailing newline)."""
        encoded = base64.b64encode(self.blob()).decode("ascii")
        lines = [encoded[i : i + _WRAP] for i in range(0, len(encoded), _WRAP)]
        return "\n".join([_BEGIN, *lines, _END]) + "\n"


def signed_data(message: bytes, namespace: str = NAMESPACE) -> bytes:
    """What the key signs for `message` (PROTOCOL.sshsig section 3). ecdsa-sha2-nistp256 signs
    their SHA-256 (RFC 5656 6.2.1): Key Vault's ES256 `sign` takes that digest."""
    digest = hashlib.sha512(message).digest()
    return (
        _MAGIC
        + string(namespace.encode())
        + string(b"")
        + string(HASH_ALGORITHM.encode())
        + string(digest)
    )


def parse_signature(armored: str) -> Signature:
    """Parse armored SSHSIG text; raise `MalformedSignature` saying what is wrong."""
    if not isinstance(armored, str):
        raise MalformedSignature("signature: not text")
    if len(armored) > MAX_ARMORED_CHARS:
        raise MalformedSignature(f"signature: longer than {MAX_ARMORED_CHARS} characters")
    if not armored.startswith(_BEGIN + "\n"):
        raise MalformedSignature(f"signature: does not start with {_BEGIN}")
    body, footer, rest = armored[len(_BEGIN) + 1 :].partition("\n" + _END)
    if not footer or rest.strip():
        raise MalformedSignature(f"signature: does not end with {_END}")
    if not _BASE64.match(body):
        raise MalformedSignature("signature: the armored body is not base64")
    try:
        blob = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedSignature("signature: the armored body is not base64") from None
    if not blob.startswith(_MAGIC):
        raise MalformedSignature("signature: no SSHSIG preamble")
    try:
        reader = Reader(blob)
        reader.raw(len(_MAGIC))
        version = reader.uint32()
        if version != _VERSION:
            raise MalformedSignature(f"signature: version {version} not supported (only 1)")
        key = PublicKey.from_blob(reader.string())
        namespace = reader.text()
        reader.string()  # reserved: PROTOCOL.sshsig says to ignore it
        hash_algorithm = reader.text()
        ssh_signature = reader.string()
        reader.done()
    except WireError as exc:
        raise MalformedSignature(f"signature: {exc}") from None
    return Signature(key, namespace, hash_algorithm, ssh_signature)


def verify(message: bytes, armored: str, namespace: str = NAMESPACE) -> PublicKey:
    """The key that signed `message` in `namespace`; `MalformedSignature` or `BadSignature`
    otherwise. The caller still decides whether that key belongs to anyone it trusts."""
    signature = parse_signature(armored)
    if signature.namespace != namespace:
        raise BadSignature(
            f"signature made for namespace {quoted(signature.namespace)}, not {namespace!r}"
        )
    if signature.hash_algorithm != HASH_ALGORITHM:
        raise BadSignature(
            f"signature hashes with {quoted(signature.hash_algorithm)}, not {HASH_ALGORITHM}"
        )
    signature.public_key.verify(signature.ssh_signature, signed_data(message, namespace))
    return signature.public_key


# --- signing (the CLI and tests; approvers may use ssh-keygen just as well) ---------------

SigningKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def load_private_key(pem: bytes, password: bytes | None = None) -> SigningKey:
    """An Ed25519 or P-256 key from an OpenSSH (or PKCS#8) private key file's bytes."""
    key: object
    try:
        if pem.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
            key = serialization.load_ssh_private_key(pem, password)
        else:
            key = serialization.load_pem_private_key(pem, password)
    except (ValueError, TypeError) as exc:
        raise MalformedSignature(f"private key: cannot load it: {exc}") from None
    except Exception as exc:  # bcrypt missing for a passphrase-protected key, say
        raise MalformedSignature(f"private key: cannot load it: {type(exc).__name__}") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise MalformedSignature("private key: only Ed25519 and ECDSA P-256 keys can sign")


def public_key_of(key: SigningKey) -> PublicKey:
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return PublicKey.parse(line.decode("ascii"))


def sign(message: bytes, key: SigningKey, namespace: str = NAMESPACE) -> str:
    """Armored SSHSIG of `message`, the same bytes `ssh-keygen -Y sign` writes for Ed25519."""
    public = public_key_of(key)
    data = signed_data(message, namespace)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        ssh_signature = string(ED25519.encode()) + string(key.sign(data))
    else:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        ssh_signature = string(ECDSA_P256.encode()) + string(mpint(r) + mpint(s))
    return Signature(public, namespace, HASH_ALGORITHM, ssh_signature).armored()


def p256_public_key(x: bytes, y: bytes) -> PublicKey:
    """The ecdsa-sha2-nistp256 key with these coordinates (a JWK's `x` and `y`, 32 bytes each)."""
    if len(x) != 32 or len(y) != 32:
        raise MalformedSignature("public key: P-256 coordinates are 32 bytes each")
    point = b"\x04" + x + y
    return PublicKey.from_blob(string(ECDSA_P256.encode()) + string(b"nistp256") + string(point))


def ecdsa_signature_from_raw(public_key: PublicKey, raw: bytes, namespace: str = NAMESPACE) -> str:
    """Armor a P-256 signature given as r||s (64 bytes, what Key Vault's ES256 returns) made
    over sha256(`signed_data(message)`)."""
    if public_key.key_type != ECDSA_P256 or len(raw) != 64:
        raise MalformedSignature("an ES256 signature is 64 bytes r||s from a P-256 key")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    ssh_signature = string(ECDSA_P256.encode()) + string(mpint(r) + mpint(s))
    return Signature(public_key, namespace, HASH_ALGORITHM, ssh_signature).armored()


def allowed_signers(entries: Iterable[tuple[str, PublicKey]], namespace: str = NAMESPACE) -> str:
    """An `allowed_signers` file (ssh-keygen(1) ALLOWED SIGNERS) for `ssh-keygen -Y verify`.

    Each line is limited to `namespace`. An identity that ssh-keygen would read as a pattern
    or split (spaces, commas, quotes, `*?!#`) is refused rather than written ambiguously."""
    lines = []
    for identity, key in entries:
        if not _PRINCIPAL.match(identity) or len(identity) > 254:
            raise ValueError(f"identity {quoted(identity)}: not usable as an allowed_signers name")
        lines.append(f'{identity} namespaces="{namespace}" {key.openssh()}')
    return "".join(line + "\n" for line in lines)
