"""An auditor's offline check of a release's signed statements, from its evidence alone.

The release entry records the policy and every member's public keys it ran under, and the
release digest; every counted human action (start, approvals, rejection, operator actions)
is recorded with its canonical statement, its SSHSIG and the workflow time it was accepted.
`audit_evidence` re-verifies each signature against those keys exactly as the workflow did
(`governance.statement_audit`), then recomputes what the controls decided: the requester
signed the start, no approver is the requester or fills two roles, and an `approved` entry
is backed by a quorum of valid signed approvals. `allowed_signers` and `exported_statements`
let anyone check the same signatures with plain `ssh-keygen -Y verify`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from governance.identity import same_identity
from governance.policy import Approval, ApprovalPolicy, ApprovalState, parse_policy
from governance.problems import ValidationFailed
from governance.sshsig import MalformedSignature, PublicKey, allowed_signers
from governance.statement_audit import RecordedStatement, audit_statements
from governance.statements import VerifiedStatement


@dataclass
class StatementAudit:
    statements: int = 0  # signed statements found in the evidence
    verified: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SignedEntry:
    seq: int
    kind: str
    actor: str
    record: RecordedStatement


def signed_entries(bundle: dict[str, Any]) -> Iterator[SignedEntry]:
    """Every entry of the release bundle that carries a signed statement, in order."""
    for entry in bundle.get("entries", []):
        data = entry.get("data") or {}
        if isinstance(data, dict) and "statement" in data and "signature" in data:
            comment = data.get("comment", data.get("reason", "")) or ""
            at = datetime.fromisoformat(data.get("accepted_at") or entry["at"])
            record = RecordedStatement(data["statement"], data["signature"], at, comment)
            yield SignedEntry(
                entry.get("seq", -1), entry.get("kind", ""), entry.get("actor", ""), record
            )


def members_of(bundle: dict[str, Any]) -> dict[str, tuple[PublicKey, ...]]:
    """identity -> public keys, as the release entry recorded them."""
    governance = _release_data(bundle).get("governance") or {}
    return {
        who: tuple(PublicKey.parse(line) for line in lines)
        for who, lines in (governance.get("members") or {}).items()
    }


def audit_evidence(bundle: dict[str, Any]) -> StatementAudit:
    """Re-verify every signed statement and the approval controls; problems name the entry."""
    audit = StatementAudit()
    release = _release_data(bundle)
    entries = list(signed_entries(bundle))
    audit.statements = len(entries)
    if not release.get("digest"):
        if entries:
            audit.problems.append("signed statements but no release digest in the release entry")
        return audit
    try:
        keys = members_of(bundle)
        policy = parse_policy(release["governance"]["policy"])
    except (KeyError, MalformedSignature, ValidationFailed) as exc:
        audit.problems.append(f"release entry: the governance it ran under is unreadable: {exc}")
        return audit
    held, findings = audit_statements(
        [e.record for e in entries],
        release_id=bundle.get("release_id", ""),
        bundle_digest=release["digest"],
        keys_of=keys,
    )
    for finding in findings:
        entry = entries[finding.index]
        audit.problems.append(f"entry {entry.seq} ({entry.kind}): {finding.message}")
    audit.verified = len(held)
    by_text = {e.record.statement: e for e in entries}
    for verified in held:
        entry = by_text[verified.statement.canonical().decode("utf-8")]
        if not same_identity(entry.actor, verified.identity):
            audit.problems.append(
                f"entry {entry.seq} ({entry.kind}): actor {entry.actor!r} did not sign it"
                f" ({verified.identity} did)"
            )
    starts = [v for v in held if v.statement.kind == "start"]
    spec = release.get("spec") or {}
    if not starts:
        audit.problems.append("no valid start statement")
        return audit
    requester = starts[0]
    if spec.get("requested_by") and not same_identity(requester.identity, spec["requested_by"]):
        audit.problems.append(f"the start is signed by {requester.identity}, not the requester")
    risk = spec.get("risk", "")
    if risk in policy.risk:
        _check_quorum(bundle, held, entries, policy, risk, requester.identity, release, audit)
    return audit


def _check_quorum(
    bundle: dict[str, Any],
    held: list[VerifiedStatement],
    entries: list[SignedEntry],
    policy: ApprovalPolicy,
    risk: str,
    requester: str,
    release: dict[str, Any],
    audit: StatementAudit,
) -> None:
    """Replay the valid signed approvals through the approval rules, as the workflow did."""
    digest = release["digest"]
    state = ApprovalState(policy, risk, requester, digest, datetime.max.replace(tzinfo=UTC))
    by_text = {e.record.statement: e for e in entries}
    for verified in held:
        entry = by_text[verified.statement.canonical().decode("utf-8")]
        if entry.kind != "approval":
            continue
        role = verified.statement.role or ""
        verdict = state.approve(Approval(verified.identity, role, digest, entry.record.recorded_at))
        if not verdict.accepted:
            audit.problems.append(f"entry {entry.seq} (approval): {verdict.message}")
    approved = any(e.get("kind") == "approved" for e in bundle.get("entries", []))
    if approved and not state.quorum_met:
        audit.problems.append(
            f"the release says approved, but valid signed approvals leave {state.missing()} missing"
        )


def allowed_signers_of(bundle: dict[str, Any]) -> str:
    """The members' keys as an `allowed_signers` file for `ssh-keygen -Y verify`."""
    return allowed_signers([(who, key) for who, keys in members_of(bundle).items() for key in keys])


def exported_statements(bundle: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(file stem, statement, signature) of each signed entry, for `ssh-keygen -Y verify`."""
    return [
        (f"{entry.seq:04d}-{entry.kind}", entry.record.statement, entry.record.signature)
        for entry in signed_entries(bundle)
    ]


def _release_data(bundle: dict[str, Any]) -> dict[str, Any]:
    for entry in bundle.get("entries", []):
        if entry.get("kind") == "release":
            return entry.get("data") or {}
    return {}
