"""Approvals: signed statements verified before history, segregation of duties, the
release digest, rejection and deadline."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from devstack.signing import signed_statement
from governance.evidence import canonical_json
from governance.statements import parse_statement
from tests.workflows.release_doubles import Doubles
from tests.workflows.release_harness import (
    KEYS,
    Release,
    abort_and_wait,
    approve,
    approve_all,
    make_release,
    pinned,
    server_now,
    start,
    until_approvals_open,
    worker,
)
from workflows.contracts import Activity
from workflows.messages import Outcome, SignedStatement
from workflows.release import FinanceRelease
from workflows.validation import MAX_COMMENT_BYTES


async def _refusal(handle: WorkflowHandle, signed: SignedStatement, reject: bool = False) -> str:
    """Why the release refused the attempt (it must refuse it)."""
    update = FinanceRelease.reject if reject else FinanceRelease.approve
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(update, signed)
    cause = refused.value.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause)


async def _accepted_updates(handle: WorkflowHandle) -> int:
    history = await handle.fetch_history()
    return sum(
        e.HasField("workflow_execution_update_accepted_event_attributes") for e in history.events
    )


async def _statement(
    handle: WorkflowHandle, release: Release, signer: str, role: str, **options: object
) -> SignedStatement:
    now = await server_now(handle._client)
    return signed_statement(
        KEYS,
        str(options.pop("kind", "approve")),
        release_id=str(options.pop("release_id", release.release_id)),
        digest=str(options.pop("digest", release.digest)),
        signer=signer,
        now=now - options.pop("age", timedelta(0)),  # type: ignore[operator]
        role=role,
        **options,  # type: ignore[arg-type]
    )


async def test_every_forged_or_ineligible_approval_is_refused_before_history(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """The issue's list, each through the raw client: nothing refused enters history."""
    client = time_skipping_env.client
    release = make_release(
        task_queue, 1, risk="medium", policy_extra={"finance": ["dan@example.com"]}
    )
    async with worker(client, task_queue, Doubles()):
        handle = await start(client, release, task_queue)
        await until_approvals_open(handle)
        bob = await _statement(handle, release, "bob@example.com", "platform")
        cases = {
            "unsigned": dataclasses.replace(bob, signature=""),
            "flipped byte": dataclasses.replace(
                bob,
                signature=bob.signature[:40]
                + ("A" if bob.signature[40] != "A" else "B")
                + bob.signature[41:],
            ),
            "key not in the policy": await _statement(
                handle, release, "bob@example.com", "platform", key_of="mallory@example.com"
            ),
            "someone else's key": await _statement(
                handle, release, "bob@example.com", "platform", key_of="dan@example.com"
            ),
            "member of another role": await _statement(
                handle, release, "carol@example.com", "platform"
            ),
            "another digest": await _statement(
                handle, release, "bob@example.com", "platform", digest="f" * 64
            ),
            "another release": await _statement(
                handle, release, "bob@example.com", "platform", release_id="FIN-other"
            ),
            "expired": await _statement(
                handle, release, "bob@example.com", "platform", age=timedelta(minutes=20)
            ),
            "requester": await _statement(handle, release, "alice@example.com", "platform"),
            "rejection signed as approval": await _statement(
                handle, release, "bob@example.com", "platform", kind="reject"
            ),
        }
        reasons = {name: await _refusal(handle, signed) for name, signed in cases.items()}
        before = await _accepted_updates(handle)
        await handle.execute_update(FinanceRelease.approve, bob)
        replayed = await _refusal(handle, bob)
        # dan is platform and finance: one person, one role
        await approve(handle, release, "dan@example.com", "finance")
        status = await handle.query(FinanceRelease.status)
        result = await handle.result()
    assert before == 0
    expected = {
        "unsigned": "refused (malformed)",
        "flipped byte": "refused (",
        "key not in the policy": "refused (unknown_key)",
        "someone else's key": "refused (signer_not_key_owner)",
        "member of another role": "refused (not_member)",
        "another digest": "refused (wrong_digest)",
        "another release": "refused (wrong_release)",
        "expired": "refused (expired)",
        "requester": "refused (requester)",
        "rejection signed as approval": "refused (wrong_kind)",
    }
    for name, prefix in expected.items():
        assert reasons[name].startswith(prefix), (name, reasons[name])
    assert reasons["flipped byte"].split(")")[0] in ("refused (bad_signature", "refused (malformed")
    assert replayed.startswith("refused (reused_nonce)")
    assert [(a.approver, a.role) for a in status.approvals] == [
        ("bob@example.com", "platform"),
        ("dan@example.com", "finance"),
    ]
    assert result.outcome == Outcome.COMPLETED


async def test_one_person_cannot_fill_two_roles(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = time_skipping_env.client
    release = make_release(
        task_queue, 1, risk="medium", policy_extra={"finance": ["bob@example.com"]}
    )
    async with worker(client, task_queue, Doubles()):
        handle = await start(client, release, task_queue)
        await approve(handle, release, "bob@example.com", "platform")
        reason = await _refusal(
            handle, await _statement(handle, release, "bob@example.com", "finance")
        )
        status = await handle.query(FinanceRelease.status)
        await abort_and_wait(handle)
    assert reason.startswith("refused (other_role)")
    assert status.missing == {"finance": 1}


async def test_rejection_ends_the_release_and_keeps_the_signed_statement(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    client = time_skipping_env.client
    release = make_release(task_queue, 2)
    async with worker(client, task_queue, doubles):
        handle = await start(client, release, task_queue)
        await until_approvals_open(handle)
        now = await server_now(client)
        signed = release.statement(
            "reject", "dan@example.com", now, "not this week", role="platform"
        )
        await handle.execute_update(FinanceRelease.reject, signed)
        result = await handle.result()
    assert result.outcome == Outcome.REJECTED
    assert "dan@example.com" in result.reason and "not this week" in result.reason
    assert doubles.count(Activity.BACKUP_DATABASE) == 0
    entries = doubles.bundles[""]["entries"]
    rejection = [e for e in entries if e["kind"] == "rejection"][0]
    assert rejection["data"]["statement"] == signed.statement
    assert rejection["data"]["signature"] == signed.signature
    assert parse_statement(rejection["data"]["statement"]).signer == "dan@example.com"
    assert entries[-1]["kind"] == "outcome"


async def test_release_expires_when_approvals_miss_the_deadline(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(task_queue, 1, risk="medium")
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve(handle, release, "bob@example.com", "platform")
        result = await handle.result()  # 72 h pass on the test server's clock
    assert result.outcome == Outcome.EXPIRED
    assert doubles.count(Activity.SET_IMAGE) == 0
    expired = [e for e in doubles.bundles[""]["entries"] if e["kind"] == "expired"]
    assert expired and expired[0]["data"]["missing"] == {"finance": 1}


async def test_huge_comments_and_comments_not_signed_are_refused(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = time_skipping_env.client
    release = make_release(task_queue, 1)
    async with worker(client, task_queue, Doubles()):
        handle = await start(client, release, task_queue)
        await until_approvals_open(handle)
        now = await server_now(client)
        signed = release.statement("approve", "bob@example.com", now, "ok", role="platform")
        huge = dataclasses.replace(signed, comment="x" * 2049)
        swapped = dataclasses.replace(signed, comment="approved by the CFO as well")
        reasons = [await _refusal(handle, huge), await _refusal(handle, swapped)]
        accepted_before = await _accepted_updates(handle)
        await handle.execute_update(FinanceRelease.approve, signed)
        result = await handle.result()
    assert reasons[0].startswith("comment: at most 2,048 bytes, not 2,049")
    assert reasons[1].startswith("refused (comment_mismatch)")
    assert accepted_before == 0
    assert result.outcome == Outcome.COMPLETED


FLOOD = 2000


async def test_a_flood_of_refused_attempts_leaves_status_history_and_evidence_bounded(
    dev_server_env: WorkflowEnvironment, task_queue: str
) -> None:
    # On the real server (the dev server): a rejected update's speculative workflow task
    # leaves no event (docs.temporal.io, "Message handler patterns": rejected updates are not
    # written to history). Java's time-skipping test server writes a task per attempt.
    doubles = Doubles()
    client = dev_server_env.client
    release = make_release(task_queue, 1)
    comment = "x" * MAX_COMMENT_BYTES
    async with worker(client, task_queue, doubles):
        handle = await start(client, release, task_queue)
        await until_approvals_open(handle)
        now = await server_now(client)
        refused = 0
        for i in range(FLOOD):
            who = "alice@example.com" if i % 2 else "carol@example.com"
            signed = release.statement("approve", who, now, comment, role="platform")
            refused += (await _refusal(handle, signed)).startswith("refused (")
        status = await handle.query(FinanceRelease.status)
        history = await handle.fetch_history()
        await approve_all(handle, release)  # the legitimate approver still gets through
        result = await handle.result()
    assert refused == FLOOD
    status_bytes = len(json.dumps(dataclasses.asdict(status)))
    history_bytes = len(history.to_json())
    evidence_bytes = len(canonical_json(doubles.bundles[""]))
    print(f"after {FLOOD} refused: status {status_bytes} B, history {history_bytes} B, "
          f"evidence {evidence_bytes} B")  # fmt: skip
    assert status.refused == [] and status.refused_counts == {}
    assert status_bytes < 8_000
    # the start request (bundle, keys) and the validation only: no attempt entered history
    assert history_bytes < 60_000, history_bytes
    assert result.outcome == Outcome.COMPLETED
    assert evidence_bytes < 40_000


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
