"""Key Vault signing, against a stand-in for `CryptographyClient` that keeps the SDK's contract:
`sign(SignatureAlgorithm.es256, sha256 digest)` returns r||s. ssh-keygen checks the result."""

from __future__ import annotations

import shutil
import subprocess
from types import SimpleNamespace

import pytest
from azure.keyvault.keys import KeyCurveName
from azure.keyvault.keys.crypto import SignatureAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from governance import sshsig
from governance.sshsig import MalformedSignature
from starter.key_vault import KeyVaultSigner

pytestmark = pytest.mark.unit

MESSAGE = b'{"kind":"start","release_id":"FIN-2026-11-042"}'


class VaultKey:
    """What Key Vault holds: an EC P-256 key that signs digests and never shows its private half."""

    def __init__(self) -> None:
        self._private = ec.generate_private_key(ec.SECP256R1())
        numbers = self._private.public_key().public_numbers()
        jwk = SimpleNamespace(
            crv=KeyCurveName.p_256, x=numbers.x.to_bytes(32, "big"), y=numbers.y.to_bytes(32, "big")
        )
        self.key = SimpleNamespace(key=jwk, id="https://vault.example/keys/pipeline/1")
        self.digests: list[bytes] = []

    def sign(self, algorithm: SignatureAlgorithm, digest: bytes) -> SimpleNamespace:
        assert algorithm == SignatureAlgorithm.es256 and len(digest) == 32
        self.digests.append(digest)
        r, s = decode_dss_signature(
            self._private.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        )
        return SimpleNamespace(signature=r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def public(self) -> sshsig.PublicKey:
        return sshsig.public_key_of(self._private)


def test_key_vault_signature_verifies_here_and_in_ssh_keygen(tmp_path):
    vault = VaultKey()
    signer = KeyVaultSigner(vault.key, vault)
    assert signer.public_key == vault.public()
    signature = signer.sign(MESSAGE)
    assert len(vault.digests) == 1  # one round trip, a digest: the message never leaves
    assert sshsig.verify(MESSAGE, signature) == vault.public()
    if shutil.which("ssh-keygen") is None:
        pytest.skip("./dev bootstrap installs ssh-keygen")
    (tmp_path / "allowed_signers").write_text(
        sshsig.allowed_signers([("pipeline@example.com", signer.public_key)])
    )
    (tmp_path / "m.sig").write_text(signature)
    result = subprocess.run(
        ["ssh-keygen", "-Y", "verify", "-f", tmp_path / "allowed_signers", "-I", "pipeline@example.com",
         "-n", "finrelease", "-s", tmp_path / "m.sig"],
        input=MESSAGE, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_a_vault_key_that_is_not_p256_is_refused():
    vault = VaultKey()
    vault.key.key.crv = KeyCurveName.p_384
    with pytest.raises(MalformedSignature, match="only EC P-256"):
        KeyVaultSigner(vault.key, vault)
