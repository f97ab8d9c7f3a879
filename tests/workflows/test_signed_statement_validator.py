"""Signed statements checked in an update validator on the time-skipping server: the library
runs in the workflow sandbox, and a refused statement leaves no trace in history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from governance import sshsig
from governance.bundle import pack_bundle, sign_bundle
from governance.statements import make_statement, sign_statement
from tests.signing_people import EXAMPLES, PEOPLE
from tests.workflows.statement_probe import ProbeInput, SignedStatement, StatementProbe

pytestmark = pytest.mark.workflow

KEYS = {who: ed25519.Ed25519PrivateKey.generate() for who in PEOPLE}
ADMINS = {
    who: ed25519.Ed25519PrivateKey.generate() for who in ("alice@example.com", "grace@example.com")
}
RELEASE, DIGEST = "FIN-2026-11-042", "ab" * 32
# cryptography imports its OpenSSL backend lazily (threading.Lock at import): inside the
# sandbox that import is refused, so the workflows worker must pass the package through.
RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("cryptography")
)


def probe_input() -> ProbeInput:
    bundle = pack_bundle(
        serial=1,
        policy=(EXAMPLES / "policy.yaml").read_text(),
        inventory=(EXAMPLES / "tenants.yaml").read_text(),
        calendars={p.stem: p.read_text() for p in (EXAMPLES / "calendars").glob("*.yaml")},
        members={who: [sshsig.public_key_of(key).openssh()] for who, key in KEYS.items()},
    )
    admins = "".join(
        f"  {who}: ['{sshsig.public_key_of(k).openssh()}']\n" for who, k in ADMINS.items()
    )
    return ProbeInput(
        RELEASE, DIGEST, bundle.decode(), [sign_bundle(bundle, key) for key in ADMINS.values()],
        f"threshold: 2\nadmins:\n{admins}",
    )  # fmt: skip


def signed(who: str, issued_at: datetime, role: str) -> SignedStatement:
    statement = make_statement(
        "approve", release_id=RELEASE, bundle_digest=DIGEST, signer=who, issued_at=issued_at,
        lifetime=timedelta(minutes=10), nonce=uuid.uuid4().hex, role=role,
    )  # fmt: skip
    return SignedStatement(statement.canonical().decode(), sign_statement(statement, KEYS[who]))


async def test_validator_refuses_expired_and_replayed_statements_before_history(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = time_skipping_env.client
    async with Worker(
        client, task_queue=task_queue, workflows=[StatementProbe], workflow_runner=RUNNER
    ):
        handle = await client.start_workflow(
            StatementProbe.run, probe_input(), id=f"probe-{uuid.uuid4()}", task_queue=task_queue
        )
        # the workflow's clock: the session's time-skipping server has skipped ahead of ours
        now = (await time_skipping_env.get_current_time()).astimezone(UTC)
        with pytest.raises(WorkflowUpdateFailedError) as expired:
            await handle.execute_update(
                StatementProbe.approve,
                signed("carol@example.com", now - timedelta(hours=1), "finance"),
            )
        assert "expired: valid until" in str(expired.value.cause)
        carol = signed("carol@example.com", now, "finance")
        assert await handle.execute_update(StatementProbe.approve, carol) == "carol@example.com"
        with pytest.raises(WorkflowUpdateFailedError) as replayed:
            await handle.execute_update(StatementProbe.approve, carol)
        assert "reused_nonce" in str(replayed.value.cause)
        forged = SignedStatement(carol.statement.replace("finance", "platform"), carol.signature)
        with pytest.raises(WorkflowUpdateFailedError) as tampered:
            await handle.execute_update(StatementProbe.approve, forged)
        assert "bad_signature" in str(tampered.value.cause)
        await handle.execute_update(
            StatementProbe.approve, signed("bob@example.com", now, "platform")
        )
        result = await handle.result()
        history = await handle.fetch_history()
    assert result.approvers == ["carol@example.com", "bob@example.com"]
    accepted = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert len(accepted) == 2  # the three refusals never entered history


async def test_a_bundle_without_k_admin_signatures_fails_the_workflow_before_any_step(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    from temporalio.client import WorkflowFailureError

    client = time_skipping_env.client
    probe = probe_input()
    probe.bundle_signatures = probe.bundle_signatures[:1]
    async with Worker(
        client, task_queue=task_queue, workflows=[StatementProbe], workflow_runner=RUNNER
    ):
        with pytest.raises(WorkflowFailureError) as failed:
            await client.execute_workflow(
                StatementProbe.run, probe, id=f"probe-{uuid.uuid4()}", task_queue=task_queue
            )
    assert "quorum_not_met" in str(failed.value.cause)
