"""The authority a release runs under: its governance bundle, its digest, its statements.

`establish` is the Validating step's trust decision, pure and deterministic: the bundle must
satisfy the *workflows worker's* trust root (K of N governance administrators; the caller
cannot send one), the spec is read against the bundle's policy, inventory and calendars, and
the release digest (`governance.release_digest`: spec, migrations' content, image, the
release's tenants, policy, members' keys, calendars) is what every statement must sign. The
requester is the signer of the start statement, not a free-text field.

`verify` is what every update validator calls before anything enters history; `accept` is
what the handler calls (it runs again on replay, with the same workflow time, so it reaches
the same verdict) and spends the statement's nonce. Statements are checked against
`workflow.now()` — real time, never the demo clock — so a reset that re-applies old updates
meets expired statements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from governance.bundle import BundleRefused, GovernanceBundle, verify_bundle
from governance.identity import same_identity
from governance.problems import ValidationFailed
from governance.quoting import quoted
from governance.release_digest import release_digest
from governance.spec import ReleaseSpec, parse_spec
from governance.statements import (
    DEFAULT_MAX_AGE,
    StatementRefused,
    VerifiedStatement,
    verify_statement,
)
from governance.trust import parse_trust_root
from workflows.messages import ReleaseRequest, SignedStatement

MAX_SIGNATURE_CHARS = 4096  # an armored SSHSIG of an Ed25519 or P-256 key is under 1 KiB


class NotEstablished(ValueError):
    """The release's governance could not be trusted; `problems` name each reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class ReleaseAuthority:
    release_id: str
    bundle: GovernanceBundle
    signed_by: tuple[str, ...]  # the governance administrators whose signatures held
    spec: ReleaseSpec
    digest: str
    requester: VerifiedStatement
    max_age: timedelta = DEFAULT_MAX_AGE
    nonces: set[str] = field(default_factory=set)

    def verify(self, signed: SignedStatement, kind: str, now: datetime) -> VerifiedStatement:
        """The verified statement, or ValueError "refused (<reason>): ..." for the caller."""
        return _verify(
            signed, kind, self.release_id, self.digest, self.bundle, self.nonces, now, self.max_age
        )

    def accept(self, signed: SignedStatement, kind: str, now: datetime) -> VerifiedStatement:
        """Verify again (the handler) and spend the nonce: the statement counts once."""
        verified = self.verify(signed, kind, now)
        self.nonces.add(verified.statement.nonce)
        return verified


def establish(request: ReleaseRequest, trust_root: str, now: datetime) -> ReleaseAuthority:
    """The release's authority, or NotEstablished listing every problem (ends it Invalid)."""
    if not trust_root:
        raise NotEstablished(
            [
                "governance: the workflows worker has no trust root (FINRELEASE_TRUST_ROOT), "
                "so no governance bundle can be trusted"
            ]
        )
    try:
        verdict = verify_bundle(
            request.governance.bundle.encode("utf-8"),
            request.governance.signatures,
            parse_trust_root(trust_root),
        )
    except BundleRefused as refused:
        raise NotEstablished([f"governance: {refused}"]) from None
    except ValidationFailed as failed:  # the worker checked it at start; defensive
        raise NotEstablished([f"trust root: {p}" for p in failed.problems]) from None
    bundle = verdict.bundle
    try:
        spec = parse_spec(request.spec.text, bundle.inventory, bundle.policy, bundle.calendars)
    except ValidationFailed as failed:
        raise NotEstablished([str(p) for p in failed.problems]) from None
    try:
        digest = release_digest(spec, [(m.name, m.sql) for m in request.migrations], bundle)
    except ValueError as exc:
        raise NotEstablished([str(exc)]) from None
    try:
        start = _verify(
            request.start, "start", request.release_id, digest, bundle, set(), now, DEFAULT_MAX_AGE
        )
    except ValueError as exc:
        raise NotEstablished([f"start statement: {exc}"]) from None
    if not same_identity(start.identity, spec.requested_by):
        raise NotEstablished(
            [
                f"requested_by: the spec names {quoted(spec.requested_by)}, the start statement "
                f"is signed by {quoted(start.identity)}"
            ]
        )
    authority = ReleaseAuthority(request.release_id, bundle, verdict.signed_by, spec, digest, start)
    authority.nonces.add(start.statement.nonce)
    return authority


def _verify(
    signed: SignedStatement,
    kind: str,
    release_id: str,
    digest: str,
    bundle: GovernanceBundle,
    nonces: set[str],
    now: datetime,
    max_age: timedelta,
) -> VerifiedStatement:
    if len(signed.signature) > MAX_SIGNATURE_CHARS:
        raise ValueError(f"refused (malformed): signature longer than {MAX_SIGNATURE_CHARS}")
    try:
        return verify_statement(
            signed.statement,
            signed.signature,
            kind=kind,
            release_id=release_id,
            bundle_digest=digest,
            keys_of=bundle.keys_of(),
            now=now,
            seen_nonces=nonces,
            comment=signed.comment,
            max_age=max_age,
        )
    except StatementRefused as refused:
        detail = str(refused).split(": ", 1)[-1]
        raise ValueError(f"refused ({refused.reason}): {detail}") from None


def statement_record(signed: SignedStatement, accepted_at: datetime) -> dict[str, str]:
    """How the evidence keeps a statement: verifiable offline with `ssh-keygen -Y verify`,
    and re-checkable by `evidence verify` at the (real) workflow time it was accepted."""
    return {
        "statement": signed.statement,
        "signature": signed.signature,
        "accepted_at": accepted_at.isoformat(),
    }
