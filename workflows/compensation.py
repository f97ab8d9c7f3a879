"""Compensation of one tenant: undo what the rollout did, in reverse order, and say so.

Before the tenant was reopened, nobody could write: the cutover swaps the restore point
back in, then the previous image, then reopens (`Cutover.roll_back`). After reopening:
previous image back; then, if the migration or module update touched the database, count
the journal entries written since the backup. None: restore the verified backup (the
replaced database is kept, renamed). Some: restoring would lose posted accounting data,
so they are exported and an operator decides (`restore` or `fix_forward`). Finally the
smoke checks run again. Every step is an idempotent activity recorded in the evidence.
"""

from __future__ import annotations

from typing import Any, Protocol

from temporalio.exceptions import ActivityError

from workflows.contracts import (
    Activity,
    BackupRequest,
    DatabaseRestore,
    EntriesSinceBackup,
    Notification,
    NotificationResult,
    RolloutStatus,
    SmokeReport,
    SmokeRequest,
    StateRestore,
)
from workflows.cutover import Cutover, Runbook
from workflows.tenant_messages import RollbackPackage, TenantDecision, TenantOrder, TenantPhase


class Rollout(Runbook, Protocol):
    """What compensation needs from the tenant workflow (no import of it: no circle)."""

    async def wait_for_decision(self, detail: str) -> TenantDecision: ...


class Compensation:
    def __init__(self, rollout: Rollout, order: TenantOrder, package: RollbackPackage) -> None:
        self._rollout = rollout
        self._order = order
        self._package = package

    async def run(self, reason: str) -> str:
        """Compensate; return the tenant's final state."""
        order, package, tenant = self._order, self._package, self._order.tenant
        state = TenantPhase.ROLLED_BACK
        try:
            if package.in_maintenance and not package.reopened:
                await Cutover(self._rollout, order, package).roll_back()
            elif package.watermark and package.restore_point:
                state = await self._roll_back_reopened()
            else:
                await self._roll_back_after_reopening()
                if package.migrated and package.backup is not None:
                    state = await self._restore_database()
            if package.image_changed or package.migrated:
                smoke = SmokeRequest(order.release_id, tenant, order.smoke, package.snapshot)
                report: SmokeReport = await self._call(
                    Activity.RUN_SMOKE_CHECKS, smoke, SmokeReport
                )
                self._record(
                    "smoke_after_compensation",
                    {"passed": report.passed, "checks": {c.name: c.passed for c in report.checks}},
                )
        except ActivityError as err:
            self._record("compensation_failed", {"error": str(err.__cause__ or err)})
            await self._notify(
                "failure", f"compensation of {tenant.name} failed: {err.__cause__ or err}"
            )
            return TenantPhase.COMPENSATION_FAILED
        self._record("compensated", {"state": state, "reason": reason})
        return state

    async def _roll_back_reopened(self) -> str:
        """Writes since reopening decide: none, swap back without asking; some (or unknown),
        export the journal entries and ask the operator (`restore` swaps back too)."""
        order, package, tenant = self._order, self._package, self._order.tenant
        cutover = Cutover(self._rollout, order, package)
        written = await cutover.writes_since_reopening()
        if written.known and written.rows == 0:
            package.reopened = False  # nobody wrote: as if never reopened
            await cutover.roll_back()
            return TenantPhase.ROLLED_BACK
        assert package.backup is not None
        request = BackupRequest(order.release_id, tenant, package.backup)
        since: EntriesSinceBackup = await self._call(
            Activity.ENTRIES_SINCE_BACKUP, request, EntriesSinceBackup
        )
        self._record("entries_since_backup", {"count": since.count, "export_url": since.export_url})
        what = (
            f"{written.rows} rows were written on {tenant.name} since reopening "
            f"(in {', '.join(written.tables)})"
            if written.known
            else f"writes on {tenant.name} since reopening cannot be ruled out (statistics reset)"
        )
        detail = f"{what}; journal entries exported to {since.export_url or '-'}; decide: "
        detail += "restore (loses them) or fix_forward"
        await self._notify("decision_needed", detail)
        decision = await self._rollout.wait_for_decision(detail)
        self._record(
            "decision", {"choice": decision.choice, "reason": decision.reason}, decision.operator
        )
        if decision.choice == "restore":
            await cutover.roll_back()
            return TenantPhase.ROLLED_BACK
        package.migrated = False  # fix forward: the database stays as it is
        await cutover.roll_back()  # previous image and replicas back, database reopened
        return TenantPhase.FIX_FORWARD

    async def _roll_back_after_reopening(self) -> None:
        order, package = self._order, self._package
        if package.image_changed and package.state is not None:
            restore = StateRestore(order.release_id, order.tenant, package.state)
            await self._call(Activity.RESTORE_RUNNING_STATE, restore, RolloutStatus)
            self._record("image_restored", {"image": self._image_before()})

    async def _restore_database(self) -> str:
        order, tenant, backup = self._order, self._order.tenant, self._package.backup
        assert backup is not None
        request = BackupRequest(order.release_id, tenant, backup)
        since: EntriesSinceBackup = await self._call(
            Activity.ENTRIES_SINCE_BACKUP, request, EntriesSinceBackup
        )
        self._record("entries_since_backup", {"count": since.count, "export_url": since.export_url})
        if since.count:
            detail = (
                f"{since.count} journal entries were written on {tenant.name} since the backup"
                f" (exported to {since.export_url}); decide: restore or fix_forward"
            )
            await self._notify("decision_needed", detail)
            decision = await self._rollout.wait_for_decision(detail)
            self._record(
                "decision",
                {"choice": decision.choice, "reason": decision.reason},
                actor=decision.operator,
            )
            if decision.choice != "restore":
                return TenantPhase.FIX_FORWARD
        restored: DatabaseRestore = await self._call(
            Activity.RESTORE_DATABASE, request, DatabaseRestore
        )
        self._record(
            "database_restored",
            {
                "database": restored.restored_database,
                "kept": restored.kept_database,
                "backup_sha256": backup.sha256,
            },
        )
        return TenantPhase.ROLLED_BACK

    def _image_before(self) -> str:
        state = self._package.state
        return state.image_of(self._order.tenant.container) if state else ""

    async def _call(self, name: str, arg: Any, result_type: type) -> Any:
        return await self._rollout.call(name, arg, result_type)

    def _record(self, kind: str, data: dict[str, Any], actor: str = "finrelease") -> None:
        self._rollout.record(kind, {"tenant": self._order.tenant.name, **data}, actor)

    async def _notify(self, kind: str, message: str) -> None:
        note = Notification(self._order.release_id, kind, "RollingOut", message)
        try:
            await self._call(Activity.NOTIFY, note, NotificationResult)
        except ActivityError:
            pass  # a failing notification never fails the release
