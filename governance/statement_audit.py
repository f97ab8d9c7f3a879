"""Re-checking the recorded statements of a release offline, as `evidence verify` will.

Every statement is verified exactly as its update validator did, at the time the evidence
recorded it (`recorded_at`, the workflow time), with the nonces of the statements before it:
so a statement slipped into the evidence later, expired when it counted, signed by someone
without a key in the bundle, or replayed, is named with its position and reason.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from governance.sshsig import PublicKey
from governance.statements import (
    DEFAULT_MAX_AGE,
    StatementRefused,
    VerifiedStatement,
    parse_statement,
    verify_statement,
)


@dataclass(frozen=True)
class RecordedStatement:
    """A statement as the evidence keeps it."""

    statement: str
    signature: str
    recorded_at: datetime
    comment: str = ""


@dataclass(frozen=True)
class AuditFinding:
    index: int
    reason: str
    message: str


def audit_statements(
    records: Iterable[RecordedStatement],
    *,
    release_id: str,
    bundle_digest: str,
    keys_of: Mapping[str, Collection[PublicKey]],
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> tuple[list[VerifiedStatement], list[AuditFinding]]:
    """(statements that hold, findings for those that do not), in the evidence's order."""
    seen: set[str] = set()
    held: list[VerifiedStatement] = []
    findings: list[AuditFinding] = []
    for index, record in enumerate(records):
        try:
            kind = parse_statement(record.statement).kind
            verified = verify_statement(
                record.statement,
                record.signature,
                kind=kind,
                release_id=release_id,
                bundle_digest=bundle_digest,
                keys_of=keys_of,
                now=record.recorded_at,
                seen_nonces=seen,
                comment=record.comment,
                max_age=max_age,
            )
        except StatementRefused as exc:
            findings.append(AuditFinding(index, exc.reason, str(exc)))
            continue
        seen.add(verified.statement.nonce)
        held.append(verified)
    return held, findings
