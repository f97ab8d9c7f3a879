"""TenantRollout: one tenant of one release, from backup to smoke test, compensated on failure.

Runbook (child `release-<release_id>-<tenant>`):
1. Prepare, holding the tenant's lock: back up database and filestore, verify the backup,
   take the finance snapshot, record the running state, rehearse the migration if asked.
   Tell the release (`tenant_prepared`), then wait for `deploy` or `stand_down`.
2. Deploy, holding the lock: read the running state, then the cutover (workflows/cutover.py:
   maintenance -> restore point and baseline -> migrate and module update -> ledger check ->
   start the new image -> smoke checks). `abort` is honoured between steps. If
   another release changed the tenant between our backup and now (the locks are taken per
   step, so a release can come between), the backup and rehearsal no longer describe it:
   the tenant is left alone (`changed_since_backup`) rather than deployed on a stale base.
3. On failure compensate (workflows/compensation.py). Before reopening: restore point
   swapped in, previous image, reopen. After reopening: back into maintenance, count the
   writes since reopening in every table; none: the same swap, nobody asked; some: export
   the journal entries and wait for the operator's `decide`. Smoke checks again.
4. Held tenants (`rollback_all`) wait for `finish` (keep or compensate).
5. Drop the restore point once nothing can roll the tenant back any more; seal the tenant's
   own evidence chain; the release records its location and head.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from governance.evidence import EvidenceChain
    from workflows.compensation import Compensation
    from workflows.contracts import (
        Activity,
        BackupRequest,
        BackupVerification,
        CutoverRequest,
        DatabaseBackup,
        ErrorType,
        EvidencePublication,
        FilestoreBackup,
        FinanceSnapshot,
        ModuleCheck,
        ModuleCheckResult,
        PublishedEvidence,
        RehearsalRequest,
        RehearsalResult,
        RestorePoint,
        RunningState,
        SmokeReport,
        SmokeRequest,
        TenantTask,
    )
    from workflows.cutover import Cutover, StepFailed, snapshot_entry
    from workflows.failures import cause, is_verdict
    from workflows.lock import LockGrant, LockQueued, LockRelease, LockRequest, lock_workflow_id
    from workflows.messages import DECISIONS, PARK_CHOICES
    from workflows.policies import REQUEST_TENANT_LOCK, run_activity, run_local_activity
    from workflows.tenant_messages import (
        DeployOrder,
        Finish,
        ParkResolution,
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
    from workflows.worker_config import fetch_worker_config


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
        self._resolution: ParkResolution | None = None
        self._granted = False
        self._lock_holder = ""
        self._package = RollbackPackage()
        self._queues: dict[str, str] = {}  # from the worker's configuration, in `run`

    # --- the runbook ---------------------------------------------------------------------

    @workflow.run
    async def run(self, order: TenantOrder) -> TenantOutcome:
        config = await fetch_worker_config()
        if order.clock_offset_seconds and not config.demo_clock:
            # nothing touched yet: a shifted clock would skip the tenant's calendar checks
            raise ApplicationError(
                "clock_offset_seconds: refused: the workflows worker does not run on a demo "
                "clock (FINRELEASE_DEMO_CLOCK), a tenant rollout runs on real time",
                type=ErrorType.INVALID_RELEASE,
                non_retryable=True,
            )
        self._queues = dict(config.queues)
        self.record("tenant_started", {"tenant": order.tenant.name, "image": order.image})
        prepared = await self._prepare()
        await self._tell_parent("tenant_prepared", prepared)
        if prepared.left_out:
            return await self._seal(TenantPhase.LEFT_OUT, prepared.reason)
        if not prepared.ok and self._state == TenantPhase.PARKED:  # stood down while parked
            return await self._seal(TenantPhase.NOT_DEPLOYED, prepared.reason)
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
        """Prepare; a step that could not run parks the tenant until an operator answers."""
        while True:
            prepared = await self._prepare_once()
            if prepared is not None:
                return prepared
            resolution = await self._park()
            if resolution is None:  # stood down or aborted while parked
                reason = self._stand_down.reason if self._stand_down else self._abort_reason()
                return self._unprepared(reason, None)
            if resolution.choice == "leave_out":
                reason = f"{self._order.tenant.name} left out by {resolution.operator}"
                reason += f": {resolution.reason}" if resolution.reason else ""
                self.record("left_out", {"tenant": self._order.tenant.name}, resolution.operator)
                prepared = self._unprepared(reason, None)
                prepared.left_out = True
                return prepared
            self.record("retry", {"tenant": self._order.tenant.name}, resolution.operator)
            self._set(TenantPhase.PREPARING, f"retried by {resolution.operator}")
            await self._tell_parent(
                "tenant_report",
                TenantReport(self._order.tenant.name, TenantPhase.PREPARING, self._detail),
            )

    async def _park(self) -> ParkResolution | None:
        """Wait, without the lock, for the operator's choice (or a stand-down / abort)."""
        self._resolution = None
        await self._tell_parent(
            "tenant_report",
            TenantReport(self._order.tenant.name, TenantPhase.PARKED, self._detail),
        )
        await workflow.wait_condition(
            lambda: bool(self._resolution or self._stand_down or self._abort)
        )
        return None if (self._stand_down or self._abort) else self._resolution

    async def _prepare_once(self) -> TenantPrepared | None:
        """One preparation; None when a step could not run (the tenant parks)."""
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
            self.record("finance_snapshot", snapshot_entry(snapshot))
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
            if not is_verdict(err):
                # nothing judged the tenant: park it rather than fail the whole release
                self.record("preparation_parked", {"tenant": tenant.name, "error": cause(err)})
                self._set(
                    TenantPhase.PARKED, f"preparing {tenant.name} could not run: {cause(err)}"
                )
                return None
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
            state: RunningState = await self.step(Activity.READ_RUNNING_STATE, task, RunningState)
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
            report = await Cutover(self, order, package).run()
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
        await self._drop_restore_point(state)
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

    async def _drop_restore_point(self, state: str) -> None:
        """Kept for a human when compensation failed or fix_forward was chosen."""
        point = self._package.restore_point
        if not point or state not in (TenantPhase.DEPLOYED, TenantPhase.ROLLED_BACK):
            return
        request = CutoverRequest(self._order.release_id, self._order.tenant)
        try:
            await self.call(Activity.DROP_RESTORE_POINT, request, RestorePoint)
        except ActivityError as err:  # a leftover copy never fails a finished release
            self.record("restore_point_kept", {"name": point, "error": cause(err)})
            return
        self.record("restore_point_dropped", {"tenant": self._order.tenant.name, "name": point})

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
    def resolve_parked(self, resolution: ParkResolution) -> None:
        if self._state == TenantPhase.PARKED and resolution.choice in PARK_CHOICES:
            self._resolution = resolution

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
            name, arg, result_type, self._queues, f"{name} {self._order.tenant.name}"
        )

    async def step(self, name: str, arg: Any, result_type: type | None) -> Any:
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
