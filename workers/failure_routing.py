"""Send an activity's own failures to its workflow; leave only the machinery's to the server.

Temporal's retry policy counts every failed attempt alike: a worker SIGKILLed mid-backup
(heartbeat timeout) uses up the same `maximum_attempts` as a backup that really failed. Three
kills in a row then failed a release, or rolled back a healthy canary whose rollout wait was
interrupted. The two kinds need different budgets:

- the machinery's faults (the worker vanished, the step hung: heartbeat and start-to-close
  timeouts) are retried by the server without an attempt cap, bounded by the step's
  schedule-to-close time (`workflows/policies.py`);
- the work's own failures (an exception the activity raised) keep a small budget, counted
  by the workflow (`run_activity`), which sees each one.

So this interceptor, registered on every activity worker, hands each failure to the workflow
at once: the error keeps its type, message, details and cause, and is marked non-retryable
for the server. Local activities are left alone: their retries run inside the workflow task
and were never subject to the split.
"""

from __future__ import annotations

from typing import Any

from temporalio import activity, worker
from temporalio.exceptions import ApplicationError, CancelledError


class FailureRoutingInterceptor(worker.Interceptor):
    """Register on activity workers (with `workflows.policies.run_activity` on the caller's side)."""

    def intercept_activity(
        self, next: worker.ActivityInboundInterceptor
    ) -> worker.ActivityInboundInterceptor:
        return _Inbound(next)


class _Inbound(worker.ActivityInboundInterceptor):
    async def execute_activity(self, input: worker.ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except CancelledError:
            raise  # cancellation is the server's business (asyncio's is a BaseException anyway)
        except ApplicationError as error:
            if error.non_retryable or activity.info().is_local:
                raise
            raise _to_workflow(error) from error.__cause__
        except Exception as error:
            if activity.info().is_local:
                raise
            # the SDK would name the type after the class; so do we
            raise ApplicationError(
                str(error) or type(error).__name__,
                type=type(error).__name__,
                non_retryable=True,
            ) from error


def _to_workflow(error: ApplicationError) -> ApplicationError:
    return ApplicationError(
        error.message,
        *error.details,
        type=error.type,
        non_retryable=True,
        next_retry_delay=error.next_retry_delay,
    )
