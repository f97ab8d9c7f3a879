"""Failures during the rollout: compensation per on_failure, the failure ratio, decisions."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from tests.workflows.release_doubles import OLD_IMAGE, Doubles
from tests.workflows.release_harness import (
    IMAGE,
    approve_all,
    make_release,
    operate,
    run_approved,
    save_history,
    start,
    wait_for_status,
    worker,
)
from workflows.contracts import Activity
from workflows.messages import Outcome


async def test_failed_smoke_test_restores_that_tenant_and_leaves_others(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(smoke_fails={"t2"})
    release = make_release(task_queue, 3, on_failure="rollback_failed")
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve_all(handle, release)
        result = await handle.result()
        await save_history(handle, "smoke_failure_rollback_failed")
    assert result.outcome == Outcome.PARTIALLY_ROLLED_BACK
    assert doubles.images == {"t1": IMAGE, "t2": OLD_IMAGE, "t3": IMAGE}
    # smoke runs after reopening: nobody wrote since, so the restore point is swapped back
    assert doubles.database == {"t1": "migrated", "t2": "restore_point", "t3": "migrated"}
    assert doubles.tenants_called(Activity.SWAP_TO_RESTORE_POINT) == ["t2"]
    assert doubles.count(Activity.RESTORE_DATABASE) == 0 and doubles.closed == set()
    assert result.tenants == {"t1": "deployed", "t2": "rolled_back", "t3": "deployed"}


async def test_rollback_all_compensates_every_deployed_tenant(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(smoke_fails={"t2"})
    release = make_release(task_queue, 3, on_failure="rollback_all")
    async with worker(time_skipping_env.client, task_queue, doubles):
        result = await run_approved(time_skipping_env.client, release, task_queue)
    assert result.outcome == Outcome.ROLLED_BACK
    assert doubles.images == {"t1": OLD_IMAGE, "t2": OLD_IMAGE, "t3": OLD_IMAGE}
    assert doubles.database == {"t1": "restore_point", "t2": "restore_point", "t3": "restore_point"}
    assert set(result.tenants.values()) == {"rolled_back"}


async def test_failure_ratio_halts_later_waves(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(smoke_fails={"t1"})
    release = make_release(
        task_queue,
        4,
        waves=[{"name": "early", "size": 2}, {"name": "rest", "size": "100%"}],
        max_failure_ratio=0.4,
    )
    async with worker(time_skipping_env.client, task_queue, doubles):
        result = await run_approved(time_skipping_env.client, release, task_queue)
    assert result.outcome == Outcome.PARTIALLY_ROLLED_BACK
    assert sorted(doubles.tenants_called(Activity.SET_IMAGE)) == ["t1", "t2"]
    assert result.tenants["t3"] == result.tenants["t4"] == "not_deployed"
    assert "max_failure_ratio 0.4" in result.reason


async def test_writes_since_reopening_are_named_and_wait_for_a_decision(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(smoke_fails={"t1"}, entries_since={"t1": 5}, writes_since={"t1": 7})
    release = make_release(task_queue, 1)
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve_all(handle, release)
        status = await wait_for_status(
            handle, lambda s: s.waves and s.waves[0].tenants[0].state == "awaiting_decision"
        )
        detail = status.waves[0].tenants[0].detail
        assert "7 rows were written on t1 since reopening" in detail
        assert "public.account_payment" in detail and "https://blob/exports/t1.json" in detail
        assert doubles.count(Activity.SWAP_TO_RESTORE_POINT) == 0  # no guessing
        assert any(n.kind == "decision_needed" for n in doubles.notifications)
        await operate(
            handle, release, "decide", reason="entries re-keyed", tenant="t1", choice="restore"
        )
        result = await handle.result()
        await save_history(handle, "entries_since_backup_decide")
    assert result.outcome == Outcome.ROLLED_BACK
    assert doubles.database["t1"] == "restore_point"
    decision = [e for e in doubles.bundles["t1"]["entries"] if e["kind"] == "decision"][0]
    assert decision["actor"] == "operator@example.com" and decision["data"]["choice"] == "restore"


async def test_fix_forward_keeps_the_database_and_puts_the_previous_image_back(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(smoke_fails={"t1"}, entries_since={"t1": 3}, writes_since={"t1": 3})
    release = make_release(task_queue, 1)
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve_all(handle, release)
        await wait_for_status(
            handle, lambda s: s.waves and s.waves[0].tenants[0].state == "awaiting_decision"
        )
        await operate(
            handle, release, "decide", reason="fix in 043", tenant="t1", choice="fix_forward"
        )
        result = await handle.result()
    assert result.tenants["t1"] == "fix_forward"
    assert result.outcome == Outcome.ROLLED_BACK
    assert doubles.count(Activity.RESTORE_DATABASE) == 0
    assert doubles.count(Activity.SWAP_TO_RESTORE_POINT) == 0
    assert doubles.database["t1"] == "migrated"  # the posted entries stay
    assert doubles.images["t1"] == OLD_IMAGE
    kinds = [e["kind"] for e in doubles.bundles["t1"]["entries"]]
    assert "database_restored" not in kinds and "database_swapped_back" not in kinds
    assert kinds.index("writes_since_reopen") < kinds.index("decision")
    assert kinds.index("decision") < kinds.index("image_restored") < kinds.index("compensated")
    decision = doubles.bundles["t1"]["entries"][kinds.index("decision")]
    assert decision["actor"] == "operator@example.com"
    assert decision["data"] == {"tenant": "t1", "choice": "fix_forward", "reason": "fix in 043"}


async def test_decision_for_a_tenant_that_is_not_waiting_is_refused(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(smoke_delay=0.5)
    release = make_release(task_queue, 1)
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve_all(handle, release)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await operate(handle, release, "decide", tenant="t1", choice="restore")
        result = await handle.result()
    assert "not waiting for a decision" in str(refused.value.cause)
    assert result.outcome == Outcome.COMPLETED
    assert doubles.count(Activity.RESTORE_DATABASE) == 0
