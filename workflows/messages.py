"""What crosses the FinanceRelease boundary: its input, result, handler payloads and status.

Times are ISO 8601 strings with offset (JSON-safe, unambiguous). Everything is small: the
parent keeps a summary per tenant, never a tenant's full evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from workflows.contracts import MigrationScript


class Phase:
    VALIDATING = "Validating"
    AWAITING_APPROVAL = "AwaitingApproval"
    AWAITING_WINDOW = "AwaitingWindow"
    BACKING_UP = "BackingUp"
    REHEARSING = "Rehearsing"
    ROLLING_OUT = "RollingOut"
    REPORTING = "Reporting"


class Outcome:
    COMPLETED = "Completed"
    ROLLED_BACK = "RolledBack"
    PARTIALLY_ROLLED_BACK = "PartiallyRolledBack"
    FAILED = "Failed"
    REJECTED = "Rejected"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    ABORTED = "Aborted"


# `ApplicationError.type` of a refused approval/rejection/decision (not an activity error,
# so it lives here rather than in workflows.contracts.ErrorType).
APPROVAL_REFUSED = "ApprovalRefused"

RELEASE_ID = SearchAttributeKey.for_keyword("ReleaseId")
RELEASE_PHASE = SearchAttributeKey.for_keyword("ReleasePhase")
RISK_CLASS = SearchAttributeKey.for_keyword("RiskClass")
REQUESTED_BY = SearchAttributeKey.for_keyword("RequestedBy")
WORK_ITEM = SearchAttributeKey.for_int("WorkItem")
TENANTS = SearchAttributeKey.for_keyword_list("Tenants")


def release_workflow_id(release_id: str) -> str:
    return f"release-{release_id}"


def tenant_workflow_id(release_id: str, tenant: str) -> str:
    return f"release-{release_id}-{tenant}"


def search_attributes_for(spec: object) -> TypedSearchAttributes:
    """The search attributes a starter sets on `release-<id>` (spec: a governance ReleaseSpec)."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(RELEASE_ID, spec.release_id),  # type: ignore[attr-defined]
            SearchAttributePair(RELEASE_PHASE, Phase.VALIDATING),
            SearchAttributePair(RISK_CLASS, spec.risk),  # type: ignore[attr-defined]
            SearchAttributePair(REQUESTED_BY, spec.requested_by),  # type: ignore[attr-defined]
            SearchAttributePair(WORK_ITEM, spec.work_item),  # type: ignore[attr-defined]
            SearchAttributePair(TENANTS, list(spec.tenants)),  # type: ignore[attr-defined]
        ]
    )


# ---------------------------------------------------------------- input and result


@dataclass
class PinnedText:
    """A governance document's text and the sha256 it was pinned with at start."""

    name: str  # e.g. calendar name, or "release.yaml"
    text: str
    sha256: str


@dataclass
class SignedStatement:
    """A human action as `governance.statements` defines it: the canonical statement, its
    SSHSIG, and the comment (or reason) whose sha256 the statement signs (at most 2 KiB).

    Every update that a control counts takes one: approve, reject (kinds approve/reject, or
    retro_approve for the retrospective approval), pause, resume, promote, abort, decide,
    resolve. Who acts and in which role, wave, tenant or choice is read from the statement,
    never from a field beside it.
    """

    statement: str
    signature: str
    comment: str = ""


@dataclass
class SignedBundle:
    """The governance bundle (canonical JSON text) and its administrators' signatures."""

    bundle: str
    signatures: list[str] = field(default_factory=list)


@dataclass
class ReleaseRequest:
    """Everything the release needs, pinned: editing the files later never changes it.

    Policy, members' keys, calendars and inventory come in `governance`, a bundle signed K of
    N by governance administrators; the workflows worker checks it against its own trust root
    (FINRELEASE_TRUST_ROOT), never one sent here. `start` is the requester's signed start
    statement over the release digest (`governance.release_digest`): the spec's
    `requested_by` must be its signer.

    Task queues are not chosen here: they come from the workflows worker's configuration
    (`workflows.worker_config`); a field sent by an old caller (`queues`, `policy`, ...) is
    ignored by the data converter (sdk-python converter `value_to_type`: "Unknown fields are
    silently ignored"). `simulated_start` makes the release's clock read as if it had started
    at that instant (calendar drills and tests); it is refused as Invalid unless the
    workflows worker runs with FINRELEASE_DEMO_CLOCK=1, and shown in status and evidence.
    """

    release_id: str
    spec: PinnedText
    governance: SignedBundle
    start: SignedStatement
    migrations: list[MigrationScript] = field(default_factory=list)
    simulated_start: str = ""
    link: str = ""  # where people find the release (UI URL), used in notifications


@dataclass
class RecordedSignedStatement:
    """A statement the release accepted, with the workflow time it was accepted at."""

    statement: str
    signature: str
    comment: str
    recorded_at: str  # ISO 8601


@dataclass
class Authorization:
    """What a release answers to its `authorization` query: everything a worker that changes
    a tenant needs to re-verify, with its own trust root, that this release may do so."""

    release_id: str
    spec: PinnedText | None = None  # None: the release never validated its governance
    governance: SignedBundle | None = None
    migrations: list[MigrationScript] = field(default_factory=list)
    statements: list[RecordedSignedStatement] = field(default_factory=list)
    sealed: bool = False  # the release has an outcome: it changes no tenant any more
    simulated_start: str = ""


@dataclass
class ReleaseResult:
    release_id: str
    outcome: str
    reason: str
    tenants: dict[str, str]  # tenant -> tenant state
    evidence_url: str
    problems: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- handler payloads


@dataclass
class ApprovalVerdict:
    accepted: bool
    code: str
    message: str


DECISIONS = ("restore", "fix_forward")
PARK_CHOICES = ("retry", "leave_out")


# ---------------------------------------------------------------- status


@dataclass
class RefusedAttempt:
    approver: str
    role: str
    kind: str  # approval | rejection
    code: str
    message: str
    at: str


@dataclass
class GivenApproval:
    approver: str
    role: str
    at: str


@dataclass
class TenantState:
    tenant: str
    state: (
        str  # pending | preparing | prepared | deferred | blocked | deploying | ... (see tenant.py)
    )
    detail: str = ""
    lock_holder: str = ""  # workflow id holding the tenant's lock while we wait for it


@dataclass
class WaveStatus:
    name: str
    state: str  # pending | waiting | running | done | halted
    tenants: list[TenantState]


@dataclass
class ReleaseStatus:
    release_id: str
    phase: str
    outcome: str  # empty while running
    spec_sha256: str
    risk: str
    approvals: list[GivenApproval]
    missing: dict[str, int]  # role -> approvals still needed
    refused: list[RefusedAttempt]
    next_timer: str  # ISO instant, empty when none
    next_timer_reason: str
    waves: list[WaveStatus]
    paused: bool
    waiting_for_locks: dict[str, str]  # tenant -> lock holder
    last_error: str
    simulated_start: str = ""  # set when the release runs on a demo clock (never in production)
    # every refused approval attempt per reason code; `refused` holds only the first few
    refused_counts: dict[str, int] = field(default_factory=dict)
    # the release digest statements sign (spec, migrations' content, image, inventory of the
    # release's tenants, policy, members' keys, calendars); empty until validated
    digest: str = ""
    governance_serial: int = 0
