"""The clock and the routing belong to the workflows worker, not to whoever starts a release."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from governance.bundle import parse_bundle
from tests.workflows.release_doubles import Doubles
from tests.workflows.release_harness import (
    IMAGE,
    REQUESTER,
    abort_and_wait,
    approve_all,
    make_release,
    server_now,
    start,
    wait_for_status,
    worker,
)
from workflows.contracts import Activity, ErrorType
from workflows.messages import Outcome, ReleaseResult, release_workflow_id
from workflows.policies import DEFAULT_QUEUES
from workflows.tenant import TenantRollout
from workflows.tenant_messages import TenantOrder

SIMULATED = "2026-11-27T10:00:00+01:00"


def _entries(bundle: dict, kind: str) -> list[dict]:
    return [e for e in bundle["entries"] if e["kind"] == kind]


async def test_simulated_start_is_refused_when_the_worker_runs_on_real_time(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(task_queue, 1, simulated_start=SIMULATED)
    async with worker(time_skipping_env.client, task_queue, doubles):
        result = await (await start(time_skipping_env.client, release, task_queue)).result()
    assert result.outcome == Outcome.INVALID
    assert any(
        p.startswith("simulated_start: refused") and "FINRELEASE_DEMO_CLOCK" in p
        for p in result.problems
    ), result.problems
    assert doubles.count(Activity.VALIDATE_WORK_ITEM) == 0  # refused before any side effect
    assert not _entries(doubles.bundles[""], "simulated_clock")


async def test_simulated_start_on_a_demo_clock_is_shown_in_status_and_evidence(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(task_queue, 1, simulated_start=SIMULATED)
    async with worker(time_skipping_env.client, task_queue, doubles, demo_clock=True):
        handle = await start(time_skipping_env.client, release, task_queue)
        status = await wait_for_status(handle, lambda s: s.phase == "AwaitingApproval")
        assert status.simulated_start == SIMULATED
        await abort_and_wait(handle)
    (clock,) = _entries(doubles.bundles[""], "simulated_clock")
    assert clock["data"]["simulated_start"] == SIMULATED
    assert datetime.fromisoformat(clock["at"]) == datetime.fromisoformat(SIMULATED)


async def test_simulated_start_that_is_no_instant_is_invalid_not_a_stuck_workflow(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(task_queue, 1, simulated_start="2026-11-27T10:00:00")  # no offset
    async with worker(time_skipping_env.client, task_queue, doubles, demo_clock=True):
        result = await (await start(time_skipping_env.client, release, task_queue)).result()
    assert result.outcome == Outcome.INVALID
    assert any("needs a UTC offset" in p for p in result.problems), result.problems


async def test_activities_go_where_the_worker_routes_them_not_where_the_request_says(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = time_skipping_env.client
    doubles, rogue = Doubles(), Doubles()
    rogue_queue = f"rogue-{uuid.uuid4()}"
    release = make_release(task_queue, 1)
    release.request.start = release.statement("start", REQUESTER, await server_now(client))
    # a caller of the raw API still sending the old `queues` field, pointing at its worker
    request = dataclasses.asdict(release.request)
    request["queues"] = {name: rogue_queue for name in DEFAULT_QUEUES}
    async with (
        worker(client, task_queue, doubles),
        Worker(client, task_queue=rogue_queue, activities=rogue.activities()),
    ):
        handle = await client.start_workflow(
            "FinanceRelease",
            request,
            id=release_workflow_id(release.release_id),
            task_queue=task_queue,
            result_type=ReleaseResult,
        )
        await approve_all(handle, release)
        result = await handle.result()
    assert result.outcome == Outcome.COMPLETED, result
    assert rogue.calls == []
    assert doubles.count(Activity.VALIDATE_WORK_ITEM) == 1
    assert doubles.count(Activity.SET_IMAGE, "t1") == 1
    (entry,) = _entries(doubles.bundles[""], "release")
    assert entry["data"]["routing"] == {name: task_queue for name in sorted(DEFAULT_QUEUES)}


async def test_tenant_rollout_with_a_shifted_clock_is_refused_on_a_real_time_worker(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(task_queue, 1)
    tenant = parse_bundle(release.request.governance.bundle.encode()).inventory.get("t1")
    order = TenantOrder(
        release.release_id, "release-nobody", tenant, IMAGE, ["account"], [], ["health"],
        rehearse=False, hold_after_deploy=False, clock_offset_seconds=-86400.0,
    )  # fmt: skip
    async with worker(time_skipping_env.client, task_queue, doubles):
        with pytest.raises(WorkflowFailureError) as failure:
            await time_skipping_env.client.execute_workflow(
                TenantRollout.run, order, id=f"direct-{uuid.uuid4()}", task_queue=task_queue
            )
    error = failure.value.cause
    assert isinstance(error, ApplicationError) and error.type == ErrorType.INVALID_RELEASE
    assert "clock_offset_seconds" in error.message
    assert doubles.calls == []  # no backup, no lock, nothing
