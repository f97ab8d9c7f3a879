"""Freeze calendars: month-end close, tenants in other zones, the emergency override.

The time-skipping server's clock starts at the real now, so these releases carry
`simulated_start`: the release's clock reads as if it had started at that instant and
advances with workflow time (timers skip as usual). Calendar decisions are taken with it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from tests.workflows.release_doubles import Doubles
from tests.workflows.release_harness import (
    APPROVERS,
    BERLIN,
    Release,
    approve,
    approve_all,
    make_release,
    run_approved,
    start,
    worker,
)
from workflows.contracts import Activity
from workflows.messages import Outcome, ReleaseStatus
from workflows.release import FinanceRelease

TOKYO = """
timezone: Asia/Tokyo
blackouts:
  - {start: 2026-11-23T00:00, end: 2026-11-24T09:00, reason: fiscal close}
"""


def _entries(bundle: dict, kind: str) -> list[dict]:
    return [e for e in bundle["entries"] if e["kind"] == kind]


def _at(entry: dict) -> datetime:
    return datetime.fromisoformat(entry["at"])


async def test_release_waits_out_month_end_close_then_the_next_window(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(
        task_queue,
        {"acme": ("Europe/Berlin", "berlin")},
        calendars={"berlin": BERLIN},
        simulated_start="2026-11-27T10:00:00+01:00",
    )
    async with worker(time_skipping_env.client, task_queue, doubles, demo_clock=True):
        result = await run_approved(time_skipping_env.client, release, task_queue)
    assert result.outcome == Outcome.COMPLETED, result
    decision = _entries(doubles.bundles[""], "calendar")[0]["data"]
    assert decision["deferred"]["acme"]["next_allowed"] == "2026-12-05T20:00:00+01:00"
    assert any("month-end close" in r for r in decision["deferred"]["acme"]["reasons"])
    backed_up = _at(_entries(doubles.bundles["acme"], "backup")[0])
    opened = datetime.fromisoformat("2026-12-05T20:00:00+01:00")
    assert opened <= backed_up < datetime.fromisoformat("2026-12-05T20:05:00+01:00")


async def test_tokyo_tenant_is_deferred_while_berlin_tenant_proceeds(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(
        task_queue,
        {"berlin-co": ("Europe/Berlin", "anytime"), "tokyo-co": ("Asia/Tokyo", "tokyo")},
        calendars={"anytime": "timezone: Europe/Berlin\n", "tokyo": TOKYO},
        simulated_start="2026-11-23T10:00:00+01:00",
    )
    async with worker(time_skipping_env.client, task_queue, doubles, demo_clock=True):
        result = await run_approved(time_skipping_env.client, release, task_queue)
    assert result.outcome == Outcome.COMPLETED, result
    assert doubles.tenants_called(Activity.SET_IMAGE) == ["berlin-co", "tokyo-co"]
    deferred = [e["data"]["deferred"] for e in _entries(doubles.bundles[""], "calendar")]
    assert any(
        d.get("tokyo-co", {}).get("next_allowed") == "2026-11-24T09:00:00+09:00" for d in deferred
    )
    tokyo_set = _at(_entries(doubles.bundles["tokyo-co"], "image_set")[0])
    berlin_set = _at(_entries(doubles.bundles["berlin-co"], "image_set")[0])
    assert berlin_set < datetime.fromisoformat("2026-11-24T09:00:00+09:00") <= tokyo_set


async def _wait_for(handle: WorkflowHandle, predicate, attempts: int = 300) -> ReleaseStatus:  # noqa: ANN001
    """Poll the status query (real time; the test server's clock stands still meanwhile)."""
    for _ in range(attempts):
        status = await handle.query(FinanceRelease.status)
        if predicate(status):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"status never matched; last: {status}")


def _emergency_in_month_end_close(task_queue: str) -> Release:
    """An emergency release started on 2026-11-27 in Berlin, inside the November close."""
    return make_release(
        task_queue,
        {"acme": ("Europe/Berlin", "berlin")},
        risk="emergency",
        calendars={"berlin": BERLIN},
        simulated_start="2026-11-27T10:00:00+01:00",
    )


async def test_emergency_override_deploys_in_freeze_then_waits_for_retrospective_approval(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = _emergency_in_month_end_close(task_queue)
    async with worker(time_skipping_env.client, task_queue, doubles, demo_clock=True):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve_all(handle, release)
        status = await _wait_for(handle, lambda s: s.next_timer_reason == "retrospective approval")
        assert status.missing == {"release_manager": 1}
        assert doubles.images["acme"] != ""  # deployed in the freeze, before the approval
        await approve(
            handle, release, APPROVERS["release_manager"], "release_manager", kind="retro_approve"
        )
        result = await handle.result()
    assert result.outcome == Outcome.COMPLETED
    release_chain = doubles.bundles[""]
    assert _entries(release_chain, "freeze_override")
    assert _entries(release_chain, "retrospective_approval")[0]["actor"] == "erin@example.com"
    deployed = _at(_entries(doubles.bundles["acme"], "image_set")[0])
    assert deployed < datetime.fromisoformat("2026-11-28T00:00:00+01:00")  # inside the close


async def test_emergency_override_without_retrospective_approval_is_recorded_overdue(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = _emergency_in_month_end_close(task_queue)
    async with worker(time_skipping_env.client, task_queue, doubles, demo_clock=True):
        result = await run_approved(time_skipping_env.client, release, task_queue)
    assert result.outcome == Outcome.COMPLETED
    chain = doubles.bundles[""]
    overdue = _entries(chain, "retrospective_overdue")
    assert len(overdue) == 1 and not _entries(chain, "retrospective_approval")
    requested = _at(_entries(chain, "freeze_override")[0])
    assert _at(overdue[0]) >= requested + timedelta(hours=24)
    assert overdue[0]["data"]["missing"] == {"release_manager": 1}
    told = [n for n in doubles.notifications if n.kind == "retrospective_overdue"]
    assert told and told[0].needed_from == ["erin@example.com"]


async def test_rehearsal_longer_than_any_window_blocks_that_tenant_with_the_reason(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(rehearsal_seconds=11 * 3600)  # the Berlin windows give 10 h at most
    release = make_release(
        task_queue,
        {"acme": ("Europe/Berlin", "berlin"), "beta": ("Europe/Berlin", "anytime")},
        risk="medium",  # rehearse every tenant
        calendars={"berlin": BERLIN, "anytime": "timezone: Europe/Berlin\n"},
        simulated_start="2026-11-14T21:00:00+01:00",  # a Saturday evening, in a window
    )
    async with worker(time_skipping_env.client, task_queue, doubles, demo_clock=True):
        result = await run_approved(time_skipping_env.client, release, task_queue)
    assert result.outcome == Outcome.FAILED
    assert result.tenants == {"acme": "blocked", "beta": "deployed"}
    assert doubles.tenants_called(Activity.SET_IMAGE) == ["beta"]
    assert doubles.count(Activity.MIGRATE_DATABASE, "acme") == 0
    assert "acme" in result.reason and "11:00:00" in result.reason
    decisions = [e["data"] for e in _entries(doubles.bundles[""], "calendar")]
    assert any("acme" in d["blocked"] for d in decisions)
