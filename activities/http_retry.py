"""Bounded HTTP retries that honour `Retry-After`, shared by the REST clients of activities.

Temporal retries whole activities; these retries are the short, in-activity kind that
ride out a throttle (429) or a brief outage (5xx, connection reset) without re-running
everything the activity already did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    backoff_seconds: float = 0.5  # doubled after each attempt when no Retry-After is given
    max_wait_seconds: float = 60.0  # a Retry-After above this is capped, never obeyed blindly


class RetriesExhausted(Exception):
    """The last answer (or connection error) after every attempt was spent."""

    def __init__(self, message: str, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.response = response


async def send_with_retries(
    send: Callable[[], Awaitable[httpx.Response]],
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> httpx.Response:
    """Call `send` until it answers a non-retryable status; raise `RetriesExhausted` otherwise."""
    delay = policy.backoff_seconds
    last = ""
    for attempt in range(1, policy.attempts + 1):
        response: httpx.Response | None = None
        try:
            response = await send()
        except httpx.TransportError as error:
            last = f"{what}: {type(error).__name__}: {error}"
        else:
            if response.status_code not in RETRYABLE_STATUS:
                return response
            last = f"{what}: HTTP {response.status_code}"
        if attempt == policy.attempts:
            raise RetriesExhausted(f"{last} (after {attempt} attempts)", response)
        wait = retry_after_seconds(response) if response is not None else None
        await sleep(min(wait if wait is not None else delay, policy.max_wait_seconds))
        delay *= 2
    raise AssertionError("unreachable")


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
