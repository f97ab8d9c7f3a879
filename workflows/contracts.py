"""Activity contracts of the release saga: names, task queues and the typed data they exchange.

Workflows import this module (never the I/O libraries); each `activities/` module implements
the activities named here with `@activity.defn(name=...)`. Everything here is small and
carries references (tenant, blob URL, sha256) — never a DSN, key or token.

Signatures (one typed input, one typed output):

    validate_work_item(WorkItemCheck) -> WorkItemInfo
    backup_filestore(TenantTask) -> FilestoreBackup
    check_observability(ObservabilityCheck) -> ObservabilityResult
    notify(Notification) -> NotificationResult            # never raises
    publish_evidence(EvidencePublication) -> PublishedEvidence
    report_to_work_item(WorkItemReport) -> WorkItemReportResult
    backup_database(TenantTask) -> DatabaseBackup
    verify_backup(BackupRequest) -> BackupVerification
    finance_snapshot(TenantTask) -> FinanceSnapshot
    check_modules(ModuleCheck) -> ModuleCheckResult
    rehearse_migration(RehearsalRequest) -> RehearsalResult
    migrate_database(MigrationRequest) -> MigrationResult
    entries_since_backup(BackupRequest) -> EntriesSinceBackup
    restore_database(BackupRequest) -> DatabaseRestore
    close_database(CutoverRequest) -> DatabaseClosed
    take_restore_point(CutoverRequest) -> RestorePoint
    swap_to_restore_point(CutoverRequest) -> DatabaseRestore
    reopen_database(CutoverRequest) -> DatabaseReopened
    drop_restore_point(CutoverRequest) -> RestorePoint
    take_write_watermark(CutoverRequest) -> WriteWatermark
    writes_since_reopen(CutoverRequest) -> WritesSinceReopen
    read_running_state(TenantTask) -> RunningState
    set_maintenance(MaintenanceRequest) -> RolloutStatus
    run_module_update(ModuleUpdateRequest) -> ModuleUpdateResult
    set_image(ImageChange) -> ImageChangeResult
    wait_for_rollout(RolloutWait) -> RolloutStatus
    restore_running_state(StateRestore) -> RolloutStatus
    run_smoke_checks(SmokeRequest) -> SmokeReport
    check_smoke_user(SmokeRequest) -> SmokeReport
"""

from __future__ import annotations

from dataclasses import dataclass, field

from governance.inventory import Tenant

WORKFLOWS_QUEUE = "finrelease-workflows"
DB_QUEUE = "finrelease-db"
K8S_QUEUE = "finrelease-k8s"
AZURE_QUEUE = "finrelease-azure"
SMOKE_QUEUE = "finrelease-smoke"
TASK_QUEUES = (WORKFLOWS_QUEUE, DB_QUEUE, K8S_QUEUE, AZURE_QUEUE, SMOKE_QUEUE)


class Activity:
    """Activity names, grouped by task queue."""

    # finrelease-azure
    VALIDATE_WORK_ITEM = "validate_work_item"
    BACKUP_FILESTORE = "backup_filestore"
    CHECK_OBSERVABILITY = "check_observability"
    NOTIFY = "notify"
    PUBLISH_EVIDENCE = "publish_evidence"
    REPORT_TO_WORK_ITEM = "report_to_work_item"
    # finrelease-db
    BACKUP_DATABASE = "backup_database"
    VERIFY_BACKUP = "verify_backup"
    FINANCE_SNAPSHOT = "finance_snapshot"
    CHECK_MODULES = "check_modules"
    REHEARSE_MIGRATION = "rehearse_migration"
    MIGRATE_DATABASE = "migrate_database"
    ENTRIES_SINCE_BACKUP = "entries_since_backup"
    RESTORE_DATABASE = "restore_database"
    CLOSE_DATABASE = "close_database"
    TAKE_RESTORE_POINT = "take_restore_point"
    SWAP_TO_RESTORE_POINT = "swap_to_restore_point"
    REOPEN_DATABASE = "reopen_database"
    DROP_RESTORE_POINT = "drop_restore_point"
    TAKE_WRITE_WATERMARK = "take_write_watermark"
    WRITES_SINCE_REOPEN = "writes_since_reopen"
    # finrelease-k8s
    READ_RUNNING_STATE = "read_running_state"
    SET_MAINTENANCE = "set_maintenance"
    RUN_MODULE_UPDATE = "run_module_update"
    SET_IMAGE = "set_image"
    WAIT_FOR_ROLLOUT = "wait_for_rollout"
    RESTORE_RUNNING_STATE = "restore_running_state"
    # finrelease-smoke
    RUN_SMOKE_CHECKS = "run_smoke_checks"
    CHECK_SMOKE_USER = "check_smoke_user"


QUEUE_OF: dict[str, str] = {
    Activity.VALIDATE_WORK_ITEM: AZURE_QUEUE,
    Activity.BACKUP_FILESTORE: AZURE_QUEUE,
    Activity.CHECK_OBSERVABILITY: AZURE_QUEUE,
    Activity.NOTIFY: AZURE_QUEUE,
    Activity.PUBLISH_EVIDENCE: AZURE_QUEUE,
    Activity.REPORT_TO_WORK_ITEM: AZURE_QUEUE,
    Activity.BACKUP_DATABASE: DB_QUEUE,
    Activity.VERIFY_BACKUP: DB_QUEUE,
    Activity.FINANCE_SNAPSHOT: DB_QUEUE,
    Activity.CHECK_MODULES: DB_QUEUE,
    Activity.REHEARSE_MIGRATION: DB_QUEUE,
    Activity.MIGRATE_DATABASE: DB_QUEUE,
    Activity.ENTRIES_SINCE_BACKUP: DB_QUEUE,
    Activity.RESTORE_DATABASE: DB_QUEUE,
    Activity.CLOSE_DATABASE: DB_QUEUE,
    Activity.TAKE_RESTORE_POINT: DB_QUEUE,
    Activity.SWAP_TO_RESTORE_POINT: DB_QUEUE,
    Activity.REOPEN_DATABASE: DB_QUEUE,
    Activity.DROP_RESTORE_POINT: DB_QUEUE,
    Activity.TAKE_WRITE_WATERMARK: DB_QUEUE,
    Activity.WRITES_SINCE_REOPEN: DB_QUEUE,
    Activity.READ_RUNNING_STATE: K8S_QUEUE,
    Activity.SET_MAINTENANCE: K8S_QUEUE,
    Activity.RUN_MODULE_UPDATE: K8S_QUEUE,
    Activity.SET_IMAGE: K8S_QUEUE,
    Activity.WAIT_FOR_ROLLOUT: K8S_QUEUE,
    Activity.RESTORE_RUNNING_STATE: K8S_QUEUE,
    Activity.RUN_SMOKE_CHECKS: SMOKE_QUEUE,
    Activity.CHECK_SMOKE_USER: SMOKE_QUEUE,
}


class ErrorType:
    """`ApplicationError.type` names; the non-retryable ones are listed in NON_RETRYABLE."""

    INVALID_RELEASE = "InvalidRelease"
    WORK_ITEM_INVALID = "WorkItemInvalid"
    WORK_ITEM_ACCESS = "WorkItemAccessDenied"
    BACKUP_VERIFICATION_FAILED = "BackupVerificationFailed"
    REHEARSAL_FAILED = "RehearsalFailed"
    MIGRATION_FAILED = "MigrationFailed"
    MODULE_UPDATE_FAILED = "ModuleUpdateFailed"
    ROLLOUT_STUCK = "RolloutStuck"
    SMOKE_CHECK_FAILED = "SmokeCheckFailed"
    CONFIGURATION_MISSING = "ConfigurationMissing"
    TOOL_VERSION = "ToolVersionMismatch"
    EVIDENCE_CONFLICT = "EvidenceConflict"
    NOT_FOUND = "NotFound"
    DATABASE_IN_USE = "DatabaseInUse"
    UNSUPPORTED_ODOO = "UnsupportedOdooVersion"


NON_RETRYABLE = [
    ErrorType.INVALID_RELEASE,
    ErrorType.WORK_ITEM_INVALID,
    ErrorType.WORK_ITEM_ACCESS,
    ErrorType.BACKUP_VERIFICATION_FAILED,
    ErrorType.REHEARSAL_FAILED,
    ErrorType.MIGRATION_FAILED,
    ErrorType.MODULE_UPDATE_FAILED,
    ErrorType.ROLLOUT_STUCK,
    ErrorType.SMOKE_CHECK_FAILED,
    ErrorType.CONFIGURATION_MISSING,
    ErrorType.TOOL_VERSION,
    ErrorType.EVIDENCE_CONFLICT,
    ErrorType.NOT_FOUND,
    ErrorType.UNSUPPORTED_ODOO,
]

# Failures that judge the tenant's own state: the step ran and found something wrong. The
# other non-retryable ones mean the step could not run (configuration missing, a tool or Odoo
# version we do not support, a resource not there), as any retried-out failure does: retrying
# later, or an operator, can help; compensating a healthy tenant cannot.
COULD_NOT_RUN = frozenset(
    {
        ErrorType.CONFIGURATION_MISSING,
        ErrorType.TOOL_VERSION,
        ErrorType.NOT_FOUND,
        ErrorType.UNSUPPORTED_ODOO,
    }
)
VERDICTS = frozenset(NON_RETRYABLE) - COULD_NOT_RUN


# ---------------------------------------------------------------- shared pieces


@dataclass
class TenantTask:
    """The common input of per-tenant activities: which release, which tenant."""

    release_id: str
    tenant: Tenant


@dataclass
class MigrationScript:
    """A SQL migration pinned by content; applied at most once per tenant (ledger)."""

    name: str
    sql: str
    sha256: str


# ---------------------------------------------------------------- finrelease-azure


@dataclass
class WorkItemCheck:
    release_id: str
    work_item: int
    risk: str


@dataclass
class WorkItemInfo:
    id: int
    title: str
    work_item_type: str
    state: str
    risk: str  # mapped to low | medium | high | emergency
    justification: str
    url: str
    rev: int


@dataclass
class FilestoreBackup:
    tenant: str
    manifest_url: str
    manifest_sha256: str
    files: int
    bytes: int


@dataclass
class ObservabilityCheck:
    release_id: str
    tenants: list[str]


@dataclass
class ObservabilityResult:
    healthy: bool
    problems: list[str] = field(default_factory=list)  # each names the check or the alert


@dataclass
class Notification:
    release_id: str
    kind: str  # approval_requested | waiting_for_window | wave_done | failure | decision_needed | outcome
    phase: str
    message: str
    needed_from: list[str] = field(default_factory=list)
    link: str = ""


@dataclass
class NotificationResult:
    delivered: int
    failed: int


def evidence_blob_name(release_id: str, tenant: str = "") -> str:
    """Where a bundle lives in the evidence container: `<release_id>.json` for the release,
    `<release_id>/<tenant>.json` for a tenant's."""
    return f"{release_id}/{tenant}.json" if tenant else f"{release_id}.json"


# The release bundle links its tenants' bundles in entries of this kind, a few hundred per
# entry: {"location": "<release_id>/{tenant}.json", "bundles": [{tenant, head, state}, ...]}
# (an item carries its own "blob_name" only where it is not at `location`).
TENANT_BUNDLES = "tenant_bundles"


@dataclass
class EvidencePublication:
    release_id: str
    bundle: dict  # governance.evidence bundle
    outcome: str
    tenant: str = ""  # empty: the release bundle; otherwise a tenant bundle


@dataclass
class PublishedEvidence:
    url: str
    blob_name: str
    sha256: str
    head: str


@dataclass
class WorkItemReport:
    release_id: str
    work_item: int
    outcome: str
    approvers: list[str]
    tenants: dict[str, str]  # tenant -> tenant outcome
    backups: list[str]  # backup blob urls
    evidence_url: str


@dataclass
class WorkItemReportResult:
    comment_id: int
    state: str


# ---------------------------------------------------------------- finrelease-db


@dataclass
class DatabaseBackup:
    tenant: str
    database: str
    url: str
    blob_name: str
    bytes: int
    sha256: str
    row_counts: dict[str, int]
    max_move_id: int
    taken_at: str  # ISO 8601, UTC


@dataclass
class BackupRequest:
    release_id: str
    tenant: Tenant
    backup: DatabaseBackup


@dataclass
class BackupVerification:
    tenant: str
    verified: bool
    sha256: str
    tables_compared: int
    rows_compared: int


@dataclass
class AccountBalance:
    account: str  # account code, as the company sees it
    debit: str  # decimals as strings in company currency, at its decimal places: exact, JSON-safe
    credit: str
    balance: str
    company: int = 0  # res_company.id (0: written before snapshots were per company)


@dataclass
class CompanyLedger:
    """One company's ledger invariants, in its currency (`decimal_places` digits)."""

    id: int
    name: str
    currency: str
    decimal_places: int
    posted_entries: int
    balance_total: str  # sum of posted balances: "0" on a sound ledger
    unbalanced_entries: list[str]  # entry names, Odoo's rounded test, all of them
    numbering_gap_count: int
    numbering_gaps: list[str]  # "<journal>: <before> -> <entry>", the first GAPS_LISTED
    mismatched_line_count: int  # lines whose copied fields disagree with their entry
    mismatched_lines: list[str]  # "<entry> line <id>: <fields>", the first few
    hashed_entries: int  # entries of hash-protected journals carrying an inalterable hash
    hash_chain_sha256: str  # over (entry, inalterable_hash) of those entries, in chain order


@dataclass
class FinanceSnapshot:
    tenant: str
    trial_balance_sha256: str
    accounts: list[AccountBalance]  # per company and code
    total_debit: str  # summed over companies: meaningful for a single-currency tenant only
    total_credit: str
    posted_entries: int
    unbalanced_entries: list[str]  # entry names
    numbering_gaps: list[str]  # "<journal>: <before> -> <entry>"
    max_move_id: int
    odoo_version: str = ""  # "17.0", "18.0"
    companies: list[CompanyLedger] = field(default_factory=list)


@dataclass
class RehearsalRequest:
    release_id: str
    tenant: Tenant
    backup: DatabaseBackup
    migrations: list[MigrationScript]


@dataclass
class RehearsalResult:
    tenant: str
    passed: bool
    duration_seconds: float
    before: FinanceSnapshot
    after: FinanceSnapshot
    violations: list[str]  # each names the invariant and the account or entry


@dataclass
class MigrationRequest:
    release_id: str
    tenant: Tenant
    migrations: list[MigrationScript]


@dataclass
class MigrationResult:
    tenant: str
    applied: list[str]
    skipped: list[str]  # already in the ledger
    duration_seconds: float


@dataclass
class EntriesSinceBackup:
    tenant: str
    count: int
    export_url: str  # empty when count == 0


@dataclass
class DatabaseRestore:
    tenant: str
    restored_database: str
    kept_database: str  # the replaced database, renamed, never dropped


@dataclass
class CutoverRequest:
    """One cutover step on the tenant database (close, restore point, swap, reopen)."""

    release_id: str
    tenant: Tenant
    grace_seconds: float = 30.0  # Odoo sessions get this long to end before termination


@dataclass
class DatabaseClosed:
    tenant: str
    database: str
    revoked_from: list[str]  # roles whose CONNECT was revoked ("PUBLIC" included)
    terminated: int  # sessions still connected after the grace period, terminated


@dataclass
class RestorePoint:
    tenant: str
    database: str  # the tenant database it is an exact copy of
    name: str  # `<database>_rp_<short release id>`, never accepting connections
    reused: bool  # an earlier attempt of this release had already taken it


@dataclass
class DatabaseReopened:
    tenant: str
    database: str
    granted_to: list[str]  # CONNECT given back, as it was before closing


@dataclass
class WriteWatermark:
    tenant: str
    tables: int  # user tables whose write counters were recorded (in the tenant database)


@dataclass
class WritesSinceReopen:
    tenant: str
    known: bool  # False: no watermark, or the statistics were reset since: assume written
    rows: int  # rows inserted, updated or deleted since the watermark, all user tables
    tables: list[str]  # the tables written, most rows first (at most 20)


# ---------------------------------------------------------------- finrelease-k8s


@dataclass
class DeploymentState:
    name: str
    role: str
    images: dict[str, str]  # container -> image
    replicas: int
    revision: str
    release_annotation: str
    generation: int = 0


@dataclass
class RunningState:
    tenant: str
    deployments: list[DeploymentState]

    def image_of(self, container: str) -> str:
        """The image of `container` in the first deployment that has it ('' if none)."""
        for deployment in self.deployments:
            if container in deployment.images:
                return deployment.images[container]
        return ""


@dataclass
class MaintenanceRequest:
    release_id: str
    tenant: Tenant
    enabled: bool
    state: RunningState  # the replicas to return to when maintenance ends


@dataclass
class ModuleUpdateRequest:
    release_id: str
    tenant: Tenant
    image: str
    modules: list[str]


@dataclass
class ModuleCheck:
    """The modules a release updates, to be checked installed on the tenant at preparation."""

    release_id: str
    tenant: Tenant
    modules: list[str]


@dataclass
class ModuleCheckResult:
    tenant: str
    versions: dict[str, str]  # module -> ir_module_module.latest_version before the update


@dataclass
class ModuleUpdateResult:
    tenant: str
    job_name: str
    succeeded: bool
    log_tail: str


@dataclass
class ImageChange:
    release_id: str
    tenant: Tenant
    image: str


@dataclass
class ImageChangeResult:
    tenant: str
    changed: list[str]  # deployments patched
    unchanged: list[str]  # already on the image (a retry)


@dataclass
class RolloutWait:
    release_id: str
    tenant: Tenant
    poll_seconds: float = 2.0


@dataclass
class RolloutStatus:
    tenant: str
    ready: list[str]  # deployments fully rolled out


@dataclass
class StateRestore:
    release_id: str
    tenant: Tenant
    state: RunningState


# ---------------------------------------------------------------- finrelease-smoke


@dataclass
class SmokeRequest:
    release_id: str
    tenant: Tenant
    checks: list[str]  # health | login | trial_balance | cron
    snapshot: FinanceSnapshot | None = None


@dataclass
class SmokeCheckResult:
    name: str
    passed: bool
    duration_seconds: float
    detail: str


@dataclass
class SmokeReport:
    tenant: str
    passed: bool
    checks: list[SmokeCheckResult]
