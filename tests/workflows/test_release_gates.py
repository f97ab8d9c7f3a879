"""Gates before the first wave: verified backups, passed rehearsal, green observability."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from tests.workflows.release_doubles import Doubles
from tests.workflows.release_harness import make_release, run_approved, worker
from workflows.contracts import Activity
from workflows.messages import Outcome


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
