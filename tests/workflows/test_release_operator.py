"""Operator controls and the status query: promote, pause/resume, abort, what status shows."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from tests.workflows.release_doubles import OLD_IMAGE, Doubles
from tests.workflows.release_harness import (
    IMAGE,
    Release,
    abort_and_wait,
    approve,
    approve_all,
    make_release,
    operate,
    save_history,
    server_now,
    start,
    wait_for_status,
    worker,
)
from workflows.contracts import Activity
from workflows.messages import Outcome
from workflows.release import FinanceRelease

TWO_WAVES = [{"name": "canary", "size": 1}, {"name": "rest", "size": "100%"}]
OPERATOR = "operator@example.com"


async def test_manual_promotion_waits_for_promote(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(task_queue, 2, risk="high", waves=TWO_WAVES)  # high: manual by policy
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve_all(handle, release)
        status = await wait_for_status(
            handle, lambda s: any(w.state == "awaiting_promotion" for w in s.waves)
        )
        assert doubles.tenants_called(Activity.SET_IMAGE) == ["t1"]
        assert status.next_timer_reason == ""
        await operate(handle, release, "promote", OPERATOR, "canary looks good", wave="rest")
        result = await handle.result()
        await save_history(handle, "manual_promotion")
    assert result.outcome == Outcome.COMPLETED
    assert doubles.tenants_called(Activity.SET_IMAGE) == ["t1", "t2"]


async def test_pause_stops_before_the_next_step_and_resume_continues(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(task_queue, 2)
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await operate(handle, release, "pause", OPERATOR, "auditor on site")
        await approve_all(handle, release)
        status = await wait_for_status(handle, lambda s: s.phase == "BackingUp")
        assert status.paused
        assert doubles.count(Activity.BACKUP_DATABASE) == 0
        await operate(handle, release, "resume", OPERATOR, "auditor left")
        result = await handle.result()
    assert result.outcome == Outcome.COMPLETED
    kinds = [e["kind"] for e in doubles.bundles[""]["entries"]]
    assert kinds.index("paused") < kinds.index("resumed")


async def test_abort_mid_rollout_compensates_per_on_failure(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(task_queue, 2, risk="high", waves=TWO_WAVES, on_failure="rollback_all")
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve_all(handle, release)
        await wait_for_status(
            handle, lambda s: any(w.state == "awaiting_promotion" for w in s.waves)
        )
        assert doubles.images["t1"] == IMAGE
        result = await abort_and_wait(handle, "wrong tax mapping spotted")
    assert result.outcome == Outcome.ABORTED
    assert "wrong tax mapping spotted" in result.reason
    assert doubles.images["t1"] == OLD_IMAGE and doubles.database["t1"] == "restore_point"
    assert "t2" not in doubles.tenants_called(Activity.SET_IMAGE)
    assert result.tenants == {"t1": "rolled_back", "t2": "not_deployed"}


async def test_status_shows_approvals_missing_refused_timer_and_waves(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    release = make_release(task_queue, 3, risk="medium", waves=TWO_WAVES)
    async with worker(time_skipping_env.client, task_queue, Doubles()):
        handle = await start(time_skipping_env.client, release, task_queue)
        with pytest.raises(WorkflowUpdateFailedError):
            await approve(handle, release, "alice@example.com", "platform")
        await approve(handle, release, "bob@example.com", "platform")
        status = await handle.query(FinanceRelease.status)
        await abort_and_wait(handle)
    assert status.release_id == release.release_id
    assert status.phase == "AwaitingApproval" and status.outcome == ""
    assert status.spec_sha256 == release.spec_sha256 and status.risk == "medium"
    assert status.digest == release.digest and status.governance_serial == 1
    assert [(a.approver, a.role) for a in status.approvals] == [("bob@example.com", "platform")]
    assert status.missing == {"finance": 1}
    assert status.refused == []  # the requester's attempt was refused before history
    assert status.next_timer_reason == "approval deadline" and status.next_timer
    assert [(w.name, [t.tenant for t in w.tenants]) for w in status.waves] == [
        ("canary", ["t1"]),
        ("rest", ["t2", "t3"]),
    ]
    assert all(t.state == "pending" for w in status.waves for t in w.tenants)
    assert status.waiting_for_locks == {} and not status.paused


async def _refusal(
    handle: WorkflowHandle, release: Release, action: str, operator: str, **extra: str
) -> str:
    """The validator's message; the refused update never entered the history."""
    update = getattr(FinanceRelease, action)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await operate(handle, release, action, operator, "mine", **extra)
    history = await handle.fetch_history()
    accepted = [
        e
        for e in history.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    names = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in accepted
    ]
    assert update.__name__ not in names, names
    return str(refused.value.cause)


async def test_operator_actions_need_an_operator_role(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    release = make_release(task_queue, 1)
    async with worker(time_skipping_env.client, task_queue, Doubles()):
        handle = await start(time_skipping_env.client, release, task_queue)
        for action in ("pause", "abort"):
            message = await _refusal(handle, release, action, "bob@example.com")
            assert "'bob@example.com' is not a member of release_manager or operator" in message
        decided = await _refusal(
            handle, release, "decide", "bob@example.com", tenant="t1", choice="restore"
        )
        assert "decide refused" in decided
        forged = await _refusal(handle, release, "pause", "mallory@example.com")
        assert "refused (unknown_key)" in forged
        status = await handle.query(FinanceRelease.status)
        assert not status.paused and status.outcome == ""
        # the operator role, and release_manager, may
        await operate(handle, release, "pause", "erin@example.com", "x")
        await abort_and_wait(handle)


async def test_requester_cannot_promote_their_own_gated_wave(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    # alice, the requester, is also a release manager: still not her own promotion
    release = make_release(
        task_queue,
        2,
        risk="high",
        waves=TWO_WAVES,
        policy_extra={"release_manager": ["alice@example.com"]},
    )
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve_all(handle, release)
        await wait_for_status(
            handle, lambda s: any(w.state == "awaiting_promotion" for w in s.waves)
        )
        message = await _refusal(handle, release, "promote", "alice@example.com", wave="rest")
        assert "the requester may not promote" in message
        wrong_wave = await _refusal(handle, release, "promote", "erin@example.com", wave="canary")
        assert "the wave waiting for promotion is 'rest'" in wrong_wave
        assert doubles.tenants_called(Activity.SET_IMAGE) == ["t1"]
        await operate(handle, release, "promote", "erin@example.com", "ok", wave="rest")
        result = await handle.result()
    assert result.outcome == Outcome.COMPLETED
    promoted = [e for e in doubles.bundles[""]["entries"] if e["kind"] == "promote"]
    assert [e["actor"] for e in promoted] == ["erin@example.com"]


async def test_an_approve_signal_counts_for_nothing(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    release = make_release(task_queue, 1)  # low: one platform approval would do
    async with worker(time_skipping_env.client, task_queue, Doubles()):
        handle = await start(time_skipping_env.client, release, task_queue)
        await wait_for_status(handle, lambda s: s.phase == "AwaitingApproval")
        now = await server_now(time_skipping_env.client)
        signed = release.statement("approve", "bob@example.com", now, role="platform")
        await handle.signal("approve", signed)
        # an update after the signal: its workflow task has seen the signal by then
        await operate(handle, release, "pause", OPERATOR, "look")
        status = await handle.query(FinanceRelease.status)
        await abort_and_wait(handle)
    assert status.approvals == [] and status.missing == {"platform": 1}
