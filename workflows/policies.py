"""Timeouts and retry policies per activity, and the one way workflows call activities.

A 2-hour backup is not a 30-second call: each activity gets its own start-to-close and
heartbeat timeouts. Errors typed in `NON_RETRYABLE` are never retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.contracts import NON_RETRYABLE, QUEUE_OF, Activity

# the tenant lock's own calls, local activities on the workflows worker (see workflows/lock.py)
REQUEST_TENANT_LOCK = "request_tenant_lock"
LOCK_HOLDER_RUNNING = "tenant_lock_holder_running"


@dataclass(frozen=True)
class ActivityPolicy:
    start_to_close: timedelta
    heartbeat: timedelta | None = None
    max_attempts: int = 0  # 0: until the start-to-close/schedule budget says otherwise
    max_interval: timedelta = timedelta(minutes=2)

    def retry(self) -> RetryPolicy:
        return RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=self.max_interval,
            maximum_attempts=self.max_attempts,
            non_retryable_error_types=list(NON_RETRYABLE),
        )


_MINUTE = timedelta(minutes=1)
_SHORT = ActivityPolicy(start_to_close=_MINUTE, max_attempts=10)
# db and k8s steps: the worker keeps heartbeating while a step runs, even one that reports no
# progress (workers/keepalive.py), so a missed heartbeat means the worker is gone and the
# attempt is retried elsewhere after 30 s instead of minutes.
_ALIVE = timedelta(seconds=30)

POLICIES: dict[str, ActivityPolicy] = {
    Activity.VALIDATE_WORK_ITEM: ActivityPolicy(_MINUTE, max_attempts=10),
    Activity.BACKUP_FILESTORE: ActivityPolicy(
        timedelta(hours=2), heartbeat=2 * _MINUTE, max_attempts=5
    ),
    Activity.CHECK_OBSERVABILITY: ActivityPolicy(2 * _MINUTE, max_attempts=5),
    # a notification must never hold a release up: few, short attempts
    Activity.NOTIFY: ActivityPolicy(
        30 * timedelta(seconds=1), max_attempts=3, max_interval=_MINUTE
    ),
    Activity.PUBLISH_EVIDENCE: ActivityPolicy(5 * _MINUTE, max_attempts=20),
    Activity.REPORT_TO_WORK_ITEM: ActivityPolicy(_MINUTE, max_attempts=10),
    Activity.BACKUP_DATABASE: ActivityPolicy(timedelta(hours=2), heartbeat=_ALIVE, max_attempts=5),
    Activity.VERIFY_BACKUP: ActivityPolicy(timedelta(hours=2), heartbeat=_ALIVE, max_attempts=3),
    Activity.FINANCE_SNAPSHOT: ActivityPolicy(15 * _MINUTE, heartbeat=_ALIVE, max_attempts=5),
    Activity.CHECK_MODULES: ActivityPolicy(_MINUTE, max_attempts=5),
    Activity.REHEARSE_MIGRATION: ActivityPolicy(
        timedelta(hours=3), heartbeat=_ALIVE, max_attempts=3
    ),
    Activity.MIGRATE_DATABASE: ActivityPolicy(timedelta(hours=1), heartbeat=_ALIVE, max_attempts=5),
    Activity.ENTRIES_SINCE_BACKUP: ActivityPolicy(30 * _MINUTE, heartbeat=_ALIVE, max_attempts=5),
    Activity.RESTORE_DATABASE: ActivityPolicy(timedelta(hours=2), heartbeat=_ALIVE, max_attempts=5),
    Activity.READ_RUNNING_STATE: _SHORT,
    Activity.SET_MAINTENANCE: _SHORT,
    Activity.RUN_MODULE_UPDATE: ActivityPolicy(
        timedelta(hours=1), heartbeat=_ALIVE, max_attempts=3
    ),
    Activity.SET_IMAGE: ActivityPolicy(_MINUTE, heartbeat=_ALIVE, max_attempts=10),
    Activity.WAIT_FOR_ROLLOUT: ActivityPolicy(30 * _MINUTE, heartbeat=_ALIVE, max_attempts=3),
    Activity.RESTORE_RUNNING_STATE: ActivityPolicy(10 * _MINUTE, heartbeat=_ALIVE, max_attempts=10),
    Activity.RUN_SMOKE_CHECKS: ActivityPolicy(10 * _MINUTE, heartbeat=_MINUTE, max_attempts=3),
    Activity.CHECK_SMOKE_USER: ActivityPolicy(10 * _MINUTE, heartbeat=_MINUTE, max_attempts=3),
    REQUEST_TENANT_LOCK: _SHORT,
    LOCK_HOLDER_RUNNING: ActivityPolicy(timedelta(seconds=30), max_interval=_MINUTE),
}

DEFAULT_QUEUES: dict[str, str] = dict(QUEUE_OF)


async def run_activity(
    name: str,
    arg: Any,
    result_type: type | None,
    queues: dict[str, str],
    summary: str,
) -> Any:
    """Execute activity `name` with its policy, on its queue (`queues` overrides the default)."""
    policy = POLICIES[name]
    return await workflow.execute_activity(
        name,
        arg,
        result_type=result_type,
        task_queue=queues.get(name) or DEFAULT_QUEUES[name],
        start_to_close_timeout=policy.start_to_close,
        heartbeat_timeout=policy.heartbeat,
        retry_policy=policy.retry(),
        summary=summary[:200],
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
        retry_policy=policy.retry(),
        summary=summary[:200],
    )
