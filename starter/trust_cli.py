"""`finrelease governance pack|sign|verify|show|allowed-signers|digest` and `finrelease sign-statement`.

Thin: read files, call `governance.bundle` / `governance.statements`, print escaped text.
Exit codes: 0 ok, 1 refused (too few administrators signed), 2 invalid input or usage.
Private keys are read from `--key FILE` (unencrypted OpenSSH or PKCS#8, Ed25519 or P-256)
and never printed, or stay in Azure Key Vault (`--key-vault KEY_ID`, EC P-256); for a key in ssh-agent or on a FIDO token, write the statement without
`--key` and sign it with `ssh-keygen -Y sign -n finrelease -f KEY.pub FILE`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from governance import sshsig
from governance.bundle import BundleRefused, pack_bundle, parse_bundle, verify_bundle
from governance.documents import load_yaml, parse_duration
from governance.problems import ValidationFailed
from governance.quoting import printable
from governance.release_digest import release_digest, release_manifest
from governance.spec import parse_spec
from governance.sshsig import MalformedSignature
from governance.statements import KINDS, StatementRefused, make_statement
from governance.trust import TrustRoot, parse_trust_root
from starter.governance_cli import read_migrations
from starter.identity import IdentityMissing, resolve_actor

OK, FAILED, INVALID = 0, 1, 2
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_LIFETIME = timedelta(hours=24)

governance_app = typer.Typer(
    no_args_is_help=True, help="Pack, sign, verify and show K-of-N signed governance bundles."
)


def _fail(message: str, code: int = INVALID) -> NoReturn:
    typer.echo(f"error: {printable(message)}", err=True)
    raise typer.Exit(code)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            _fail(f"{path}: larger than {MAX_FILE_BYTES:,} bytes")
        return path.read_bytes()
    except OSError as exc:
        _fail(f"{path}: cannot read: {exc.strerror or exc}")


def _read_text(path: Path) -> str:
    try:
        return _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        _fail(f"{path}: not UTF-8 text")


def _write(path: Path, data: bytes | str) -> None:
    try:
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    except OSError as exc:
        _fail(f"{path}: cannot write: {exc.strerror or exc}")


def _key(path: Path) -> sshsig.SigningKey:
    try:
        return sshsig.load_private_key(_read_bytes(path))
    except MalformedSignature as exc:
        _fail(f"{path}: {exc}")


def _signer(key: Path | None, key_vault: str | None) -> Callable[[bytes], str] | None:
    """How to sign: a key file, a Key Vault key (ES256), or neither (sign with ssh-keygen)."""
    if key is not None and key_vault is not None:
        _fail("--key and --key-vault: pass one of them")
    if key is not None:
        signing_key = _key(key)
        return lambda message: sshsig.sign(message, signing_key)
    if key_vault is not None:
        from starter.key_vault import open_key_vault_signer

        try:
            return open_key_vault_signer(key_vault).sign
        except MalformedSignature as exc:
            _fail(str(exc))
        except Exception as exc:  # the Azure SDK's errors; its message carries no secret
            _fail(f"--key-vault: {type(exc).__name__}: {str(exc)[:200]}")
    return None


def _bundle_bytes(path: Path) -> bytes:
    data = _read_bytes(path)
    try:
        parse_bundle(data)
    except BundleRefused as exc:
        _fail(f"{path}: {exc}")
    return data


def _trust_root(path: Path) -> TrustRoot:
    try:
        return parse_trust_root(_read_text(path))
    except ValidationFailed as exc:
        _fail(f"{path}: " + "; ".join(str(p) for p in exc.problems[:10]))


# --- governance ------------------------------------------------------------------------


@governance_app.command("pack")
def pack(
    policy: Annotated[Path, typer.Option(help="policy.yaml")],
    inventory: Annotated[Path, typer.Option(help="tenants.yaml")],
    calendars: Annotated[Path, typer.Option(help="directory of <name>.yaml")],
    members: Annotated[Path, typer.Option(help="members.yaml: identity -> [public key, ...]")],
    serial: Annotated[int, typer.Option(min=1, help="greater than the bundle it replaces")],
    output: Annotated[Path, typer.Option("--output", "-o", help="bundle file to write")],
) -> None:
    """Check the documents and write them as one canonical bundle; print its digest."""
    if not calendars.is_dir():
        _fail(f"{calendars}: not a directory of calendars")
    try:
        keys = load_yaml(_read_text(members))
    except ValidationFailed as exc:
        _fail(f"{members}: {exc}")
    if not isinstance(keys, dict):
        _fail(f"{members}: must map each identity to a list of public keys")
    try:
        data = pack_bundle(
            serial=serial,
            policy=_read_text(policy),
            inventory=_read_text(inventory),
            calendars={p.stem: _read_text(p) for p in sorted(calendars.glob("*.yaml"))},
            members=keys,
        )
    except BundleRefused as exc:
        _fail(str(exc))
    _write(output, data)
    typer.echo(f"bundle {output}: serial {serial}, digest {parse_bundle(data).digest}")


@governance_app.command("sign")
def sign(
    bundle: Annotated[Path, typer.Argument(help="bundle file")],
    key: Annotated[Path | None, typer.Option(help="the administrator's private key file")] = None,
    key_vault: Annotated[str | None, typer.Option(help="or a Key Vault key id (EC P-256)")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="default BUNDLE.sig")
    ] = None,
) -> None:
    """Sign a bundle as one governance administrator (same as ssh-keygen -Y sign -n finrelease)."""
    data = _bundle_bytes(bundle)
    signer = _signer(key, key_vault)
    if signer is None:
        _fail("--key or --key-vault: how to sign (or run ssh-keygen -Y sign -n finrelease)")
    target = output or bundle.with_name(bundle.name + ".sig")
    signature = signer(data)
    _write(target, signature)
    fingerprint = sshsig.parse_signature(signature).public_key.fingerprint
    typer.echo(f"signed {parse_bundle(data).digest} with {fingerprint}: {target}")


@governance_app.command("verify")
def verify(
    bundle: Annotated[Path, typer.Argument(help="bundle file")],
    trust_root: Annotated[Path, typer.Option("--trust-root", help="threshold + admins' keys")],
    signature: Annotated[list[Path], typer.Option("--signature", "-s", help="repeatable")],
    min_serial: Annotated[int, typer.Option(min=1, help="refuse older bundles")] = 1,
) -> None:
    """Accept the bundle only if K distinct administrators of the trust root signed it."""
    data = _bundle_bytes(bundle)
    root = _trust_root(trust_root)
    try:
        verdict = verify_bundle(
            data, [_read_text(s) for s in signature], root, min_serial=min_serial
        )
    except BundleRefused as exc:
        _fail(str(exc), FAILED if exc.reason != "malformed" else INVALID)
    signers = ", ".join(printable(who) for who in verdict.signed_by)
    typer.echo(
        f"ok: bundle {verdict.bundle.digest} serial {verdict.bundle.serial} signed by "
        f"{signers} ({len(verdict.signed_by)} of {len(root.admins)}, {root.threshold} required)"
    )


@governance_app.command("show")
def show(bundle: Annotated[Path, typer.Argument(help="bundle file")]) -> None:
    """Print what a bundle decides: roles and their members' keys, tenants, calendars."""
    parsed = parse_bundle(_bundle_bytes(bundle))
    typer.echo(f"bundle {parsed.digest} serial {parsed.serial}")
    typer.echo("roles:")
    for role, people in parsed.policy.approvers.items():
        typer.echo(f"  {printable(role)}: {', '.join(printable(p) for p in people)}")
    typer.echo("risk:")
    for risk, rule in parsed.policy.risk.items():
        quorum = ", ".join(f"{printable(role)} {count}" for role, count in rule.approvals.items())
        typer.echo(f"  {risk}: {quorum}" + (" (freeze override)" if rule.freeze_override else ""))
    typer.echo("members:")
    for identity, keys in parsed.members.items():
        for public in keys:
            typer.echo(f"  {printable(identity)}: {public.key_type} {public.fingerprint}")
    typer.echo("tenants:")
    for tenant in parsed.inventory.tenants:
        typer.echo(f"  {tenant.name}: calendar {printable(tenant.calendar)}, {tenant.timezone}")
    typer.echo(f"calendars: {', '.join(printable(name) for name in sorted(parsed.calendars))}")


@governance_app.command("allowed-signers")
def export_allowed_signers(bundle: Annotated[Path, typer.Argument(help="bundle file")]) -> None:
    """Print the members' keys as an allowed_signers file for `ssh-keygen -Y verify`."""
    parsed = parse_bundle(_bundle_bytes(bundle))
    try:
        entries = [(who, key) for who, keys in parsed.members.items() for key in keys]
        typer.echo(sshsig.allowed_signers(entries), nl=False)
    except ValueError as exc:
        _fail(str(exc))


@governance_app.command("digest")
def digest(
    spec: Annotated[Path, typer.Argument(help="release.yaml (migrations relative to it)")],
    bundle: Annotated[Path, typer.Option(help="the governance bundle the release runs under")],
    as_json: Annotated[bool, typer.Option("--json", help="print the whole manifest")] = False,
) -> None:
    """The release digest approvers sign, and what it covers; check it before you sign."""
    parsed = parse_bundle(_bundle_bytes(bundle))
    try:
        release = parse_spec(_read_text(spec), parsed.inventory, parsed.policy, parsed.calendars)
    except ValidationFailed as exc:
        _fail(f"{spec}: " + "; ".join(str(p) for p in exc.problems[:10]))
    errors: list[str] = []
    scripts = read_migrations(spec, release, errors)
    if errors:
        _fail("; ".join(errors))
    contents = [(script.name, script.sql) for script in scripts]
    manifest = release_manifest(release, contents, parsed)
    if as_json:
        typer.echo(json.dumps(manifest, indent=2, ensure_ascii=True))
    else:
        typer.echo(f"release {release.release_id} ({release.risk}), spec sha256 {release.sha256}")
        typer.echo(f"image {printable(release.image)}")
        for item in manifest["migrations"]:
            typer.echo(f"migration {printable(item['name'])} sha256 {item['sha256']}")
        for name, tenants in release.waves():
            typer.echo(f"wave {printable(name)}: {', '.join(tenants)}")
        for name, sha in manifest["calendars"].items():
            typer.echo(f"calendar {printable(name)} sha256 {sha}")
        typer.echo(
            f"policy sha256 {manifest['policy_sha256']}, keys sha256 {manifest['members_sha256']}"
        )
    typer.echo(f"digest: {release_digest(release, contents, parsed)}")


# --- statements ------------------------------------------------------------------------


def sign_statement_command(
    kind: Annotated[str, typer.Argument(help=" | ".join(KINDS))],
    release: Annotated[str, typer.Option(help="release id")],
    digest: Annotated[str, typer.Option(help="the release digest you checked; never filled in")],
    out: Annotated[Path, typer.Option(help="statement file; the signature goes to OUT.sig")],
    key: Annotated[
        Path | None, typer.Option(help="private key; omit to sign with ssh-keygen")
    ] = None,
    key_vault: Annotated[str | None, typer.Option(help="or a Key Vault key id (EC P-256)")] = None,
    actor: Annotated[str | None, typer.Option("--as", help="you, as the policy names you")] = None,
    role: Annotated[
        str | None, typer.Option(help="approve | reject | retro_approve | break_glass")
    ] = None,
    wave: Annotated[str | None, typer.Option(help="promote: the wave to let go")] = None,
    tenant: Annotated[str | None, typer.Option(help="decide: the tenant")] = None,
    choice: Annotated[str | None, typer.Option(help="decide: restore | fix_forward")] = None,
    comment: Annotated[str, typer.Option(help="at most 2 KiB; only its sha256 is signed")] = "",
    lifetime: Annotated[str, typer.Option(help="how long it stays valid, e.g. 10m")] = "10m",
) -> None:
    """Write a signed statement of one action (approve, promote, ...) for the workflow."""
    try:
        identity = resolve_actor(actor)
        valid_for = parse_duration(lifetime)
    except (IdentityMissing, ValueError) as exc:
        _fail(str(exc))
    sign = _signer(key, key_vault)
    if not timedelta(0) < valid_for <= MAX_LIFETIME:
        _fail(f"--lifetime: must be longer than 0s and at most 24h, not {lifetime!r}")
    extra = {
        name: value
        for name, value in (("role", role), ("wave", wave), ("tenant", tenant), ("choice", choice))
        if value is not None
    }
    try:
        statement = make_statement(
            kind,
            release_id=release,
            bundle_digest=digest,
            signer=identity,
            issued_at=datetime.now(UTC),
            lifetime=valid_for,
            nonce=secrets.token_hex(16),
            comment=comment,
            **extra,
        )
    except StatementRefused as exc:
        _fail(str(exc))
    _write(out, statement.canonical())
    if sign is None:
        typer.echo(f"statement {out}; sign it with: ssh-keygen -Y sign -n finrelease -f KEY {out}")
        return
    signature = out.with_name(out.name + ".sig")
    _write(signature, sign(statement.canonical()))
    typer.echo(
        f"statement {out}, signature {signature}, expires {statement.as_json()['expires_at']}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(governance_app, name="governance")
    app.command("sign-statement")(sign_statement_command)
