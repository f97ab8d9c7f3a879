"""What FinanceRelease and its TenantRollout children tell each other (small summaries only)."""

from __future__ import annotations

from dataclasses import dataclass

from governance.inventory import Tenant
from workflows.contracts import DatabaseBackup, FinanceSnapshot, MigrationScript, RunningState


class TenantPhase:
    """States of one tenant, as the parent's status shows them."""

    PENDING = "pending"
    PREPARING = "preparing"
    WAITING_FOR_LOCK = "waiting_for_lock"
    BACKED_UP = "backed_up"  # reported only when a rehearsal follows
    PREPARED = "prepared"
    PREPARATION_FAILED = "preparation_failed"
    PARKED = "parked"  # a step could not run (infrastructure): waits for an operator
    LEFT_OUT = "left_out"  # parked, then left out of this release by an operator
    DEFERRED = "deferred"
    BLOCKED = "blocked"
    DEPLOYING = "deploying"
    DEPLOYED = "deployed"
    AWAITING_DECISION = "awaiting_decision"
    ROLLED_BACK = "rolled_back"
    FIX_FORWARD = "fix_forward"  # failed; the operator chose not to restore the database
    COMPENSATION_FAILED = "compensation_failed"
    CHANGED_SINCE_BACKUP = "changed_since_backup"  # another release came between: left alone
    NOT_DEPLOYED = "not_deployed"
    ERROR = "error"  # the child workflow itself failed


FAILED_STATES = (
    TenantPhase.ROLLED_BACK,
    TenantPhase.FIX_FORWARD,
    TenantPhase.COMPENSATION_FAILED,
)


@dataclass
class TenantOrder:
    """Input of `TenantRollout`: one tenant of one release."""

    release_id: str
    parent_id: str
    tenant: Tenant
    image: str
    modules: list[str]
    migrations: list[MigrationScript]
    smoke: list[str]
    rehearse: bool
    hold_after_deploy: bool  # rollback_all: stay until the release says keep or compensate
    # see ReleaseRequest.simulated_start; refused unless the worker runs a demo clock
    clock_offset_seconds: float = 0.0


@dataclass
class TenantPrepared:
    """Sent to the parent once backups are verified and (if asked) the rehearsal ran."""

    tenant: str
    ok: bool
    reason: str
    backup: DatabaseBackup | None
    running_image: str
    rehearsal_seconds: float  # 0 when not rehearsed
    rehearsed: bool
    left_out: bool = False  # an operator chose to leave the parked tenant out


@dataclass
class TenantReport:
    """A change of a tenant's state the parent should show (lock waits, decisions, deployed)."""

    tenant: str
    state: str
    detail: str = ""
    lock_holder: str = ""


@dataclass
class DeployOrder:
    wave: str


@dataclass
class StandDown:
    """Do not deploy (the release failed, halted or was aborted before this tenant)."""

    reason: str


@dataclass
class Finish:
    """For held tenants (rollback_all): keep the deployment or compensate it."""

    compensate: bool
    reason: str = ""


@dataclass
class TenantAbort:
    reason: str


@dataclass
class TenantDecision:
    choice: str  # restore | fix_forward
    operator: str
    reason: str = ""


@dataclass
class ParkResolution:
    """The operator's answer to a parked tenant: run its preparation again, or leave it out."""

    choice: str  # one of messages.PARK_CHOICES
    operator: str
    reason: str = ""


@dataclass
class TenantOutcome:
    tenant: str
    state: str  # a TenantPhase
    reason: str
    image_before: str
    image_after: str
    evidence_blob: str
    evidence_head: str
    evidence_url: str
    backup_url: str = ""


@dataclass
class RollbackPackage:
    """What compensation needs: the running state before and the verified backup."""

    state: RunningState | None = None
    backup: DatabaseBackup | None = None
    snapshot: FinanceSnapshot | None = None
    migrated: bool = False
    image_changed: bool = False
    # the cutover (workflows/cutover.py): what to undo before the tenant is reopened
    in_maintenance: bool = False  # workloads scaled to zero (or being scaled)
    closed: bool = False  # the database was (being) closed to Odoo's role
    restore_point: str = ""  # name of the exact copy taken while closed
    reopened: bool = False  # workloads back: from here users may have written
    watermark: bool = False  # write counters recorded at reopening (writes_since_reopen)
