"""Two releases on one tenant, and retries that must not repeat effects."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from tests.workflows.release_doubles import Doubles
from tests.workflows.release_harness import (
    IMAGE,
    approve_all,
    make_release,
    save_history,
    start,
    wait_for_status,
    worker,
)
from workflows.contracts import Activity
from workflows.messages import Outcome, tenant_workflow_id
from workflows.release import FinanceRelease


async def test_retried_activity_after_transient_error_does_not_repeat_its_effect(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(transient_once={Activity.MIGRATE_DATABASE, Activity.SET_IMAGE})
    release = make_release(task_queue, 2)
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve_all(handle, release)
        result = await handle.result()
        await save_history(handle, "transient_retry")
    assert result.outcome == Outcome.COMPLETED
    assert doubles.count(Activity.MIGRATE_DATABASE) == 4  # each tenant: failed once, retried once
    assert set(doubles.ledger.values()) == {1}  # every migration applied exactly once
    assert doubles.images == {"t1": IMAGE, "t2": IMAGE}
    migration = [e for e in doubles.bundles["t1"]["entries"] if e["kind"] == "migration"][0]
    assert migration["data"]["applied"] == [] and migration["data"]["skipped"]


async def test_two_releases_on_one_tenant_roll_out_one_after_the_other(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(smoke_delay=1.5)  # the first release holds the lock while it smoke-tests
    first = make_release(task_queue, ["shared-t"])
    second = make_release(task_queue, ["shared-t"])
    holder = tenant_workflow_id(first.release_id, "shared-t")
    async with worker(time_skipping_env.client, task_queue, doubles):
        first_handle = await start(time_skipping_env.client, first, task_queue)
        await approve_all(first_handle, first)
        await wait_for_status(first_handle, lambda s: s.waves[0].tenants[0].state == "deploying")
        second_handle = await start(time_skipping_env.client, second, task_queue)
        await approve_all(second_handle, second)
        waiting = await wait_for_status(second_handle, lambda s: bool(s.waiting_for_locks))
        results = [await first_handle.result(), await second_handle.result()]
        after = await second_handle.query(FinanceRelease.status)
    assert waiting.waiting_for_locks == {"shared-t": holder}  # status says who holds it
    assert waiting.waves[0].tenants[0].lock_holder == holder
    assert [r.outcome for r in results] == [Outcome.COMPLETED, Outcome.COMPLETED]
    assert after.waiting_for_locks == {}
    assert doubles.overlaps == []  # never two image changes in flight on the tenant
    calls = [name for name, _ in doubles.calls]
    first_smoke = calls.index(Activity.RUN_SMOKE_CHECKS)
    second_backup = [i for i, n in enumerate(calls) if n == Activity.BACKUP_DATABASE][1]
    assert first_smoke < second_backup  # the second backed up what the first had left
    assert doubles.count(Activity.SET_IMAGE, "shared-t") == 2
    assert doubles.releases["shared-t"] == second.release_id


async def test_tenant_changed_by_another_release_since_its_backup_is_left_alone(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """`held`'s backup and rehearsal predate `other`'s deployment: deploying on them (and
    restoring that backup on failure) would undo `other`'s work, so `held` leaves the tenant
    alone and says why, instead of guessing."""
    doubles = Doubles(unhealthy_checks=1)  # holds `held` at its gate, backed up, for 5 minutes
    held = make_release(task_queue, ["shared-t"])
    other = make_release(task_queue, ["shared-t"])
    async with worker(time_skipping_env.client, task_queue, doubles):
        held_handle = await start(time_skipping_env.client, held, task_queue)
        await approve_all(held_handle, held)
        await wait_for_status(held_handle, lambda s: "odoo-5xx" in s.last_error)
        other_handle = await start(time_skipping_env.client, other, task_queue)
        await approve_all(other_handle, other)
        # in real time (no timer to skip): `other` deploys while `held` sits at its gate
        await wait_for_status(other_handle, lambda s: bool(s.outcome))
        result = await held_handle.result()
    assert result.tenants == {"shared-t": "changed_since_backup"}
    assert result.outcome == Outcome.FAILED
    assert "shared-t changed since its backup" in result.reason
    assert other.release_id in result.reason
    assert doubles.count(Activity.SET_IMAGE, "shared-t") == 1  # only `other` deployed
    assert doubles.count(Activity.MIGRATE_DATABASE, "shared-t") == 1
    assert doubles.count(Activity.RESTORE_DATABASE) == 0
    assert doubles.releases["shared-t"] == other.release_id
    stale = [
        e for e in doubles.bundles["shared-t"]["entries"] if e["kind"] == "rollback_package_stale"
    ]
    assert other.release_id in stale[0]["data"]["changes"][0]
