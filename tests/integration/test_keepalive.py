"""An activity busy in a step that reports no progress still heartbeats (workers/keepalive.py)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.converter import DataConverter
from temporalio.exceptions import ActivityError, TimeoutError, TimeoutType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from workers.keepalive import KeepAliveInterceptor

pytestmark = pytest.mark.integration

HEARTBEAT_TIMEOUT = timedelta(seconds=2)
SILENT_SECONDS = 5.0  # well past the heartbeat timeout


@activity.defn(name="silent_step")
async def silent_step(seconds: float) -> str:
    """Report progress once, then go quiet like pg_restore building indexes."""
    activity.heartbeat("restoring: 42 bytes")
    await asyncio.sleep(seconds)
    return "done"


@workflow.defn(sandboxed=False)
class SilentStep:
    @workflow.run
    async def run(self, seconds: float) -> str:
        return await workflow.execute_activity(
            silent_step,
            seconds,
            start_to_close_timeout=timedelta(minutes=1),
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


def _worker(env: WorkflowEnvironment, queue: str, keepalive: bool) -> Worker:
    return Worker(
        env.client,
        task_queue=queue,
        workflows=[SilentStep],
        activities=[silent_step],
        interceptors=[KeepAliveInterceptor(timedelta(seconds=0.3))] if keepalive else [],
        max_heartbeat_throttle_interval=timedelta(seconds=0.3),
    )


async def _pending_heartbeat(env: WorkflowEnvironment, workflow_id: str) -> list[str]:
    """The heartbeat details the server holds once the activity is past its timeout."""
    handle = env.client.get_workflow_handle(workflow_id)
    await asyncio.sleep(HEARTBEAT_TIMEOUT.total_seconds() + 1)
    described = await handle.describe()
    pending = described.raw_description.pending_activities
    assert len(pending) == 1, pending
    payloads = pending[0].heartbeat_details.payloads
    return await DataConverter.default.decode(payloads, [str] * len(payloads))


async def test_keepalive_heartbeats_through_a_silent_step_keeping_its_progress(
    dev_server_env: WorkflowEnvironment,
):
    queue = f"keepalive-{uuid.uuid4()}"
    async with _worker(dev_server_env, queue, keepalive=True):
        handle = await dev_server_env.client.start_workflow(
            SilentStep.run, SILENT_SECONDS, id=f"wf-{uuid.uuid4()}", task_queue=queue
        )
        details = await _pending_heartbeat(dev_server_env, handle.id)
        result = await handle.result()

    assert result == "done"
    assert details == ["restoring: 42 bytes"]


async def test_without_keepalive_the_silent_step_times_out_on_its_heartbeat(
    dev_server_env: WorkflowEnvironment,
):
    queue = f"keepalive-{uuid.uuid4()}"
    async with _worker(dev_server_env, queue, keepalive=False):
        handle = await dev_server_env.client.start_workflow(
            SilentStep.run, SILENT_SECONDS, id=f"wf-{uuid.uuid4()}", task_queue=queue
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()

    assert isinstance(failure.value.cause, ActivityError)
    timeout = failure.value.cause.cause
    assert isinstance(timeout, TimeoutError) and timeout.type == TimeoutType.HEARTBEAT
