"""Heartbeats that keep coming while an activity waits on a step that reports no progress.

An activity with a heartbeat timeout must heartbeat within it, or the server takes the
attempt for dead and schedules a retry. Many long steps report nothing for minutes while the
worker is perfectly alive: `pg_dump` waiting for a table lock, `pg_restore` building indexes
after the last byte was sent, `count(*)` over a large table, `CREATE DATABASE ... TEMPLATE`,
a migration in one transaction. Heartbeating only on progress would turn such a step into
retries (or a failure), and a generous heartbeat timeout would make a killed worker's
attempt wait that long before it is retried.

`KeepAliveInterceptor` runs beside every activity that has a heartbeat timeout and repeats
its latest heartbeat (same details, so progress stays visible) every `interval`, at most a
quarter of the timeout. The heartbeat timeout then means what operators need it to mean:
the worker process is gone. A step that hangs forever is bounded by its start-to-close
timeout instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import activity, worker

KEEPALIVE_INTERVAL = timedelta(seconds=5)
# The SDK sends buffered heartbeats to the server at most this often (its default is 80% of
# the heartbeat timeout, leaving a 30 s timeout only 6 s of slack on a busy machine).
HEARTBEAT_FLUSH = timedelta(seconds=10)


class KeepAliveInterceptor(worker.Interceptor):
    """Register on activity workers: repeat the latest heartbeat while the activity runs."""

    def __init__(self, interval: timedelta = KEEPALIVE_INTERVAL) -> None:
        self._interval = interval

    def intercept_activity(
        self, next: worker.ActivityInboundInterceptor
    ) -> worker.ActivityInboundInterceptor:
        return _KeepAliveInbound(next, self._interval)


class _KeepAliveInbound(worker.ActivityInboundInterceptor):
    def __init__(self, next: worker.ActivityInboundInterceptor, interval: timedelta) -> None:
        super().__init__(next)
        self._interval = interval
        self._outbound: _LatestHeartbeat | None = None

    def init(self, outbound: worker.ActivityOutboundInterceptor) -> None:
        self._outbound = _LatestHeartbeat(outbound)
        super().init(self._outbound)

    async def execute_activity(self, input: worker.ExecuteActivityInput) -> Any:
        timeout = activity.info().heartbeat_timeout
        if not timeout or self._outbound is None:
            return await super().execute_activity(input)
        every = min(self._interval, timeout / 4).total_seconds()
        beating = asyncio.ensure_future(_repeat(self._outbound, every))
        try:
            return await super().execute_activity(input)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating


class _LatestHeartbeat(worker.ActivityOutboundInterceptor):
    """Remembers the details of the activity's own latest heartbeat."""

    def __init__(self, next: worker.ActivityOutboundInterceptor) -> None:
        super().__init__(next)
        self.details: tuple[Any, ...] = ()

    def heartbeat(self, *details: Any) -> None:
        self.details = details
        super().heartbeat(*details)


async def _repeat(outbound: _LatestHeartbeat, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        outbound.heartbeat(*outbound.details)
