"""TenantRollout: one tenant of one release, from backup to smoke test, compensated on failure.

Runbook (child `release-<release_id>-<tenant>`):
1. Prepare, holding the tenant's lock: back up database and filestore, verify the backup,
   take the finance snapshot, record the running state, rehearse the migration if asked.
   Tell the release (`tenant_prepared`), then wait for `deploy` or `stand_down`.
2. Deploy, holding the lock: read the running state -> migrate -> module update -> set
   image -> wait for the rollout -> smoke checks. `abort` is honoured between steps. If
   another release changed the tenant between our backup and now (the locks are taken per
   step, so a release can come between), the backup and rehearsal no longer describe it:
   the tenant is left alone (`changed_since_backup`) rather than deployed on a stale base.
3. On failure compensate in reverse order: previous image back, database restored from
   the verified backup when the migration touched it (after counting the journal entries
   written since the backup: if any, export them and wait for the operator's `decide`),
   smoke checks again.
4. Held tenants (`rollback_all`) wait for `finish` (keep or compensate).
5. Seal the tenant's own evidence chain; the release records its location and head.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from governance.evidence import EvidenceChain
    from workflows.compensation import Compensation
    from workflows.contracts import (
        Activity,
        BackupRequest,
        BackupVerification,
        DatabaseBackup,
        EvidencePublication,
        FilestoreBackup,
        FinanceSnapshot,
        ImageChange,
        ImageChangeResult,
        MigrationRequest,
        MigrationResult,
        ModuleCheck,
        ModuleCheckResult,
        ModuleUpdateRequest,
        ModuleUpdateResult,
        PublishedEvidence,
        RehearsalRequest,
        RehearsalResult,
        RolloutStatus,
        RolloutWait,
        RunningState,
        SmokeReport,
        SmokeRequest,
        TenantTask,
    )
    from workflows.failures import cause
    from workflows.lock import LockGrant, LockQueued, LockRelease, LockRequest, lock_workflow_id
    from workflows.messages import DECISIONS
    from workflows.policies import REQUEST_TENANT_LOCK, run_activity, run_local_activity
    from workflows.tenant_messages import (
        DeployOrder,
        Finish,
        RollbackPackage,
        StandDown,
        TenantAbort,
        TenantDecision,
        TenantOrder,
        TenantOutcome,
        TenantPhase,
        TenantPrepared,
        TenantReport,
    )


class StepFailed(Exception):
    """A deployment step failed or was aborted; compensation follows."""


CHECK_MODULES_PATCH = "check-modules-installed"
CHECK_SMOKE_USER_PATCH = "check-smoke-user-rights"


@workflow.defn
class TenantRollout:
    @workflow.init  # handlers may run before `run` starts: state exists from construction
    def __init__(self, order: TenantOrder) -> None:
        self._order = order
        self._chain = EvidenceChain(order.release_id)
        self._state = TenantPhase.PREPARING
        self._detail = ""
        self._deploy: DeployOrder | None = None
        self._stand_down: StandDown | None = None
        self._finish: Finish | None = None
        self._abort: TenantAbort | None = None
        self._decision: TenantDecision | None = None
        self._granted = False
        self._lock_holder = ""
        self._package = RollbackPackage()

    # --- the runbook ---------------------------------------------------------------------

    @workflow.run
    async def run(self, order: TenantOrder) -> TenantOutcome:
        self.record("tenant_started", {"tenant": order.tenant.name, "image": order.image})
        prepared = await self._prepare()
        await self._tell_parent("tenant_prepared", prepared)
        if not prepared.ok:
            return await self._seal(TenantPhase.PREPARATION_FAILED, prepared.reason)
        self._set(TenantPhase.PREPARED)
        await workflow.wait_condition(lambda: bool(self._deploy or self._stand_down or self._abort))
        if self._deploy is None:
            reason = self._stand_down.reason if self._stand_down else self._abort_reason()
            self.record("stand_down", {"tenant": order.tenant.name, "reason": reason})
            return await self._seal(TenantPhase.NOT_DEPLOYED, reason)
        await self._lock()
        try:
            state, reason = await self._deploy_and_verify()
            if state == TenantPhase.DEPLOYED and order.hold_after_deploy:
                state, reason = await self._hold(reason)
        finally:
            await self._unlock()
        return await self._seal(state, reason)

    async def _prepare(self) -> TenantPrepared:
        order, tenant = self._order, self._order.tenant
        task = TenantTask(order.release_id, tenant)
        await self._lock()
        try:
            # Odoo skips a module that is not installed and still succeeds: refuse it now,
            # before anything is backed up or deployed (patched: histories without it replay)
            if order.modules and workflow.patched(CHECK_MODULES_PATCH):
                checked: ModuleCheckResult = await self.call(
                    Activity.CHECK_MODULES,
                    ModuleCheck(order.release_id, tenant, order.modules),
                    ModuleCheckResult,
                )
                self.record(
                    "modules_checked", {"tenant": tenant.name, "versions": checked.versions}
                )
            # database and filestore live on different systems: back them up side by side
            backup: DatabaseBackup
            files: FilestoreBackup
            backup, files = await asyncio.gather(
                self.call(Activity.BACKUP_DATABASE, task, DatabaseBackup),
                self.call(Activity.BACKUP_FILESTORE, task, FilestoreBackup),
            )
            check: BackupVerification = await self.call(
                Activity.VERIFY_BACKUP,
                BackupRequest(order.release_id, tenant, backup),
                BackupVerification,
            )
            self.record("backup", _backup_entry(backup, files, check))
            if not check.verified:
                return self._unprepared(f"backup of {tenant.name} did not verify", backup)
            self._package.backup = backup
            if order.rehearse:
                await self._tell_parent(
                    "tenant_report", TenantReport(tenant.name, TenantPhase.BACKED_UP)
                )
            snapshot: FinanceSnapshot
            state: RunningState
            snapshot, state = await asyncio.gather(
                self.call(Activity.FINANCE_SNAPSHOT, task, FinanceSnapshot),
                self.call(Activity.READ_RUNNING_STATE, task, RunningState),
            )
            self._package.snapshot = snapshot
            self.record("finance_snapshot", _snapshot_entry(snapshot))
            # a smoke user lacking a right would fail the smoke test after deploying and
            # trigger a rollback: find out now, while nothing has changed
            logs_in = {"login", "trial_balance", "cron"} & set(order.smoke)
            if logs_in and workflow.patched(CHECK_SMOKE_USER_PATCH):
                rights: SmokeReport = await self.call(
                    Activity.CHECK_SMOKE_USER,
                    SmokeRequest(order.release_id, tenant, [], snapshot),
                    SmokeReport,
                )
                self.record("smoke_user_checked", _smoke_entry(rights))
                if not rights.passed:
                    why = "; ".join(c.detail for c in rights.checks if not c.passed)
                    return self._unprepared(
                        f"smoke user of {tenant.name} cannot run the smoke checks: {why}", backup
                    )
            self._package.state = state
            self.record("running_state", {"tenant": tenant.name, "image": _image(state, tenant)})
            seconds = 0.0
            if order.rehearse:
                request = RehearsalRequest(order.release_id, tenant, backup, order.migrations)
                rehearsal: RehearsalResult = await self.call(
                    Activity.REHEARSE_MIGRATION, request, RehearsalResult
                )
                self.record("rehearsal", _rehearsal_entry(rehearsal))
                if not rehearsal.passed:
                    why = "; ".join(rehearsal.violations) or "invariants differ"
                    return self._unprepared(f"rehearsal on {tenant.name} failed: {why}", backup)
                seconds = rehearsal.duration_seconds
        except ActivityError as err:
            self.record("preparation_failed", {"tenant": tenant.name, "error": cause(err)})
            return self._unprepared(f"preparing {tenant.name} failed: {cause(err)}", None)
        finally:
            await self._unlock()
        return TenantPrepared(
            tenant.name, True, "", backup, _image(state, tenant), seconds, order.rehearse
        )

    async def _deploy_and_verify(self) -> tuple[str, str]:
        order, tenant = self._order, self._order.tenant
        task = TenantTask(order.release_id, tenant)
        package = self._package
        self._set(TenantPhase.DEPLOYING)
        try:
            state: RunningState = await self._step(Activity.READ_RUNNING_STATE, task, RunningState)
            changes = _changes_since(package.state, state, order.release_id)
            if changes:
                # another release changed the tenant after our backup: restoring that backup
                # would undo its work, so this tenant goes no further, untouched
                self.record("rollback_package_stale", {"tenant": tenant.name, "changes": changes})
                reason = (
                    f"{tenant.name} changed since its backup ({'; '.join(changes)}): not deployed"
                )
                return TenantPhase.CHANGED_SINCE_BACKUP, reason
            if not _ours(state, order.release_id):
                package.state = state  # current replicas; our own earlier change is not "before"
            image_before = _image(package.state, tenant)
            self.record("running_state", {"tenant": tenant.name, "image": image_before})
            if order.migrations:
                request = MigrationRequest(order.release_id, tenant, order.migrations)
                migrated: MigrationResult = await self._step(
                    Activity.MIGRATE_DATABASE, request, MigrationResult
                )
                package.migrated = True
                self.record(
                    "migration",
                    {
                        "tenant": tenant.name,
                        "applied": migrated.applied,
                        "skipped": migrated.skipped,
                    },
                )
            if order.modules:
                package.migrated = True  # a module update writes to the database too
                update = ModuleUpdateRequest(order.release_id, tenant, order.image, order.modules)
                updated: ModuleUpdateResult = await self._step(
                    Activity.RUN_MODULE_UPDATE, update, ModuleUpdateResult
                )
                self.record(
                    "module_update",
                    {
                        "tenant": tenant.name,
                        "job": updated.job_name,
                        "succeeded": updated.succeeded,
                    },
                )
                if not updated.succeeded:
                    raise StepFailed(
                        f"module update on {tenant.name} failed: {updated.log_tail[-300:]}"
                    )
            package.image_changed = True
            change = ImageChange(order.release_id, tenant, order.image)
            changed: ImageChangeResult = await self._step(
                Activity.SET_IMAGE, change, ImageChangeResult
            )
            self.record(
                "image_set",
                {
                    "tenant": tenant.name,
                    "before": image_before,
                    "after": order.image,
                    "changed": changed.changed,
                },
            )
            await self._step(
                Activity.WAIT_FOR_ROLLOUT, RolloutWait(order.release_id, tenant), RolloutStatus
            )
            smoke = SmokeRequest(order.release_id, tenant, order.smoke, package.snapshot)
            report: SmokeReport = await self._step(Activity.RUN_SMOKE_CHECKS, smoke, SmokeReport)
            self.record("smoke", _smoke_entry(report))
            if not report.passed:
                failed = ", ".join(c.name for c in report.checks if not c.passed)
                raise StepFailed(f"smoke checks failed on {tenant.name}: {failed}")
        except (ActivityError, StepFailed) as err:
            reason = cause(err) if isinstance(err, ActivityError) else str(err)
            self.record("deployment_failed", {"tenant": tenant.name, "error": reason})
            return await self._compensate(reason), reason
        self._set(TenantPhase.DEPLOYED)
        self.record("deployed", {"tenant": tenant.name, "image": order.image})
        return TenantPhase.DEPLOYED, ""

    async def _hold(self, reason: str) -> tuple[str, str]:
        """rollback_all: the release decides later whether this deployment stays."""
        await self._tell_parent(
            "tenant_report", TenantReport(self._order.tenant.name, TenantPhase.DEPLOYED)
        )
        await workflow.wait_condition(lambda: bool(self._finish or self._abort))
        if self._finish is not None and not self._finish.compensate:
            return TenantPhase.DEPLOYED, reason
        why = self._finish.reason if self._finish else self._abort_reason()
        return await self._compensate(why), why

    async def _compensate(self, reason: str) -> str:
        self._set(TenantPhase.ROLLED_BACK, reason)
        compensation = Compensation(self, self._order, self._package)
        state = await compensation.run(reason)
        self._set(state, reason)
        return state

    async def _seal(self, state: str, reason: str) -> TenantOutcome:
        tenant = self._order.tenant.name
        self._set(state, reason)
        self.record("tenant_outcome", {"tenant": tenant, "state": state, "reason": reason})
        publication = EvidencePublication(
            self._order.release_id, self._chain.bundle(), state, tenant
        )
        published: PublishedEvidence = await self.call(
            Activity.PUBLISH_EVIDENCE, publication, PublishedEvidence
        )
        state_before = self._package.state
        return TenantOutcome(
            tenant=tenant,
            state=state,
            reason=reason,
            image_before=_image(state_before, self._order.tenant) if state_before else "",
            image_after=self._order.image if state == TenantPhase.DEPLOYED else "",
            evidence_blob=published.blob_name,
            evidence_head=published.head,
            evidence_url=published.url,
            backup_url=self._package.backup.url if self._package.backup else "",
        )

    # --- messages --------------------------------------------------------------------------

    @workflow.signal
    def deploy(self, order: DeployOrder) -> None:
        self._deploy = order

    @workflow.signal
    def stand_down(self, order: StandDown) -> None:
        self._stand_down = order

    @workflow.signal
    def finish(self, order: Finish) -> None:
        self._finish = order

    @workflow.signal
    def abort(self, order: TenantAbort) -> None:
        self._abort = order

    @workflow.signal(name="decide")
    def decide_signal(self, decision: TenantDecision) -> None:
        if decision.choice in DECISIONS and self._decision is None:
            self._decision = decision

    @workflow.update
    def decide(self, decision: TenantDecision) -> str:
        self._decision = decision
        return f"{decision.choice} chosen by {decision.operator}"

    @decide.validator
    def _check_decision(self, decision: TenantDecision) -> None:
        if self._state != TenantPhase.AWAITING_DECISION:
            raise ValueError(f"{self._order.tenant.name} is not waiting for a decision")
        if decision.choice not in DECISIONS:
            raise ValueError(
                f"choice must be one of {', '.join(DECISIONS)}, not {decision.choice!r}"
            )

    @workflow.signal
    def lock_granted(self, grant: LockGrant) -> None:
        self._granted = True

    @workflow.signal
    async def lock_queued(self, queued: LockQueued) -> None:
        self._lock_holder = queued.holder
        report = TenantReport(queued.tenant, TenantPhase.WAITING_FOR_LOCK, "", queued.holder)
        await self._tell_parent("tenant_report", report)

    @workflow.query
    def status(self) -> TenantReport:
        return TenantReport(self._order.tenant.name, self._state, self._detail, self._lock_holder)

    # --- helpers used by Compensation ----------------------------------------------------

    def now(self) -> datetime:
        return workflow.now() + timedelta(seconds=self._order.clock_offset_seconds)

    def record(self, kind: str, data: dict[str, Any], actor: str = "finrelease") -> None:
        self._chain.append(kind, actor, data, self.now().isoformat())

    def _set(self, state: str, detail: str = "") -> None:
        self._state, self._detail = state, detail
        workflow.set_current_details(f"{self._order.tenant.name}: {state} {detail}".strip())

    async def call(self, name: str, arg: Any, result_type: type | None) -> Any:
        return await run_activity(
            name, arg, result_type, self._order.queues, f"{name} {self._order.tenant.name}"
        )

    async def _step(self, name: str, arg: Any, result_type: type | None) -> Any:
        """A deployment step; `abort` is honoured before it, never in the middle of it."""
        if self._abort is not None:
            raise StepFailed(f"aborted before {name}: {self._abort.reason}")
        return await self.call(name, arg, result_type)

    async def wait_for_decision(self, detail: str) -> TenantDecision:
        self._decision = None
        self._set(TenantPhase.AWAITING_DECISION, detail)
        await self._tell_parent(
            "tenant_report",
            TenantReport(self._order.tenant.name, TenantPhase.AWAITING_DECISION, detail),
        )
        await workflow.wait_condition(lambda: self._decision is not None)
        assert self._decision is not None
        return self._decision

    async def _tell_parent(self, signal: str, payload: Any) -> None:
        await workflow.get_external_workflow_handle(self._order.parent_id).signal(signal, payload)

    async def _lock(self) -> None:
        info = workflow.info()
        request = LockRequest(
            self._order.tenant.name, info.workflow_id, self._order.release_id, info.task_queue
        )
        self._granted = False
        # local: it only signals-with-start the lock workflow from this very worker
        await run_local_activity(REQUEST_TENANT_LOCK, request, f"lock {request.tenant}")
        await workflow.wait_condition(lambda: self._granted)
        if self._lock_holder:  # the release shows us waiting: tell it we go on
            self._lock_holder = ""
            report = TenantReport(self._order.tenant.name, self._state, "lock acquired")
            await self._tell_parent("tenant_report", report)

    async def _unlock(self) -> None:
        if not self._granted:
            return
        self._granted = False
        handle = workflow.get_external_workflow_handle(lock_workflow_id(self._order.tenant.name))
        await handle.signal("release", LockRelease(workflow.info().workflow_id))

    def _unprepared(self, reason: str, backup: DatabaseBackup | None) -> TenantPrepared:
        return TenantPrepared(self._order.tenant.name, False, reason, backup, "", 0.0, False)

    def _abort_reason(self) -> str:
        return f"aborted: {self._abort.reason}" if self._abort else "aborted"


# --- evidence entries ----------------------------------------------------------------------


def _changes_since(before: RunningState | None, now: RunningState, release_id: str) -> list[str]:
    """Deployments whose images or release changed since `before`, other than by us."""
    if before is None:
        return []
    recorded = {d.name: d for d in before.deployments}
    changes = []
    for deployment in now.deployments:
        was = recorded.get(deployment.name)
        if was is None or deployment.release_annotation == release_id:
            continue
        if (
            deployment.images != was.images
            or deployment.release_annotation != was.release_annotation
        ):
            by = deployment.release_annotation or "an unknown change"
            changes.append(f"{deployment.name} now runs {deployment.images} (by {by})")
    return changes


def _ours(state: RunningState, release_id: str) -> bool:
    return any(d.release_annotation == release_id for d in state.deployments)


def _image(state: RunningState | None, tenant: Any) -> str:
    return state.image_of(tenant.container) if state else ""


def _backup_entry(
    backup: DatabaseBackup, files: FilestoreBackup, check: BackupVerification
) -> dict:
    return {
        "tenant": backup.tenant,
        "database": backup.database,
        "blob_name": backup.blob_name,
        "url": backup.url,
        "bytes": backup.bytes,
        "sha256": backup.sha256,
        "max_move_id": backup.max_move_id,
        "taken_at": backup.taken_at,
        "verified": check.verified,
        "rows_compared": check.rows_compared,
        "filestore_manifest": files.manifest_url,
        "filestore_sha256": files.manifest_sha256,
    }


def _snapshot_entry(snapshot: FinanceSnapshot) -> dict:
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


def _rehearsal_entry(result: RehearsalResult) -> dict:
    return {
        "tenant": result.tenant,
        "passed": result.passed,
        "duration_seconds": result.duration_seconds,
        "before": result.before.trial_balance_sha256,
        "after": result.after.trial_balance_sha256,
        "violations": result.violations,
    }


def _smoke_entry(report: SmokeReport) -> dict:
    return {
        "tenant": report.tenant,
        "passed": report.passed,
        "checks": {c.name: c.passed for c in report.checks},
    }
