"""Activity test doubles registered under the real names, with a shared record of effects.

`Doubles` keeps what the "systems" look like (each tenant's image and database state, the
migration ledger) so tests assert on effects, not on log text. Behaviour is configured
through its fields before the worker starts.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.contracts import (
    Activity,
    BackupRequest,
    BackupVerification,
    CompanyLedger,
    CutoverRequest,
    DatabaseBackup,
    DatabaseClosed,
    DatabaseReopened,
    DatabaseRestore,
    DeploymentState,
    EntriesSinceBackup,
    ErrorType,
    EvidencePublication,
    FilestoreBackup,
    FinanceSnapshot,
    ImageChange,
    ImageChangeResult,
    MaintenanceRequest,
    MigrationRequest,
    MigrationResult,
    ModuleCheck,
    ModuleCheckResult,
    ModuleUpdateRequest,
    ModuleUpdateResult,
    Notification,
    NotificationResult,
    ObservabilityCheck,
    ObservabilityResult,
    PublishedEvidence,
    RehearsalRequest,
    RehearsalResult,
    RestorePoint,
    RolloutStatus,
    RolloutWait,
    RunningState,
    SmokeCheckResult,
    SmokeReport,
    SmokeRequest,
    StateRestore,
    TenantTask,
    WorkItemCheck,
    WorkItemInfo,
    WorkItemReport,
    WorkItemReportResult,
    WritesSinceReopen,
    WriteWatermark,
    evidence_blob_name,
)

OLD_IMAGE = "acr.example.io/odoo@sha256:" + "0" * 64


def _snapshot(tenant: str) -> FinanceSnapshot:
    company = CompanyLedger(1, "Demo", "EUR", 2, 10, "0.00", [], 0, [], 0, [], 3, "ab" * 32)
    return FinanceSnapshot(
        tenant, "tb" * 32, [], "100.00", "100.00", 10, [], [], 42, "18.0", [company]
    )


@dataclass
class Doubles:
    verify_fails: set[str] = field(default_factory=set)
    rehearsal_fails: set[str] = field(default_factory=set)
    rehearsal_seconds: float = 60.0
    smoke_fails: set[str] = field(
        default_factory=set
    )  # fails after deployment, passes after rollback
    unhealthy_checks: int = 0  # the first N observability checks report a firing alert
    entries_since: dict[str, int] = field(default_factory=dict)
    transient_once: set[str] = field(
        default_factory=set
    )  # activity names failing once, after the effect
    notify_fails: bool = False
    # tenant -> how many backup_database calls fail as a refused connection (its server down)
    backup_unreachable: dict[str, int] = field(default_factory=dict)
    work_item_state: str = "Approved"
    smoke_delay: float = 0.0  # real seconds, so overlapping rollouts would show
    migration_fails: set[str] = field(default_factory=set)  # after maintenance, before reopen
    ledger_drifts: set[str] = field(default_factory=set)  # the migration moves the ledger
    writes_since: dict[str, int] = field(default_factory=dict)  # rows written after reopening
    not_installed: set[str] = field(default_factory=set)  # tenants missing the release's modules
    smoke_user_lacks: set[str] = field(default_factory=set)  # tenants whose smoke user lacks rights
    # --- what happened
    calls: list[tuple[str, str]] = field(default_factory=list)  # (activity, tenant or "")
    images: dict[str, str] = field(default_factory=dict)
    releases: dict[str, str] = field(default_factory=dict)  # tenant -> release annotation
    database: dict[str, str] = field(
        default_factory=dict
    )  # tenant -> original | migrated | restored
    ledger: Counter = field(default_factory=Counter)  # (tenant, migration) -> times applied
    bundles: dict[str, dict] = field(default_factory=dict)  # tenant ("" = release) -> bundle
    notifications: list[Notification] = field(default_factory=list)
    active: set[str] = field(default_factory=set)  # release ids rolling out per tenant right now
    overlaps: list[str] = field(default_factory=list)
    replicas: dict[str, int] = field(default_factory=dict)  # tenant -> replicas now (any role)
    closed: set[str] = field(default_factory=set)  # tenant databases closed to Odoo
    restore_points: Counter = field(default_factory=Counter)  # tenant -> restore points taken
    _failed_once: set[str] = field(default_factory=set)

    def count(self, name: str, tenant: str | None = None) -> int:
        return sum(1 for n, t in self.calls if n == name and (tenant is None or t == tenant))

    def tenants_called(self, name: str) -> list[str]:
        return [t for n, t in self.calls if n == name]

    def _log(self, name: str, tenant: str = "") -> None:
        self.calls.append((name, tenant))

    def _transient(self, name: str, key: str) -> None:
        """Fail the first attempt after its effect happened: a retry must not repeat it."""
        if name in self.transient_once and (name, key) not in self._failed_once:
            self._failed_once.add((name, key))  # type: ignore[arg-type]
            raise RuntimeError(f"{name}: connection reset (transient, first attempt)")

    def activities(self) -> list:
        return [
            self.validate_work_item,
            self.backup_filestore,
            self.check_observability,
            self.notify,
            self.publish_evidence,
            self.report_to_work_item,
            self.backup_database,
            self.verify_backup,
            self.finance_snapshot,
            self.check_modules,
            self.check_smoke_user,
            self.rehearse_migration,
            self.migrate_database,
            self.entries_since_backup,
            self.restore_database,
            self.close_database,
            self.take_restore_point,
            self.swap_to_restore_point,
            self.reopen_database,
            self.drop_restore_point,
            self.take_write_watermark,
            self.writes_since_reopen,
            self.read_running_state,
            self.set_maintenance,
            self.run_module_update,
            self.set_image,
            self.wait_for_rollout,
            self.restore_running_state,
            self.run_smoke_checks,
        ]

    # --- azure --------------------------------------------------------------------------

    @activity.defn(name=Activity.VALIDATE_WORK_ITEM)
    async def validate_work_item(self, check: WorkItemCheck) -> WorkItemInfo:
        self._log(Activity.VALIDATE_WORK_ITEM)
        if self.work_item_state != "Approved":
            raise ApplicationError(
                f"work item {check.work_item} is {self.work_item_state}, not Approved",
                type=ErrorType.WORK_ITEM_INVALID,
                non_retryable=True,
            )
        return WorkItemInfo(
            check.work_item,
            "Fix tax tags",
            "Change Request",
            "Approved",
            check.risk,
            "VAT rounding",
            f"https://dev.azure.com/x/{check.work_item}",
            3,
        )

    @activity.defn(name=Activity.BACKUP_FILESTORE)
    async def backup_filestore(self, task: TenantTask) -> FilestoreBackup:
        self._log(Activity.BACKUP_FILESTORE, task.tenant.name)
        return FilestoreBackup(
            task.tenant.name, f"https://blob/fs/{task.tenant.name}.json", "f" * 64, 3, 300
        )

    @activity.defn(name=Activity.CHECK_OBSERVABILITY)
    async def check_observability(self, check: ObservabilityCheck) -> ObservabilityResult:
        self._log(Activity.CHECK_OBSERVABILITY)
        if self.unhealthy_checks > 0:
            self.unhealthy_checks -= 1
            return ObservabilityResult(False, ["alert 'odoo-5xx' is firing"])
        return ObservabilityResult(True, [])

    @activity.defn(name=Activity.NOTIFY)
    async def notify(self, note: Notification) -> NotificationResult:
        self._log(Activity.NOTIFY, note.kind)
        self.notifications.append(note)
        if self.notify_fails:
            raise ApplicationError("webhook returned 500", non_retryable=True)
        return NotificationResult(1, 0)

    @activity.defn(name=Activity.PUBLISH_EVIDENCE)
    async def publish_evidence(self, publication: EvidencePublication) -> PublishedEvidence:
        self._log(Activity.PUBLISH_EVIDENCE, publication.tenant)
        self.bundles[publication.tenant] = publication.bundle
        name = evidence_blob_name(publication.release_id, publication.tenant)
        url = f"https://blob/evidence/{name}"
        return PublishedEvidence(url, name, "e" * 64, publication.bundle["head"])

    @activity.defn(name=Activity.REPORT_TO_WORK_ITEM)
    async def report_to_work_item(self, report: WorkItemReport) -> WorkItemReportResult:
        self._log(Activity.REPORT_TO_WORK_ITEM, report.outcome)
        return WorkItemReportResult(1, "Done")

    # --- db -----------------------------------------------------------------------------

    @activity.defn(name=Activity.BACKUP_DATABASE)
    async def backup_database(self, task: TenantTask) -> DatabaseBackup:
        name = task.tenant.name
        self._log(Activity.BACKUP_DATABASE, name)
        if self.count(Activity.BACKUP_DATABASE, name) <= self.backup_unreachable.get(name, 0):
            raise ConnectionRefusedError(f"connection to the db server of {name} refused")
        self.database.setdefault(name, "original")
        blob = f"backups/{task.release_id}/{name}.dump"
        return DatabaseBackup(
            name,
            task.tenant.database,
            f"https://blob/{blob}",
            blob,
            1024,
            "b" * 64,
            {"account_move": 10},
            42,
            "2026-11-22T06:00:00+00:00",
        )

    @activity.defn(name=Activity.VERIFY_BACKUP)
    async def verify_backup(self, request: BackupRequest) -> BackupVerification:
        name = request.tenant.name
        self._log(Activity.VERIFY_BACKUP, name)
        return BackupVerification(
            name, name not in self.verify_fails, request.backup.sha256, 5, 100
        )

    @activity.defn(name=Activity.FINANCE_SNAPSHOT)
    async def finance_snapshot(self, task: TenantTask) -> FinanceSnapshot:
        name = task.tenant.name
        self._log(Activity.FINANCE_SNAPSHOT, name)
        snapshot = _snapshot(name)
        if name in self.ledger_drifts and self.database.get(name) == "migrated":
            snapshot.total_debit = snapshot.total_credit = "99.00"
        return snapshot

    @activity.defn(name=Activity.CHECK_MODULES)
    async def check_modules(self, check: ModuleCheck) -> ModuleCheckResult:
        name = check.tenant.name
        self._log(Activity.CHECK_MODULES, name)
        if name in self.not_installed:
            raise ApplicationError(
                f"tenant {name} cannot update modules that are not installed: "
                f"{', '.join(f'{m} (uninstalled)' for m in check.modules)}",
                type=ErrorType.INVALID_RELEASE,
                non_retryable=True,
            )
        return ModuleCheckResult(name, {m: "18.0.1.0" for m in check.modules})

    @activity.defn(name=Activity.REHEARSE_MIGRATION)
    async def rehearse_migration(self, request: RehearsalRequest) -> RehearsalResult:
        name = request.tenant.name
        self._log(Activity.REHEARSE_MIGRATION, name)
        failed = name in self.rehearsal_fails
        violations = ["trial balance differs on account 4400"] if failed else []
        return RehearsalResult(
            name, not failed, self.rehearsal_seconds, _snapshot(name), _snapshot(name), violations
        )

    @activity.defn(name=Activity.MIGRATE_DATABASE)
    async def migrate_database(self, request: MigrationRequest) -> MigrationResult:
        name = request.tenant.name
        self._log(Activity.MIGRATE_DATABASE, name)
        if name in self.migration_fails:
            raise ApplicationError(
                f"{name}: migration rolled back",
                type=ErrorType.MIGRATION_FAILED,
                non_retryable=True,
            )
        applied, skipped = [], []
        for script in request.migrations:
            if self.ledger[(name, script.name)]:
                skipped.append(script.name)  # the ledger makes a retry harmless
            else:
                self.ledger[(name, script.name)] += 1
                applied.append(script.name)
        self.database[name] = "migrated"
        self._transient(Activity.MIGRATE_DATABASE, name)
        return MigrationResult(name, applied, skipped, 1.5)

    @activity.defn(name=Activity.ENTRIES_SINCE_BACKUP)
    async def entries_since_backup(self, request: BackupRequest) -> EntriesSinceBackup:
        name = request.tenant.name
        self._log(Activity.ENTRIES_SINCE_BACKUP, name)
        count = self.entries_since.get(name, 0)
        return EntriesSinceBackup(name, count, f"https://blob/exports/{name}.json" if count else "")

    @activity.defn(name=Activity.RESTORE_DATABASE)
    async def restore_database(self, request: BackupRequest) -> DatabaseRestore:
        name = request.tenant.name
        self._log(Activity.RESTORE_DATABASE, name)
        self.database[name] = "restored"
        return DatabaseRestore(name, request.tenant.database, f"{request.tenant.database}_replaced")

    # --- cutover ------------------------------------------------------------------------

    @activity.defn(name=Activity.CLOSE_DATABASE)
    async def close_database(self, request: CutoverRequest) -> DatabaseClosed:
        name = request.tenant.name
        self._log(Activity.CLOSE_DATABASE, name)
        self.closed.add(name)
        self._transient(Activity.CLOSE_DATABASE, name)
        return DatabaseClosed(name, request.tenant.database, ["PUBLIC", "odoo"], 0)

    @activity.defn(name=Activity.TAKE_RESTORE_POINT)
    async def take_restore_point(self, request: CutoverRequest) -> RestorePoint:
        name = request.tenant.name
        self._log(Activity.TAKE_RESTORE_POINT, name)
        reused = bool(self.restore_points[name])
        if not reused:  # like CREATE DATABASE: a retry finds the copy and reuses it
            self.restore_points[name] += 1
        self._transient(Activity.TAKE_RESTORE_POINT, name)
        return RestorePoint(name, request.tenant.database, f"{request.tenant.database}_rp", reused)

    @activity.defn(name=Activity.SWAP_TO_RESTORE_POINT)
    async def swap_to_restore_point(self, request: CutoverRequest) -> DatabaseRestore:
        name = request.tenant.name
        self._log(Activity.SWAP_TO_RESTORE_POINT, name)
        self.database[name] = "restore_point"
        self._transient(Activity.SWAP_TO_RESTORE_POINT, name)
        return DatabaseRestore(name, request.tenant.database, f"{request.tenant.database}_migrated")

    @activity.defn(name=Activity.REOPEN_DATABASE)
    async def reopen_database(self, request: CutoverRequest) -> DatabaseReopened:
        name = request.tenant.name
        self._log(Activity.REOPEN_DATABASE, name)
        was_closed = name in self.closed
        self.closed.discard(name)
        return DatabaseReopened(
            name, request.tenant.database, ["PUBLIC", "odoo"] if was_closed else []
        )

    @activity.defn(name=Activity.DROP_RESTORE_POINT)
    async def drop_restore_point(self, request: CutoverRequest) -> RestorePoint:
        self._log(Activity.DROP_RESTORE_POINT, request.tenant.name)
        return RestorePoint(request.tenant.name, request.tenant.database, "", False)

    @activity.defn(name=Activity.TAKE_WRITE_WATERMARK)
    async def take_write_watermark(self, request: CutoverRequest) -> WriteWatermark:
        self._log(Activity.TAKE_WRITE_WATERMARK, request.tenant.name)
        return WriteWatermark(request.tenant.name, 120)

    @activity.defn(name=Activity.WRITES_SINCE_REOPEN)
    async def writes_since_reopen(self, request: CutoverRequest) -> WritesSinceReopen:
        name = request.tenant.name
        self._log(Activity.WRITES_SINCE_REOPEN, name)
        rows = self.writes_since.get(name, 0)
        tables = ["public.account_payment", "public.account_move"] if rows else []
        return WritesSinceReopen(name, True, rows, tables)

    # --- k8s ----------------------------------------------------------------------------

    @activity.defn(name=Activity.READ_RUNNING_STATE)
    async def read_running_state(self, task: TenantTask) -> RunningState:
        name = task.tenant.name
        self._log(Activity.READ_RUNNING_STATE, name)
        image = self.images.setdefault(name, OLD_IMAGE)
        release = self.releases.get(name, "")
        deployments = [
            DeploymentState(d, role, {task.tenant.container: image}, 1, "1", release)
            for role, d in task.tenant.deployments.items()
        ]
        return RunningState(name, deployments)

    @activity.defn(name=Activity.SET_MAINTENANCE)
    async def set_maintenance(self, request: MaintenanceRequest) -> RolloutStatus:
        name = request.tenant.name
        self._log(Activity.SET_MAINTENANCE, name)
        self.replicas[name] = 0 if request.enabled else request.state.deployments[0].replicas
        self._transient(Activity.SET_MAINTENANCE, name)
        return RolloutStatus(name, list(request.tenant.deployments.values()))

    @activity.defn(name=Activity.RUN_MODULE_UPDATE)
    async def run_module_update(self, request: ModuleUpdateRequest) -> ModuleUpdateResult:
        self._log(Activity.RUN_MODULE_UPDATE, request.tenant.name)
        return ModuleUpdateResult(request.tenant.name, f"update-{request.tenant.name}", True, "ok")

    @activity.defn(name=Activity.SET_IMAGE)
    async def set_image(self, change: ImageChange) -> ImageChangeResult:
        name = change.tenant.name
        self._log(Activity.SET_IMAGE, name)
        if name in self.active:
            self.overlaps.append(name)
        self.active.add(name)
        already = (
            self.images.get(name) == change.image and self.releases.get(name) == change.release_id
        )
        self.images[name] = change.image
        self.releases[name] = change.release_id
        self._transient(Activity.SET_IMAGE, name)
        deployments = list(change.tenant.deployments.values())
        return ImageChangeResult(
            name, [] if already else deployments, deployments if already else []
        )

    @activity.defn(name=Activity.WAIT_FOR_ROLLOUT)
    async def wait_for_rollout(self, wait: RolloutWait) -> RolloutStatus:
        self._log(Activity.WAIT_FOR_ROLLOUT, wait.tenant.name)
        return RolloutStatus(wait.tenant.name, list(wait.tenant.deployments.values()))

    @activity.defn(name=Activity.RESTORE_RUNNING_STATE)
    async def restore_running_state(self, restore: StateRestore) -> RolloutStatus:
        name = restore.tenant.name
        self._log(Activity.RESTORE_RUNNING_STATE, name)
        self.images[name] = restore.state.image_of(restore.tenant.container)
        self.releases[name] = restore.state.deployments[0].release_annotation
        self.replicas[name] = restore.state.deployments[0].replicas
        self.active.discard(name)
        return RolloutStatus(name, list(restore.tenant.deployments.values()))

    # --- smoke --------------------------------------------------------------------------

    @activity.defn(name=Activity.CHECK_SMOKE_USER)
    async def check_smoke_user(self, request: SmokeRequest) -> SmokeReport:
        name = request.tenant.name
        self._log(Activity.CHECK_SMOKE_USER, name)
        passed = name not in self.smoke_user_lacks
        detail = "" if passed else "the smoke user cannot read scheduled actions (ir.cron)"
        return SmokeReport(name, passed, [SmokeCheckResult("rights", passed, 0.1, detail)])

    @activity.defn(name=Activity.RUN_SMOKE_CHECKS)
    async def run_smoke_checks(self, request: SmokeRequest) -> SmokeReport:
        name = request.tenant.name
        self._log(Activity.RUN_SMOKE_CHECKS, name)
        if self.smoke_delay:
            await asyncio.sleep(self.smoke_delay)
        passed = not (name in self.smoke_fails and self.images.get(name) != OLD_IMAGE)
        self.active.discard(name)
        checks = [
            SmokeCheckResult(c, passed or c != "login", 0.1, "" if passed else "HTTP 500")
            for c in request.checks
        ]
        return SmokeReport(name, passed, checks)
