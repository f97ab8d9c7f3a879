"""The work's own failures have a small budget, counted by the workflow; verdicts none.

(The machinery's faults — a killed worker — are retried by the server without a cap: that
needs real worker processes, see tests/e2e/test_release_failures.py.)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from workers.failure_routing import FailureRoutingInterceptor
from workflows.contracts import Activity, ErrorType
from workflows.policies import POLICIES, run_activity

pytestmark = pytest.mark.workflow


@dataclass
class Call:
    activity: str
    fail_times: int
    error_type: str = ""  # "" raises a plain exception, as a crashing library would
    task_queue: str = ""


@workflow.defn(sandboxed=False)
class CallsOneStep:
    @workflow.run
    async def run(self, call: Call) -> str:
        try:
            return await run_activity(
                call.activity, call, str, {call.activity: call.task_queue}, f"test {call.activity}"
            )
        except ActivityError as error:
            failure = error.cause
            kind = failure.type if isinstance(failure, ApplicationError) else type(failure).__name__
            return f"failed: {kind}"


class FlakyStep:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def _run(self, call: Call) -> str:
        self.calls[call.activity] += 1
        if self.calls[call.activity] <= call.fail_times:
            if call.error_type:
                raise ApplicationError("the check failed", type=call.error_type)
            raise ConnectionResetError("connection reset by peer")
        return "ok"

    def activities(self) -> list:
        def named(name: str):
            async def step(call: Call) -> str:
                return await self._run(call)

            return activity.defn(name=name)(step)

        return [named(name) for name in (Activity.VERIFY_BACKUP, Activity.WAIT_FOR_ROLLOUT)]


async def _run(client: Client, task_queue: str, call: Call, step: FlakyStep) -> str:
    call.task_queue = task_queue
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[CallsOneStep],
        activities=step.activities(),
        interceptors=[FailureRoutingInterceptor()],
    ):
        return await client.execute_workflow(
            CallsOneStep.run,
            call,
            id=f"budget-{task_queue}",
            task_queue=task_queue,
        )


async def test_failures_of_the_work_are_retried_up_to_the_steps_attempts(
    temporal_client: Client, task_queue: str
):
    step = FlakyStep()
    budget = POLICIES[Activity.VERIFY_BACKUP].max_attempts
    call = Call(Activity.VERIFY_BACKUP, fail_times=budget - 1)

    assert await _run(temporal_client, task_queue, call, step) == "ok"
    assert step.calls[Activity.VERIFY_BACKUP] == budget


async def test_a_step_failing_more_often_than_its_budget_fails_with_the_works_own_error(
    temporal_client: Client, task_queue: str
):
    step = FlakyStep()
    budget = POLICIES[Activity.VERIFY_BACKUP].max_attempts
    call = Call(Activity.VERIFY_BACKUP, fail_times=budget + 5)

    assert await _run(temporal_client, task_queue, call, step) == "failed: ConnectionResetError"
    assert step.calls[Activity.VERIFY_BACKUP] == budget  # not retried for ever by the server


async def test_a_verdict_is_never_retried(temporal_client: Client, task_queue: str):
    step = FlakyStep()
    call = Call(Activity.WAIT_FOR_ROLLOUT, fail_times=1, error_type=ErrorType.ROLLOUT_STUCK)

    assert (
        await _run(temporal_client, task_queue, call, step) == f"failed: {ErrorType.ROLLOUT_STUCK}"
    )
    assert step.calls[Activity.WAIT_FOR_ROLLOUT] == 1


def test_every_step_that_can_outlast_thirty_seconds_has_a_thirty_second_heartbeat():
    for name, policy in POLICIES.items():
        if policy.start_to_close.total_seconds() > 30:
            assert policy.heartbeat is not None and policy.heartbeat.total_seconds() <= 30, name
        # the server's retries are for the machinery only: no attempt cap there
        assert policy.retry().maximum_attempts == 0, name
