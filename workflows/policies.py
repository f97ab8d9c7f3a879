"""Timeouts and retry policies per activity, and the one way workflows call activities.

Two kinds of failure, two budgets (workers/failure_routing.py has the worker's half):

- **The machinery's faults** — the worker vanished (no heartbeat for 30 s), the step hung
  (start-to-close) — are retried by the Temporal server with backoff and no attempt cap,
  until the step's `schedule_to_close` budget is spent. A SIGKILLed worker, an evicted pod,
  a db worker down for an hour: the step waits and runs again; it never fails the release
  or compensates a healthy tenant for that.
- **The work's own failures** — an exception the activity raised — come to the workflow at
  once (the worker marks them non-retryable for the server) and are retried here, at most
  `max_attempts` times in all, with backoff on a durable timer. Types in `NON_RETRYABLE`
  (the check itself failed: `SmokeCheckFailed`, `RolloutStuck`, ...) are never retried.

Every activity that can outlast a few seconds has a 30 s heartbeat timeout, and the
workers heartbeat on its behalf while it runs (workers/keepalive.py), so "no heartbeat for
30 s" means "the worker is gone", for every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.contracts import NON_RETRYABLE, QUEUE_OF, Activity

# the tenant lock's own calls, local activities on the workflows worker (see workflows/lock.py)
REQUEST_TENANT_LOCK = "request_tenant_lock"
LOCK_HOLDER_RUNNING = "tenant_lock_holder_running"

# A worker that stops heartbeating for this long is taken for dead and its step is retried.
HEARTBEAT = timedelta(seconds=30)
_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class ActivityPolicy:
    """How long one attempt may take, and the two retry budgets of a step."""

    start_to_close: timedelta
    max_attempts: int = 3  # the work's own failures, counted by the workflow; 0: no cap
    schedule_to_close: timedelta = 6 * _HOUR  # the machinery's faults: retried until then
    max_interval: timedelta = 2 * _MINUTE

    @property
    def heartbeat(self) -> timedelta | None:
        """30 s for every step that may run longer than that; none for shorter ones."""
        return HEARTBEAT if self.start_to_close > HEARTBEAT else None

    def retry(self) -> RetryPolicy:
        """The server's retries: the machinery's faults only, no attempt cap."""
        return RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=self.max_interval,
            maximum_attempts=0,
            non_retryable_error_types=list(NON_RETRYABLE),
        )

    def local_retry(self) -> RetryPolicy:
        """Local activities run in the workflow worker: one budget for both kinds."""
        return RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=self.max_interval,
            maximum_attempts=self.max_attempts,
            non_retryable_error_types=list(NON_RETRYABLE),
        )

    def backoff(self, failures: int) -> timedelta:
        """The wait before the next attempt after `failures` failures of the work itself."""
        seconds = min(2.0 ** (failures - 1), self.max_interval.total_seconds())
        return timedelta(seconds=seconds)


_SHORT = ActivityPolicy(start_to_close=_MINUTE, max_attempts=10, schedule_to_close=_HOUR)
# Cutover steps run inside a deployment window: their budget for the machinery is shorter,
# so a tenant whose workers are gone is noticed while the window is still open.
_CUTOVER = 2 * _HOUR

POLICIES: dict[str, ActivityPolicy] = {
    Activity.VALIDATE_WORK_ITEM: ActivityPolicy(_MINUTE, max_attempts=10),
    Activity.BACKUP_FILESTORE: ActivityPolicy(timedelta(hours=2), max_attempts=5),
    Activity.CHECK_OBSERVABILITY: ActivityPolicy(2 * _MINUTE, max_attempts=5),
    # a notification must never hold a release up: few, short attempts, a short budget
    Activity.NOTIFY: ActivityPolicy(
        timedelta(seconds=30),
        max_attempts=3,
        schedule_to_close=10 * _MINUTE,
        max_interval=_MINUTE,
    ),
    Activity.PUBLISH_EVIDENCE: ActivityPolicy(
        5 * _MINUTE, max_attempts=20, schedule_to_close=24 * _HOUR
    ),
    Activity.REPORT_TO_WORK_ITEM: ActivityPolicy(_MINUTE, max_attempts=10),
    Activity.BACKUP_DATABASE: ActivityPolicy(timedelta(hours=2), max_attempts=5),
    Activity.VERIFY_BACKUP: ActivityPolicy(timedelta(hours=2), max_attempts=3),
    Activity.FINANCE_SNAPSHOT: ActivityPolicy(15 * _MINUTE, max_attempts=5),
    Activity.REHEARSE_MIGRATION: ActivityPolicy(timedelta(hours=3), max_attempts=3),
    Activity.MIGRATE_DATABASE: ActivityPolicy(_HOUR, max_attempts=5, schedule_to_close=_CUTOVER),
    Activity.ENTRIES_SINCE_BACKUP: ActivityPolicy(30 * _MINUTE, max_attempts=5),
    Activity.RESTORE_DATABASE: ActivityPolicy(timedelta(hours=2), max_attempts=5),
    Activity.CHECK_MODULES: ActivityPolicy(_MINUTE, max_attempts=5),
    # cutover: the close waits out the grace period; a restore point copies the whole database;
    # the swap back and the reopen are compensation, with the default (long) budget
    Activity.CLOSE_DATABASE: ActivityPolicy(
        15 * _MINUTE, max_attempts=10, schedule_to_close=_CUTOVER
    ),
    Activity.TAKE_RESTORE_POINT: ActivityPolicy(_HOUR, max_attempts=5, schedule_to_close=_CUTOVER),
    Activity.SWAP_TO_RESTORE_POINT: ActivityPolicy(5 * _MINUTE, max_attempts=20),
    Activity.REOPEN_DATABASE: ActivityPolicy(_MINUTE, max_attempts=20),
    Activity.DROP_RESTORE_POINT: ActivityPolicy(10 * _MINUTE, max_attempts=10),
    Activity.TAKE_WRITE_WATERMARK: ActivityPolicy(5 * _MINUTE, max_attempts=10),
    Activity.WRITES_SINCE_REOPEN: ActivityPolicy(5 * _MINUTE, max_attempts=10),
    Activity.READ_RUNNING_STATE: _SHORT,
    # waits until the workloads are down (or rolled out again with the new image)
    Activity.SET_MAINTENANCE: ActivityPolicy(30 * _MINUTE, max_attempts=10),
    Activity.RUN_MODULE_UPDATE: ActivityPolicy(_HOUR, max_attempts=3, schedule_to_close=_CUTOVER),
    Activity.SET_IMAGE: ActivityPolicy(_MINUTE, max_attempts=10, schedule_to_close=_CUTOVER),
    Activity.WAIT_FOR_ROLLOUT: ActivityPolicy(
        30 * _MINUTE, max_attempts=3, schedule_to_close=_CUTOVER
    ),
    Activity.RESTORE_RUNNING_STATE: ActivityPolicy(10 * _MINUTE, max_attempts=10),
    Activity.RUN_SMOKE_CHECKS: ActivityPolicy(
        10 * _MINUTE, max_attempts=3, schedule_to_close=_CUTOVER
    ),
    Activity.CHECK_SMOKE_USER: ActivityPolicy(10 * _MINUTE, max_attempts=3),
    REQUEST_TENANT_LOCK: _SHORT,
    LOCK_HOLDER_RUNNING: ActivityPolicy(
        timedelta(seconds=30), max_attempts=0, max_interval=_MINUTE
    ),
}

DEFAULT_QUEUES: dict[str, str] = dict(QUEUE_OF)


async def run_activity(
    name: str,
    arg: Any,
    result_type: type | None,
    queues: dict[str, str],
    summary: str,
) -> Any:
    """Execute activity `name` with its policy, on its queue (`queues` overrides the default).

    The server retries the machinery's faults (see the module docstring); the work's own
    failures are retried here, up to the policy's `max_attempts`, unless their type says
    retrying cannot help. The last failure is raised as the `ActivityError` it came in.
    """
    policy = POLICIES[name]
    failures = 0
    while True:
        try:
            return await workflow.execute_activity(
                name,
                arg,
                result_type=result_type,
                task_queue=queues.get(name) or DEFAULT_QUEUES[name],
                start_to_close_timeout=policy.start_to_close,
                schedule_to_close_timeout=policy.schedule_to_close,
                heartbeat_timeout=policy.heartbeat,
                retry_policy=policy.retry(),
                summary=summary[:200],
            )
        except ActivityError as error:
            failures += 1
            failure = error.cause
            if not isinstance(failure, ApplicationError) or failure.type in NON_RETRYABLE:
                raise  # timed out for good (schedule-to-close), cancelled, or a final verdict
            if policy.max_attempts and failures >= policy.max_attempts:
                raise
            await workflow.sleep(
                failure.next_retry_delay or policy.backoff(failures),
                summary=f"retry {failures + 1} of {summary}"[:200],
            )


async def run_local_activity(
    name: str, arg: Any, summary: str, result_type: type | None = None
) -> Any:
    """Execute `name` as a local activity (in this workflow's worker) with its policy.

    For short calls the workflows worker makes itself (the tenant lock's signal-with-start,
    its holder check): no activity task goes through the server, no extra workflow task.
    """
    policy = POLICIES[name]
    return await workflow.execute_local_activity(
        name,
        arg,
        result_type=result_type,
        start_to_close_timeout=policy.start_to_close,
        retry_policy=policy.local_retry(),
        summary=summary[:200],
    )
