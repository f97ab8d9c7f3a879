"""The cutover of one tenant, inside its deployment window, holding its lock (issue 15).

Runbook:
1. Maintenance: every Odoo workload (web, worker, cron) to zero replicas, the counts to
   return to being the running state recorded before; then the database is closed to
   Odoo's role (new sessions refused, open ones given a grace period, then terminated).
2. Restore point: an exact copy of the quiesced database on the same server, and the
   finance snapshot of that state: the baseline of every check below.
3. Migrate: the SQL migrations (as finrelease), then the module update Job with the new
   image. The Job connects as Odoo's role, so the database is reopened to that role just
   before it: every workload is still at zero, the Job is the only Odoo client.
4. Ledger check before anyone can write: trial balance, unbalanced entries and numbering
   gaps must equal the baseline exactly.
5. Start: new image, replicas back as recorded, rollout, smoke checks against the baseline.
   With maintenance by scaling, users are back as soon as web runs: from step 5 on, the
   tenant counts as reopened and a rollback goes the "after reopening" way (compensation.py).

Rollback before reopening (`roll_back`): database first (the restore point swapped in by
rename), then the previous image and replicas, then the database reopened to Odoo: old code
never meets the new schema, and nothing is lost because nobody could write.
After reopening (`writes_since_reopening`, used by compensation.py): back into maintenance,
then the writes since the watermark taken at reopening, in every user table.
"""

from __future__ import annotations

from typing import Any, Protocol

from workflows.contracts import (
    Activity,
    CutoverRequest,
    DatabaseClosed,
    DatabaseReopened,
    DatabaseRestore,
    FinanceSnapshot,
    ImageChange,
    ImageChangeResult,
    MaintenanceRequest,
    MigrationRequest,
    MigrationResult,
    ModuleUpdateRequest,
    ModuleUpdateResult,
    RestorePoint,
    RolloutStatus,
    RolloutWait,
    SmokeReport,
    SmokeRequest,
    StateRestore,
    TenantTask,
    WritesSinceReopen,
    WriteWatermark,
)
from workflows.tenant_messages import RollbackPackage, TenantOrder


class StepFailed(Exception):
    """A deployment step failed or was aborted; compensation follows."""


class Runbook(Protocol):
    """What the cutover needs from the tenant workflow running it."""

    async def call(self, name: str, arg: Any, result_type: type | None) -> Any: ...
    async def step(self, name: str, arg: Any, result_type: type | None) -> Any: ...
    def record(self, kind: str, data: dict[str, Any], actor: str = "finrelease") -> None: ...


class Cutover:
    def __init__(self, runbook: Runbook, order: TenantOrder, package: RollbackPackage) -> None:
        self._runbook = runbook
        self._order = order
        self._package = package
        self._request = CutoverRequest(order.release_id, order.tenant)

    async def run(self) -> SmokeReport:
        """Steps 1-5; raises StepFailed or ActivityError, the package saying what to undo."""
        await self._enter_maintenance()
        baseline = await self._take_restore_point()
        await self._migrate()
        await self._check_ledger(baseline)
        return await self._start(baseline)

    async def _enter_maintenance(self) -> None:
        order, package = self._order, self._package
        assert package.state is not None
        package.in_maintenance = True
        request = MaintenanceRequest(order.release_id, order.tenant, True, package.state)
        await self._runbook.step(Activity.SET_MAINTENANCE, request, RolloutStatus)
        self._record(
            "maintenance_entered",
            {"replicas_before": {d.name: d.replicas for d in package.state.deployments}},
        )
        package.closed = True
        closed: DatabaseClosed = await self._runbook.step(
            Activity.CLOSE_DATABASE, self._request, DatabaseClosed
        )
        self._record(
            "database_closed",
            {"revoked_from": closed.revoked_from, "terminated": closed.terminated},
        )

    async def _take_restore_point(self) -> FinanceSnapshot:
        point: RestorePoint = await self._runbook.step(
            Activity.TAKE_RESTORE_POINT, self._request, RestorePoint
        )
        self._package.restore_point = point.name
        self._record("restore_point", {"name": point.name, "reused": point.reused})
        task = TenantTask(self._order.release_id, self._order.tenant)
        baseline: FinanceSnapshot = await self._runbook.step(
            Activity.FINANCE_SNAPSHOT, task, FinanceSnapshot
        )
        self._package.snapshot = baseline  # what the smoke checks compare with from now on
        self._record("finance_baseline", snapshot_entry(baseline))
        return baseline

    async def _migrate(self) -> None:
        order, tenant, package = self._order, self._order.tenant, self._package
        if order.migrations:
            request = MigrationRequest(order.release_id, tenant, order.migrations)
            package.migrated = True  # a failed attempt may have been cut after its COMMIT
            migrated: MigrationResult = await self._runbook.step(
                Activity.MIGRATE_DATABASE, request, MigrationResult
            )
            self._record("migration", {"applied": migrated.applied, "skipped": migrated.skipped})
        if order.modules:
            await self._reopen_database("the module update Job connects as Odoo's role")
            package.migrated = True  # a module update writes to the database too
            update = ModuleUpdateRequest(order.release_id, tenant, order.image, order.modules)
            updated: ModuleUpdateResult = await self._runbook.step(
                Activity.RUN_MODULE_UPDATE, update, ModuleUpdateResult
            )
            self._record("module_update", {"job": updated.job_name, "succeeded": updated.succeeded})
            if not updated.succeeded:
                raise StepFailed(
                    f"module update on {tenant.name} failed: {updated.log_tail[-300:]}"
                )

    async def _check_ledger(self, baseline: FinanceSnapshot) -> None:
        task = TenantTask(self._order.release_id, self._order.tenant)
        after: FinanceSnapshot = await self._runbook.step(
            Activity.FINANCE_SNAPSHOT, task, FinanceSnapshot
        )
        differences = ledger_differences(baseline, after)
        self._record("ledger_check", {"passed": not differences, "differences": differences})
        if differences:
            raise StepFailed(
                f"ledger of {self._order.tenant.name} changed by the migration: "
                + "; ".join(differences)
            )

    async def _start(self, baseline: FinanceSnapshot) -> SmokeReport:
        order, tenant, package = self._order, self._order.tenant, self._package
        assert package.state is not None
        package.image_changed = True
        changed: ImageChangeResult = await self._runbook.step(
            Activity.SET_IMAGE,
            ImageChange(order.release_id, tenant, order.image),
            ImageChangeResult,
        )
        self._record(
            "image_set",
            {
                "before": package.state.image_of(tenant.container),
                "after": order.image,
                "changed": changed.changed,
            },
        )
        await self._reopen_database("the new image's workloads connect as Odoo's role")
        marked: WriteWatermark = await self._runbook.step(
            Activity.TAKE_WRITE_WATERMARK, self._request, WriteWatermark
        )
        package.watermark = True
        self._record("write_watermark", {"tables": marked.tables})
        package.reopened = True  # web serves users again from the next step
        request = MaintenanceRequest(order.release_id, tenant, False, package.state)
        await self._runbook.step(Activity.SET_MAINTENANCE, request, RolloutStatus)
        self._record(
            "reopened", {"replicas": {d.name: d.replicas for d in package.state.deployments}}
        )
        await self._runbook.step(
            Activity.WAIT_FOR_ROLLOUT, RolloutWait(order.release_id, tenant), RolloutStatus
        )
        smoke = SmokeRequest(order.release_id, tenant, order.smoke, baseline)
        return await self._runbook.step(Activity.RUN_SMOKE_CHECKS, smoke, SmokeReport)  # type: ignore[no-any-return]

    # --- rollback after reopening -------------------------------------------------------

    async def writes_since_reopening(self) -> WritesSinceReopen:
        """Back into maintenance (workloads to zero, database closed), then count the writes."""
        order, package = self._order, self._package
        assert package.state is not None
        request = MaintenanceRequest(order.release_id, order.tenant, True, package.state)
        await self._runbook.call(Activity.SET_MAINTENANCE, request, RolloutStatus)
        self._record("maintenance_entered", {"why": "rollback after reopening"})
        closed: DatabaseClosed = await self._runbook.call(
            Activity.CLOSE_DATABASE, self._request, DatabaseClosed
        )
        self._record(
            "database_closed",
            {"revoked_from": closed.revoked_from, "terminated": closed.terminated},
        )
        written: WritesSinceReopen = await self._runbook.call(
            Activity.WRITES_SINCE_REOPEN, self._request, WritesSinceReopen
        )
        self._record(
            "writes_since_reopen",
            {"known": written.known, "rows": written.rows, "tables": written.tables},
        )
        return written

    # --- rollback before reopening ------------------------------------------------------

    async def roll_back(self) -> None:
        """Database first (swap by rename), then the previous image and replicas, then reopen."""
        order, tenant, package = self._order, self._order.tenant, self._package
        if package.migrated and package.restore_point:
            swapped: DatabaseRestore = await self._runbook.call(
                Activity.SWAP_TO_RESTORE_POINT, self._request, DatabaseRestore
            )
            self._record(
                "database_swapped_back",
                {"restore_point": package.restore_point, "kept": swapped.kept_database},
            )
        if package.state is not None:
            restore = StateRestore(order.release_id, tenant, package.state)
            await self._runbook.call(Activity.RESTORE_RUNNING_STATE, restore, RolloutStatus)
            self._record(
                "image_restored",
                {
                    "image": package.state.image_of(tenant.container),
                    "replicas": {d.name: d.replicas for d in package.state.deployments},
                },
            )
        if package.closed:
            await self._reopen_database("rolled back before reopening", call=self._runbook.call)
        package.reopened = True

    async def _reopen_database(self, why: str, call: Any = None) -> None:
        reopened: DatabaseReopened = await (call or self._runbook.step)(
            Activity.REOPEN_DATABASE, self._request, DatabaseReopened
        )
        if reopened.granted_to:  # nothing to give back: reopened earlier in this cutover
            self._record("database_reopened", {"granted_to": reopened.granted_to, "why": why})

    def _record(self, kind: str, data: dict[str, Any]) -> None:
        self._runbook.record(kind, {"tenant": self._order.tenant.name, **data})


def ledger_differences(before: FinanceSnapshot, after: FinanceSnapshot) -> list[str]:
    """How `after` differs from `before` in what a migration must never change."""
    differences = []
    if after.trial_balance_sha256 != before.trial_balance_sha256:
        differences.append("trial balance differs")
    for field in ("total_debit", "total_credit", "posted_entries"):
        if getattr(after, field) != getattr(before, field):
            was, now = getattr(before, field), getattr(after, field)
            differences.append(f"{field} {was} -> {now}")
    new_unbalanced = sorted(set(after.unbalanced_entries) - set(before.unbalanced_entries))
    if new_unbalanced:
        differences.append(f"new unbalanced entries {new_unbalanced[:5]}")
    new_gaps = sorted(set(after.numbering_gaps) - set(before.numbering_gaps))
    if new_gaps:
        differences.append(f"new numbering gaps {new_gaps[:5]}")
    return differences


def snapshot_entry(snapshot: FinanceSnapshot) -> dict:
    return {
        "tenant": snapshot.tenant,
        "trial_balance_sha256": snapshot.trial_balance_sha256,
        "total_debit": snapshot.total_debit,
        "total_credit": snapshot.total_credit,
        "posted_entries": snapshot.posted_entries,
        "odoo_version": snapshot.odoo_version,
        "companies": [
            {
                "id": c.id,
                "currency": c.currency,
                "posted_entries": c.posted_entries,
                "balance_total": c.balance_total,
                "unbalanced_entries": len(c.unbalanced_entries),
                "numbering_gaps": c.numbering_gap_count,
                "hashed_entries": c.hashed_entries,
                "hash_chain_sha256": c.hash_chain_sha256,
            }
            for c in snapshot.companies
        ],
    }
