"""A tenant whose preparation cannot run parks the release; an operator retries or leaves it out.

Issue 20: before parking, a db server down for one tenant failed the whole release, and the
operator had to start again (every approval, every backup).
"""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from tests.workflows.release_doubles import Doubles
from tests.workflows.release_harness import (
    abort_and_wait,
    approve_all,
    make_release,
    operate,
    start,
    wait_for_status,
    worker,
)
from workflows.contracts import Activity
from workflows.messages import Outcome, ReleaseStatus, SignedStatement
from workflows.policies import POLICIES
from workflows.release import FinanceRelease

BUDGET = POLICIES[Activity.BACKUP_DATABASE].max_attempts
OPERATOR = "erin@example.com"


def _state(status: ReleaseStatus, tenant: str) -> str:
    return next(t.state for w in status.waves for t in w.tenants if t.tenant == tenant)


async def _parked(handle: WorkflowHandle, tenant: str) -> ReleaseStatus:
    return await wait_for_status(handle, lambda s: _state(s, tenant) == "parked")


async def test_a_tenant_whose_backup_cannot_run_parks_and_a_retry_completes_the_release(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(backup_unreachable={"t2": BUDGET})  # the step's budget, all spent
    release = make_release(task_queue, 3)
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve_all(handle, release)
        status = await _parked(handle, "t2")
        assert doubles.count(Activity.SET_IMAGE) == 0  # nobody deploys while a tenant is parked
        detail = next(t.detail for w in status.waves for t in w.tenants if t.tenant == "t2")
        assert "ConnectionRefusedError" in detail and "refused" in detail
        assert status.outcome == ""
        await operate(
            handle, release, "resolve", OPERATOR, "db server back", tenant="t2", choice="retry"
        )
        result = await handle.result()
    assert result.outcome == Outcome.COMPLETED, result.reason
    assert sorted(doubles.images) == ["t1", "t2", "t3"]
    assert doubles.count(Activity.BACKUP_DATABASE, "t2") == BUDGET + 1
    assert any(n.kind == "parked" and "t2" in n.message for n in doubles.notifications)
    entries = doubles.bundles[""]["entries"]
    parked = [e for e in entries if e["kind"] == "tenant_parked"]
    assert [e["data"]["tenant"] for e in parked] == ["t2"]
    resolved = [e for e in entries if e["kind"] == "parked_resolved"]
    assert resolved[0]["actor"] == OPERATOR and resolved[0]["data"]["choice"] == "retry"
    tenant_entries = doubles.bundles["t2"]["entries"]
    assert [e["kind"] for e in tenant_entries].count("preparation_parked") == 1


async def test_leaving_a_parked_tenant_out_deploys_the_others_and_records_the_omission(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(backup_unreachable={"t3": 1000})  # its server stays down
    release = make_release(task_queue, 3)
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve_all(handle, release)
        await _parked(handle, "t3")
        await operate(
            handle, release, "resolve", OPERATOR, "server retired", tenant="t3", choice="leave_out"
        )
        result = await handle.result()
    assert sorted(doubles.images) == ["t1", "t2"]
    # honest: the release did not reach every tenant it was approved for
    assert result.outcome == Outcome.FAILED
    assert "t3" in result.reason and "left out by erin@example.com" in result.reason
    assert result.tenants["t3"] == "left_out"
    assert doubles.count(Activity.BACKUP_DATABASE, "t3") == BUDGET
    entries = doubles.bundles[""]["entries"]
    assert [e["data"]["tenants"] for e in entries if e["kind"] == "tenants_left_out"] == [["t3"]]
    assert doubles.bundles["t3"]["entries"][-1]["data"]["state"] == "left_out"


async def test_only_a_parked_tenant_can_be_resolved_and_the_canary_cannot_be_left_out(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(backup_unreachable={"t1": 1000})  # t1 is the canary (first of wave 1)
    release = make_release(task_queue, 2)
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve_all(handle, release)
        await _parked(handle, "t1")
        refusals = {
            "not parked": (OPERATOR, "t2", "retry"),
            "canary": (OPERATOR, "t1", "leave_out"),
            "is not a member of release_manager or operator": ("bob@example.com", "t1", "retry"),
        }
        for message, (who, tenant, choice) in refusals.items():
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await operate(handle, release, "resolve", who, tenant=tenant, choice=choice)
            assert message in str(refused.value.cause), message
        with pytest.raises(WorkflowUpdateFailedError) as unsigned:
            await handle.execute_update(FinanceRelease.resolve, SignedStatement("{}", ""))
        assert "refused (malformed)" in str(unsigned.value.cause)
        # an abort ends a parked release at once; nothing was deployed
        result = await abort_and_wait(handle, "db server gone for good")
    assert result.outcome == Outcome.ABORTED
    assert doubles.count(Activity.SET_IMAGE) == 0
    assert result.tenants == {"t1": "not_deployed", "t2": "not_deployed"}
    history = await handle.fetch_history()
    updates = [
        e
        for e in history.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert len(updates) == 2  # the approval and the abort: refusals never entered history
