"""Signing with an Azure Key Vault / Managed HSM key (EC P-256, ES256) for pipelines.

The private key never leaves the vault: we send sha256(SSHSIG signed data) to
`CryptographyClient.sign(ES256, digest)` and armor the r||s it returns as an SSHSIG that
`ssh-keygen -Y verify` accepts (see `governance.sshsig`). The identity needs the `sign` and
`get` key permissions (RBAC: Key Vault Crypto User). Credentials come from
`azure.identity.DefaultAzureCredential` (workload identity in a pipeline); nothing is logged.
"""

from __future__ import annotations

import hashlib
from typing import Any

from governance import sshsig
from governance.sshsig import MalformedSignature, PublicKey


class KeyVaultSigner:
    """Signs SSHSIG messages with one Key Vault key; `crypto` is its `CryptographyClient`."""

    def __init__(self, key: Any, crypto: Any) -> None:
        jwk = key.key
        if getattr(jwk, "crv", None) != "P-256":  # KeyCurveName is a str enum
            raise MalformedSignature(
                "Key Vault key: only EC P-256 keys (ES256) can sign statements"
            )
        self.public_key: PublicKey = sshsig.p256_public_key(bytes(jwk.x), bytes(jwk.y))
        self._crypto = crypto

    def sign(self, message: bytes) -> str:
        from azure.keyvault.keys.crypto import SignatureAlgorithm

        digest = hashlib.sha256(sshsig.signed_data(message)).digest()
        result = self._crypto.sign(SignatureAlgorithm.es256, digest)
        return sshsig.ecdsa_signature_from_raw(self.public_key, bytes(result.signature))


def open_key_vault_signer(key_id: str, credential: Any = None) -> KeyVaultSigner:
    """Fetch the public half of `https://<vault>.vault.azure.net/keys/<name>[/<version>]`."""
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.keys import KeyClient, KeyVaultKeyIdentifier
    from azure.keyvault.keys.crypto import CryptographyClient

    try:
        identifier = KeyVaultKeyIdentifier(key_id)
    except ValueError:
        raise MalformedSignature("--key-vault: not a Key Vault key id URL") from None
    credential = credential or DefaultAzureCredential()
    client = KeyClient(identifier.vault_url, credential)
    key = client.get_key(identifier.name, identifier.version)
    return KeyVaultSigner(key, CryptographyClient(key, credential))
