"""Signed statements: every human action a control counts, as canonical JSON plus an SSHSIG.

A statement is the canonical JSON (sorted keys, no whitespace, UTF-8) of

    {kind, release_id, bundle_digest, signer, issued_at, expires_at, nonce, comment_sha256}
    + role    for approve | reject | retro_approve | break_glass
    + wave    for promote (the wave it lets go)
    + tenant, choice   for decide (choice: restore | fix_forward)
                       and resolve (choice: retry | leave_out, for a parked tenant)

signed in the `finrelease` SSHSIG namespace by the signer's key. The signed bytes are the
statement itself: `verify_statement` refuses any text that is not already canonical, so the
bytes an auditor checks with `ssh-keygen -Y verify` are the bytes the workflow read. Only the
comment's sha256 is signed (the comment travels beside it, at most 2 KiB). Times are UTC,
whole seconds, `2026-12-03T14:00:00Z`. Pure: `now` and the nonces already seen are passed in.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from governance import sshsig
from governance.evidence import canonical_json
from governance.quoting import quoted
from governance.spec import RELEASE_ID
from governance.sshsig import BadSignature, MalformedSignature, PublicKey
from governance.trust import identity_problem

KINDS = (
    "start",
    "approve",
    "reject",
    "retro_approve",
    "break_glass",
    "promote",
    "pause",
    "resume",
    "abort",
    "decide",
    "resolve",
)
ROLE_KINDS = ("approve", "reject", "retro_approve", "break_glass")
CHOICES_OF = {"decide": ("restore", "fix_forward"), "resolve": ("retry", "leave_out")}
CHOICES = CHOICES_OF["decide"]
MAX_COMMENT_BYTES = 2048
MAX_STATEMENT_BYTES = 4096  # every field is bounded; this bounds the whole before parsing
DEFAULT_MAX_AGE = timedelta(minutes=15)
CLOCK_SKEW = timedelta(minutes=2)  # a signer's clock slightly ahead is not a forgery

_COMMON = ("kind", "release_id", "bundle_digest", "signer", "issued_at", "expires_at", "nonce")
_EXTRA: dict[str, tuple[str, ...]] = {kind: ("role",) for kind in ROLE_KINDS}
_EXTRA |= {"promote": ("wave",), "decide": ("tenant", "choice"), "resolve": ("tenant", "choice")}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # roles, waves, tenants
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

# Why a statement was refused: one code per reason, for counting refusals and for tests.
MALFORMED = "malformed"
BAD_SIGNATURE = "bad_signature"
UNKNOWN_KEY = "unknown_key"
NOT_KEY_OWNER = "signer_not_key_owner"
WRONG_KIND = "wrong_kind"
WRONG_RELEASE = "wrong_release"
WRONG_DIGEST = "wrong_digest"
COMMENT_MISMATCH = "comment_mismatch"
EXPIRED = "expired"
ISSUED_IN_FUTURE = "issued_in_future"
REUSED_NONCE = "reused_nonce"


class StatementRefused(ValueError):
    """A statement that must not count; `reason` is one of the codes above."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")


@dataclass(frozen=True)
class Statement:
    """One signed action. `role`, `wave`, `tenant`, `choice` only for the kinds that use them."""

    kind: str
    release_id: str
    bundle_digest: str
    signer: str
    issued_at: datetime
    expires_at: datetime
    nonce: str
    comment_sha256: str
    role: str | None = None
    wave: str | None = None
    tenant: str | None = None
    choice: str | None = None

    def as_json(self) -> dict[str, str]:
        fields = {
            "kind": self.kind,
            "release_id": self.release_id,
            "bundle_digest": self.bundle_digest,
            "signer": self.signer,
            "issued_at": format_time(self.issued_at),
            "expires_at": format_time(self.expires_at),
            "nonce": self.nonce,
            "comment_sha256": self.comment_sha256,
        }
        for key in _EXTRA.get(self.kind, ()):
            fields[key] = getattr(self, key)
        return fields

    def canonical(self) -> bytes:
        """The bytes that are signed."""
        return canonical_json(self.as_json()).encode("utf-8")


@dataclass(frozen=True)
class VerifiedStatement:
    """A statement that passed every check: `identity` signed it with `key`."""

    statement: Statement
    key: PublicKey

    @property
    def identity(self) -> str:
        return self.statement.signer


def comment_sha256(comment: str) -> str:
    """The sha256 (hex) of a comment's UTF-8; refuses comments over 2 KiB."""
    data = comment.encode("utf-8")
    if len(data) > MAX_COMMENT_BYTES:
        raise StatementRefused(
            MALFORMED, f"comment: {len(data)} bytes, at most {MAX_COMMENT_BYTES}"
        )
    return hashlib.sha256(data).hexdigest()


def format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("statement times must be timezone-aware")
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_statement(
    kind: str,
    *,
    release_id: str,
    bundle_digest: str,
    signer: str,
    issued_at: datetime,
    lifetime: timedelta,
    nonce: str,
    comment: str = "",
    **extra: str,
) -> Statement:
    """Build (and check) a statement to sign; the caller supplies the time and a fresh nonce."""
    data = {
        "kind": kind,
        "release_id": release_id,
        "bundle_digest": bundle_digest,
        "signer": signer,
        "issued_at": format_time(issued_at),
        "expires_at": format_time(issued_at + lifetime),
        "nonce": nonce,
        "comment_sha256": comment_sha256(comment),
        **extra,
    }
    return parse_statement(canonical_json(data).encode("utf-8"))


def sign_statement(statement: Statement, key: sshsig.SigningKey) -> str:
    """The armored SSHSIG over `statement.canonical()`."""
    return sshsig.sign(statement.canonical(), key)


def parse_statement(data: bytes | str) -> Statement:
    """Parse canonical statement bytes; `StatementRefused(MALFORMED)` naming the field."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_STATEMENT_BYTES:
        raise StatementRefused(MALFORMED, f"longer than {MAX_STATEMENT_BYTES} bytes")
    try:
        document = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise StatementRefused(MALFORMED, f"not JSON: {quoted(str(exc))}") from None
    if not isinstance(document, dict):
        raise StatementRefused(MALFORMED, "not a JSON object")
    kind = document.get("kind")
    if kind not in KINDS:
        raise StatementRefused(MALFORMED, f"kind: must be one of {' | '.join(KINDS)}")
    wanted = {*_COMMON, "comment_sha256", *_EXTRA.get(kind, ())}
    unknown, missing = sorted(set(document) - wanted), sorted(wanted - set(document))
    if unknown:
        raise StatementRefused(
            MALFORMED, f"{quoted(unknown[0])}: not a field of a {kind} statement"
        )
    if missing:
        raise StatementRefused(MALFORMED, f"{missing[0]}: missing")
    for key, value in document.items():
        if not isinstance(value, str):
            raise StatementRefused(MALFORMED, f"{key}: must be a string")
    _check(document, "release_id", re.compile(f"^{RELEASE_ID}$"), "3-64 of A-Z a-z 0-9 . _ -")
    _check(document, "bundle_digest", _HEX64, "64 lowercase hex digits (sha256)")
    _check(document, "comment_sha256", _HEX64, "64 lowercase hex digits (sha256)")
    _check(document, "nonce", _NONCE, "16-64 of A-Z a-z 0-9 _ -")
    for key in ("role", "wave", "tenant"):
        if key in document:
            _check(document, key, _NAME, "1-64 of A-Z a-z 0-9 _ . -")
    if "choice" in document and document["choice"] not in CHOICES_OF[kind]:
        choices = " | ".join(CHOICES_OF[kind])
        raise StatementRefused(MALFORMED, f"choice: must be one of {choices}")
    signer = document["signer"]
    problem = identity_problem(signer)
    if problem:
        raise StatementRefused(MALFORMED, f"signer: {problem}")
    issued_at, expires_at = _time(document, "issued_at"), _time(document, "expires_at")
    if expires_at <= issued_at:
        raise StatementRefused(MALFORMED, "expires_at: must be after issued_at")
    if canonical_json(document).encode("utf-8") != raw:
        raise StatementRefused(MALFORMED, "not canonical JSON (sorted keys, no whitespace)")
    return Statement(
        kind=kind,
        release_id=document["release_id"],
        bundle_digest=document["bundle_digest"],
        signer=signer,
        issued_at=issued_at,
        expires_at=expires_at,
        nonce=document["nonce"],
        comment_sha256=document["comment_sha256"],
        role=document.get("role"),
        wave=document.get("wave"),
        tenant=document.get("tenant"),
        choice=document.get("choice"),
    )


def verify_statement(
    statement: bytes | str,
    signature: str,
    *,
    kind: str,
    release_id: str,
    bundle_digest: str,
    keys_of: Mapping[str, Collection[PublicKey]],
    now: datetime,
    seen_nonces: Collection[str],
    comment: str = "",
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> VerifiedStatement:
    """Check everything a control needs before a statement may count, in this order:
    malformed, bad signature, unknown key, signer not the key's owner, wrong kind, wrong
    release, wrong digest, comment mismatch, issued in the future, expired, reused nonce.

    `keys_of` maps each identity (as the policy spells it) to its public keys; a statement
    expires at `expires_at` or `max_age` after `issued_at`, whichever is first. Nothing is
    recorded: the caller adds the nonce to its seen set once it accepts the statement.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    parsed = parse_statement(statement)
    try:
        key = sshsig.verify(parsed.canonical(), signature)
    except MalformedSignature as exc:
        raise StatementRefused(MALFORMED, str(exc)) from None
    except BadSignature as exc:
        raise StatementRefused(BAD_SIGNATURE, str(exc)) from None
    owners = [identity for identity, keys in keys_of.items() if key in keys]
    if not owners:
        raise StatementRefused(
            UNKNOWN_KEY, f"key {key.fingerprint} belongs to no one in the policy"
        )
    if parsed.signer not in owners:
        raise StatementRefused(
            NOT_KEY_OWNER, f"key {key.fingerprint} is not a key of {quoted(parsed.signer)}"
        )
    if parsed.kind != kind:
        raise StatementRefused(WRONG_KIND, f"a {parsed.kind} statement, not {kind}")
    if parsed.release_id != release_id:
        raise StatementRefused(
            WRONG_RELEASE, f"signed for release {parsed.release_id}, not {quoted(release_id)}"
        )
    if parsed.bundle_digest != bundle_digest:
        raise StatementRefused(
            WRONG_DIGEST,
            f"signed digest {parsed.bundle_digest[:12]}…, the release's is {bundle_digest[:12]}…",
        )
    if comment_sha256(comment) != parsed.comment_sha256:
        raise StatementRefused(COMMENT_MISMATCH, "the comment is not the one signed")
    if parsed.issued_at > now + CLOCK_SKEW:
        raise StatementRefused(
            ISSUED_IN_FUTURE,
            f"issued at {format_time(parsed.issued_at)}, now is {format_time(now)}",
        )
    deadline = min(parsed.expires_at, parsed.issued_at + max_age)
    if now >= deadline:
        raise StatementRefused(
            EXPIRED, f"valid until {format_time(deadline)}, now is {format_time(now)}"
        )
    if parsed.nonce in seen_nonces:
        raise StatementRefused(REUSED_NONCE, f"nonce {parsed.nonce} was already used")
    return VerifiedStatement(parsed, key)


def _check(document: dict[str, Any], key: str, pattern: re.Pattern[str], rule: str) -> None:
    if not pattern.match(document[key]):
        raise StatementRefused(MALFORMED, f"{key}: must be {rule}, not {quoted(document[key])}")


def _time(document: dict[str, Any], key: str) -> datetime:
    text = document[key]
    if not _TIME.match(text):
        raise StatementRefused(MALFORMED, f"{key}: must be UTC like 2026-12-03T14:00:00Z")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise StatementRefused(MALFORMED, f"{key}: not a date-time: {quoted(text)}") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate key")
    return dict(pairs)
