"""The per-tenant lock: first come first served, and never held for ever by a dead holder."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from workflows.lock import (
    HOLDER_CHECK,
    LockGrant,
    LockHolder,
    LockQueued,
    LockRelease,
    LockRequest,
    TenantLock,
    TenantLockActivities,
    lock_workflow_id,
)


@dataclass
class Claim:
    tenant: str
    release: bool  # release the lock before finishing (a well-behaved holder)


@dataclass
class Claimed:
    queued_behind: str  # the holder it waited for ("" if none)
    granted_at: str


@workflow.defn
class Claimant:
    """Takes a tenant's lock like TenantRollout does; a bad one finishes without releasing."""

    def __init__(self) -> None:
        self.granted = False
        self.queued_behind = ""

    @workflow.run
    async def run(self, claim: Claim) -> Claimed:
        info = workflow.info()
        request = LockRequest(
            claim.tenant, info.workflow_id, "R-" + info.workflow_id, info.task_queue
        )
        await workflow.execute_activity(
            "request_tenant_lock", request, start_to_close_timeout=timedelta(seconds=30)
        )
        await workflow.wait_condition(lambda: self.granted)
        granted_at = workflow.now().isoformat()
        if claim.release:
            handle = workflow.get_external_workflow_handle(lock_workflow_id(claim.tenant))
            await handle.signal("release", LockRelease(info.workflow_id))
        return Claimed(self.queued_behind, granted_at)

    @workflow.signal
    def lock_granted(self, grant: LockGrant) -> None:
        self.granted = True

    @workflow.signal
    def lock_queued(self, queued: LockQueued) -> None:
        self.queued_behind = queued.holder


@asynccontextmanager
async def _lock_worker(client: Client, task_queue: str) -> AsyncIterator[Worker]:
    """TenantLock, its activities and the claimant workflows of these tests on one queue."""
    lock = TenantLockActivities(client)
    workflows = [TenantLock, Claimant, Holding]
    async with Worker(
        client, task_queue=task_queue, workflows=workflows, activities=lock.activities()
    ) as running:
        yield running


async def test_lock_passes_on_when_its_holder_ended_without_releasing(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = time_skipping_env.client
    tenant = f"lock-{uuid.uuid4().hex[:8]}"
    async with _lock_worker(client, task_queue):
        dead = await client.start_workflow(
            Claimant.run, Claim(tenant, release=False), id=f"dead-{tenant}", task_queue=task_queue
        )
        # (awaiting its result would let the test server skip time while the lock sits idle,
        # up to the lock's default run timeout)
        await _until_closed(dead)
        lock_handle: WorkflowHandle = client.get_workflow_handle(lock_workflow_id(tenant))
        held = await lock_handle.query(TenantLock.holder, result_type=LockHolder)
        assert held is not None and held.owner == f"dead-{tenant}"

        waiter = await client.start_workflow(
            Claimant.run, Claim(tenant, release=True), id=f"next-{tenant}", task_queue=task_queue
        )
        # time skips to the lock's next holder check, which finds the holder gone
        granted = await waiter.result()
        await lock_handle.result()  # nobody holds or waits any more: the lock workflow ends
    assert granted.queued_behind == f"dead-{tenant}"


async def test_lock_keeps_a_running_holder_however_long_it_holds(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = time_skipping_env.client
    tenant = f"lock-{uuid.uuid4().hex[:8]}"
    async with _lock_worker(client, task_queue):
        holder = await client.start_workflow(
            Holding.run, tenant, id=f"holding-{tenant}", task_queue=task_queue
        )
        await _until_held_by(client.get_workflow_handle(lock_workflow_id(tenant)), holder.id)
        waiter = await client.start_workflow(
            Claimant.run, Claim(tenant, release=True), id=f"next-{tenant}", task_queue=task_queue
        )
        # the holder lets go only after several holder checks: the waiter must not get it first
        released_at = await holder.result()
        granted = await waiter.result()
    assert granted.queued_behind == f"holding-{tenant}"
    assert granted.granted_at >= released_at


async def _until_closed(handle: WorkflowHandle) -> None:
    for _ in range(100):
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} is still running")


async def _until_held_by(lock: WorkflowHandle, owner: str) -> None:
    for _ in range(100):
        try:
            held = await lock.query(TenantLock.holder, result_type=LockHolder)
        except RPCError:  # the lock workflow is not there yet
            held = None
        if held is not None and held.owner == owner:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{owner} never got the lock")


@workflow.defn
class Holding:
    """Holds a tenant's lock for three holder-check periods, then releases it."""

    def __init__(self) -> None:
        self.granted = False

    @workflow.run
    async def run(self, tenant: str) -> str:
        info = workflow.info()
        request = LockRequest(tenant, info.workflow_id, "R-hold", info.task_queue)
        await workflow.execute_activity(
            "request_tenant_lock", request, start_to_close_timeout=timedelta(seconds=30)
        )
        await workflow.wait_condition(lambda: self.granted)
        await workflow.sleep(HOLDER_CHECK * 3)
        handle = workflow.get_external_workflow_handle(lock_workflow_id(tenant))
        released_at = workflow.now().isoformat()
        await handle.signal("release", LockRelease(info.workflow_id))
        return released_at

    @workflow.signal
    def lock_granted(self, grant: LockGrant) -> None:
        self.granted = True

    @workflow.signal
    def lock_queued(self, queued: LockQueued) -> None:
        pass
