"""Approvals: segregation of duties, pinned spec, rejection and deadline."""

from __future__ import annotations

import dataclasses
import json

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from governance.evidence import canonical_json
from tests.workflows.release_doubles import Doubles
from tests.workflows.release_harness import (
    abort_and_wait,
    approve_all,
    make_release,
    pinned,
    start,
    worker,
)
from workflows.approvals import MAX_RECORDED_REFUSALS, REFUSALS_IN_FULL
from workflows.contracts import Activity
from workflows.messages import APPROVAL_REFUSED, ApprovalRequest, Outcome
from workflows.release import FinanceRelease
from workflows.validation import MAX_COMMENT_BYTES


async def _refused_code(handle: WorkflowHandle, request: ApprovalRequest) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(FinanceRelease.approve, request)
    cause = refused.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == APPROVAL_REFUSED
    return str(cause.details[0])


async def test_requester_cannot_approve_own_release(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    release = make_release(task_queue, 1)
    async with worker(time_skipping_env.client, task_queue, Doubles()):
        handle = await start(time_skipping_env.client, release, task_queue)
        code = await _refused_code(
            handle, ApprovalRequest("alice@example.com", "platform", release.spec_sha256)
        )
        status = await handle.query(FinanceRelease.status)
        await abort_and_wait(handle)
    assert code == "requester"
    assert [(r.approver, r.code) for r in status.refused] == [("alice@example.com", "requester")]
    assert status.missing == {"platform": 1}


async def test_non_member_cannot_approve(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    release = make_release(task_queue, 1)
    async with worker(time_skipping_env.client, task_queue, Doubles()):
        handle = await start(time_skipping_env.client, release, task_queue)
        code = await _refused_code(
            handle, ApprovalRequest("carol@example.com", "platform", release.spec_sha256)
        )
        await abort_and_wait(handle)
    assert code == "not_member"


async def test_one_person_cannot_fill_two_roles(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    release = make_release(task_queue, 1, risk="emergency")
    # bob is platform; make him try break_glass too (not a member) and the other way round
    async with worker(time_skipping_env.client, task_queue, Doubles()):
        handle = await start(time_skipping_env.client, release, task_queue)
        await handle.execute_update(
            FinanceRelease.approve,
            ApprovalRequest("cfo@example.com", "break_glass", release.spec_sha256),
        )
        # cfo may not also approve as platform (not a member) -> not_member; the rule
        # "one person, one role" is checked for a member of two roles below
        status = await handle.query(FinanceRelease.status)
        await abort_and_wait(handle)
    assert status.missing == {"platform": 1}
    release2 = make_release(
        task_queue, 1, risk="medium", policy_extra={"finance": ["bob@example.com"]}
    )
    async with worker(time_skipping_env.client, task_queue, Doubles()):
        handle = await start(time_skipping_env.client, release2, task_queue)
        await handle.execute_update(
            FinanceRelease.approve,
            ApprovalRequest("bob@example.com", "platform", release2.spec_sha256),
        )
        code = await _refused_code(
            handle, ApprovalRequest("bob@example.com", "finance", release2.spec_sha256)
        )
        status = await handle.query(FinanceRelease.status)
        await abort_and_wait(handle)
    assert code == "other_role"
    assert status.missing == {"finance": 1}


async def test_approval_for_another_spec_is_refused(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    release = make_release(task_queue, 1)
    async with worker(time_skipping_env.client, task_queue, Doubles()):
        handle = await start(time_skipping_env.client, release, task_queue)
        code = await _refused_code(handle, ApprovalRequest("bob@example.com", "platform", "f" * 64))
        await abort_and_wait(handle)
    assert code == "wrong_spec"


async def test_rejection_ends_the_release(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(task_queue, 2)
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await handle.execute_update(
            FinanceRelease.reject,
            ApprovalRequest("dan@example.com", "platform", release.spec_sha256, "not this week"),
        )
        result = await handle.result()
    assert result.outcome == Outcome.REJECTED
    assert "dan@example.com" in result.reason
    assert doubles.count(Activity.BACKUP_DATABASE) == 0
    kinds = [e["kind"] for e in doubles.bundles[""]["entries"]]
    assert "rejection" in kinds and kinds[-1] == "outcome"


async def test_release_expires_when_approvals_miss_the_deadline(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(task_queue, 1, risk="medium")
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await handle.execute_update(
            FinanceRelease.approve,
            ApprovalRequest("bob@example.com", "platform", release.spec_sha256),
        )
        result = await handle.result()  # 72 h pass on the test server's clock
    assert result.outcome == Outcome.EXPIRED
    assert doubles.count(Activity.SET_IMAGE) == 0
    expired = [e for e in doubles.bundles[""]["entries"] if e["kind"] == "expired"]
    assert expired and expired[0]["data"]["missing"] == {"finance": 1}


async def test_forged_names_and_huge_comments_are_refused_before_history(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    release = make_release(task_queue, 1)
    sha = release.spec_sha256
    async with worker(time_skipping_env.client, task_queue, Doubles()):
        handle = await start(time_skipping_env.client, release, task_queue)
        for request, rule in (
            (ApprovalRequest("bob@example.com\n\x1b[32mapproved by cfo", "platform", sha),
             "approver: must not contain control"),
            (ApprovalRequest("b\u043eb@example.com", "platform", sha), "approver: mixes scripts"),
            (ApprovalRequest("bob@example.com", "platform", sha, "x" * 2049),
             "comment: at most 2,048 bytes, not 2,049"),
        ):  # fmt: skip
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(FinanceRelease.approve, request)
            assert rule in str(refused.value.cause)
        history = await handle.fetch_history()
        status = await handle.query(FinanceRelease.status)
        # the requester in capitals is still the requester; a member in capitals is a member
        code = await _refused_code(handle, ApprovalRequest("ALICE@example.com", "platform", sha))
        await handle.execute_update(
            FinanceRelease.approve, ApprovalRequest("Bob@Example.com", "platform", sha)
        )
        result = await handle.result()
    assert not any(
        e.HasField("workflow_execution_update_accepted_event_attributes") for e in history.events
    )
    assert status.refused == [] and status.approvals == []
    assert code == "requester"
    assert result.outcome == Outcome.COMPLETED


FLOOD = 130  # past MAX_RECORDED_REFUSALS, so both bounds are exercised


async def test_a_flood_of_refused_attempts_leaves_status_history_and_evidence_bounded(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(task_queue, 1)
    comment = "x" * MAX_COMMENT_BYTES
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        not_recorded = 0
        for i in range(FLOOD):
            who = "alice@example.com" if i % 2 else "carol@example.com"
            request = ApprovalRequest(who, "platform", release.spec_sha256, comment)
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(FinanceRelease.approve, request)
            not_recorded += "not recorded" in str(refused.value.cause)
        status = await handle.query(FinanceRelease.status)
        history = await handle.fetch_history()
        await approve_all(handle, release)  # the legitimate approver still gets through
        result = await handle.result()
    assert not_recorded == FLOOD - MAX_RECORDED_REFUSALS
    assert len(status.refused) == REFUSALS_IN_FULL
    assert status.refused_counts == {"not_member": 50, "requester": 50}
    assert len(json.dumps(dataclasses.asdict(status))) < 8_000
    history_bytes = len(history.to_json())
    # ~7 KB of (pretty-printed) history per recorded attempt, none for the later ones
    assert history_bytes < MAX_RECORDED_REFUSALS * 8_000, history_bytes
    assert result.outcome == Outcome.COMPLETED
    bundle = doubles.bundles[""]
    kept = [e for e in bundle["entries"] if e["kind"] == "approval_refused"]
    assert len(kept) == REFUSALS_IN_FULL
    outcome = [e for e in bundle["entries"] if e["kind"] == "outcome"][0]
    assert outcome["data"]["refused_attempts"] == {"not_member": 50, "requester": 50}
    assert len(canonical_json(bundle)) < 40_000


async def test_a_look_alike_requester_makes_the_release_invalid_before_any_side_effect(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(task_queue, 1)
    # a Cyrillic "а" in "аlice": the policy's bob could otherwise pass as someone else
    text = release.request.spec.text.replace("alice@example.com", "\u0430lice@example.com")
    release.request.spec = pinned("release.yaml", text)
    async with worker(time_skipping_env.client, task_queue, doubles):
        result = await (await start(time_skipping_env.client, release, task_queue)).result()
    assert result.outcome == Outcome.INVALID
    assert any(p.startswith("requested_by: mixes scripts") for p in result.problems), (
        result.problems
    )
    assert doubles.count(Activity.VALIDATE_WORK_ITEM) == 0
