"""How the release verbs sign: the actor's key (`--key FILE` or $FINRELEASE_KEY, an OpenSSH
or PKCS#8 Ed25519/P-256 private key) or a Key Vault key (`--key-vault KEY_ID` or
$FINRELEASE_KEY_VAULT_KEY, EC P-256, the key never leaves the vault), and the governance
bundle with its administrators' signatures (`BUNDLE.sig`, `BUNDLE.<admin>.sig`, ...).

Private keys are never printed or sent: only the statement and its SSHSIG travel.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from governance import sshsig
from governance.bundle import MAX_SIGNATURES
from governance.sshsig import MalformedSignature
from governance.statements import StatementRefused, make_statement
from starter.client_helpers import INVALID, CliError
from workflows.messages import SignedBundle, SignedStatement

KEY_VARIABLE = "FINRELEASE_KEY"
KEY_VAULT_VARIABLE = "FINRELEASE_KEY_VAULT_KEY"
LIFETIME = timedelta(minutes=10)  # the workflow refuses statements older than 15 minutes
MAX_FILE_BYTES = 4 * 1024 * 1024

Key = Annotated[
    Path | None, typer.Option("--key", help=f"your private key file (default ${KEY_VARIABLE})")
]
KeyVault = Annotated[
    str | None,
    typer.Option("--key-vault", help=f"or a Key Vault key id (default ${KEY_VAULT_VARIABLE})"),
]


def signer_for(
    key: Path | None, key_vault: str | None, environ: Mapping[str, str] = os.environ
) -> Callable[[bytes], str]:
    """A function that signs bytes as the actor; CliError INVALID naming what is missing."""
    if key is None and key_vault is None:
        key = Path(environ[KEY_VARIABLE]) if environ.get(KEY_VARIABLE) else None
        key_vault = environ.get(KEY_VAULT_VARIABLE) or None
    if key is not None and key_vault is not None:
        raise CliError("--key and --key-vault: pass one of them", INVALID)
    if key is not None:
        try:
            signing_key = sshsig.load_private_key(_read(key))
        except MalformedSignature as exc:
            raise CliError(f"{key}: {exc}", INVALID) from None
        return lambda message: sshsig.sign(message, signing_key)
    if key_vault is not None:
        from starter.key_vault import open_key_vault_signer

        try:
            return open_key_vault_signer(key_vault).sign
        except MalformedSignature as exc:
            raise CliError(str(exc), INVALID) from None
        except Exception as exc:  # the Azure SDK's errors; their message carries no secret
            raise CliError(f"--key-vault: {type(exc).__name__}: {str(exc)[:200]}") from None
    raise CliError(
        f"no key to sign with: pass --key FILE (or set ${KEY_VARIABLE}) or --key-vault KEY_ID;"
        " every action on a release is a signed statement",
        INVALID,
    )


def signed(
    sign: Callable[[bytes], str],
    kind: str,
    *,
    release_id: str,
    digest: str,
    actor: str,
    comment: str = "",
    **extra: str,
) -> SignedStatement:
    """`actor`'s statement of `kind`, issued now with a fresh nonce, and its signature."""
    try:
        statement = make_statement(
            kind,
            release_id=release_id,
            bundle_digest=digest,
            signer=actor,
            issued_at=datetime.now(UTC),
            lifetime=LIFETIME,
            nonce=secrets.token_hex(16),
            comment=comment,
            **extra,
        )
    except StatementRefused as exc:
        raise CliError(str(exc), INVALID) from None
    return SignedStatement(
        statement.canonical().decode("utf-8"), sign(statement.canonical()), comment
    )


def governance_files(bundle: Path, signatures: list[Path] | None = None) -> SignedBundle:
    """The bundle's text and its signatures: the given files, or every `BUNDLE*.sig` beside it."""
    found = signatures or sorted(bundle.parent.glob(f"{bundle.name}*.sig"))
    if not found:
        raise CliError(
            f"{bundle}: no signatures ({bundle.name}.sig or {bundle.name}.<admin>.sig); "
            "governance administrators sign it with `finrelease governance sign`",
            INVALID,
        )
    if len(found) > MAX_SIGNATURES:
        raise CliError(f"{len(found)} signature files, at most {MAX_SIGNATURES}", INVALID)
    try:
        text = _read(bundle).decode("utf-8")
        sigs = [_read(path).decode("ascii") for path in found]
    except UnicodeDecodeError as exc:
        raise CliError(f"{bundle}: not text: {exc.reason}", INVALID) from None
    return SignedBundle(text, sigs)


def comment_from(comment: str, comment_file: Path | None) -> str:
    """The comment, or the content of --comment-file (a comment too long for argv)."""
    if comment_file is None:
        return comment
    if comment:
        raise CliError("--comment and --comment-file: pass one of them", INVALID)
    try:
        return _read(comment_file).decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{comment_file}: not UTF-8 text", INVALID) from None


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise CliError(f"{path}: larger than {MAX_FILE_BYTES:,} bytes", INVALID)
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror or exc}", INVALID) from None
