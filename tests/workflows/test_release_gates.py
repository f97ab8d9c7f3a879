"""Gates before the first wave: verified backups, passed rehearsal, green observability."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from tests.workflows.release_doubles import Doubles
from tests.workflows.release_harness import approve_all, make_release, run_approved, start, worker
from workflows.contracts import Activity
from workflows.messages import Outcome
from workflows.release import FinanceRelease


async def test_observability_alert_holds_release_before_any_deployment(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(unhealthy_checks=2)
    release = make_release(task_queue, 2)
    async with worker(time_skipping_env.client, task_queue, doubles):
        result = await run_approved(time_skipping_env.client, release, task_queue)
    assert result.outcome == Outcome.COMPLETED
    names = [name for name, _ in doubles.calls]
    checks = [i for i, n in enumerate(names) if n == Activity.CHECK_OBSERVABILITY]
    assert len(checks) == 3  # held twice, then green
    assert checks[-1] < names.index(Activity.SET_IMAGE)
    assert names.index(Activity.MIGRATE_DATABASE) > checks[-1]
    held = [e for e in doubles.bundles[""]["entries"] if e["kind"] == "gate_held"]
    assert held[0]["data"]["problems"] == ["alert 'odoo-5xx' is firing"]
    assert any(n.kind == "failure" and "observability" in n.message for n in doubles.notifications)


async def test_backup_verification_failure_fails_release_without_setting_any_image(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(verify_fails={"t2"})
    release = make_release(task_queue, 3)
    async with worker(time_skipping_env.client, task_queue, doubles):
        result = await run_approved(time_skipping_env.client, release, task_queue)
    assert result.outcome == Outcome.FAILED
    assert "t2" in result.reason
    assert doubles.count(Activity.SET_IMAGE) == 0
    assert doubles.count(Activity.MIGRATE_DATABASE) == 0
    assert result.tenants["t2"] == "preparation_failed"
    assert {result.tenants["t1"], result.tenants["t3"]} == {"not_deployed"}


async def test_module_not_installed_on_a_tenant_fails_preparation_before_any_backup(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(not_installed={"t2"})
    release = make_release(task_queue, 2)
    async with worker(time_skipping_env.client, task_queue, doubles):
        result = await run_approved(time_skipping_env.client, release, task_queue)
    assert result.outcome == Outcome.FAILED
    assert result.tenants["t2"] == "preparation_failed"
    assert "account (uninstalled)" in result.reason
    assert doubles.count(Activity.BACKUP_DATABASE, "t2") == 0
    assert doubles.count(Activity.SET_IMAGE) == doubles.count(Activity.RUN_MODULE_UPDATE) == 0


async def test_smoke_user_without_rights_fails_preparation_not_deployment(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(smoke_user_lacks={"t1"})
    release = make_release(task_queue, 2)
    async with worker(time_skipping_env.client, task_queue, doubles):
        result = await run_approved(time_skipping_env.client, release, task_queue)
    assert result.outcome == Outcome.FAILED
    assert result.tenants["t1"] == "preparation_failed"
    assert "cannot read scheduled actions (ir.cron)" in result.reason
    assert doubles.count(Activity.SET_IMAGE) == doubles.count(Activity.MIGRATE_DATABASE) == 0
    assert doubles.count(Activity.RUN_SMOKE_CHECKS) == 0


async def test_rehearsal_invariant_failure_fails_release_with_nothing_deployed(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(rehearsal_fails={"t1"})
    release = make_release(task_queue, 2, risk="medium")  # medium: rehearse every tenant
    async with worker(time_skipping_env.client, task_queue, doubles):
        result = await run_approved(time_skipping_env.client, release, task_queue)
    assert result.outcome == Outcome.FAILED
    assert "trial balance differs on account 4400" in result.reason
    assert sorted(doubles.tenants_called(Activity.REHEARSE_MIGRATION)) == ["t1", "t2"]
    assert doubles.count(Activity.SET_IMAGE) == 0
    assert doubles.count(Activity.MIGRATE_DATABASE) == 0


async def test_failing_notifications_never_fail_the_release(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(notify_fails=True)
    release = make_release(task_queue, 2)
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve_all(handle, release)
        result = await handle.result()
        status = await handle.query(FinanceRelease.status)
    assert result.outcome == Outcome.COMPLETED
    assert sorted(doubles.images) == ["t1", "t2"]
    kinds = [n.kind for n in doubles.notifications]
    assert kinds[0] == "approval_requested" and kinds[-1] == "outcome"  # every one was tried
    assert status.last_error.startswith("notification outcome failed")
