"""Evidence: every decision in a verifiable chain; the parent's history stays small."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from devstack.signing import GOVERNANCE_ADMINS
from governance.evidence import canonical_json, verify
from governance.evidence_audit import allowed_signers_of, audit_evidence, exported_statements
from governance.statements import parse_statement
from tests.workflows.release_doubles import Doubles
from tests.workflows.release_harness import (
    APPROVERS,
    approve,
    approve_all,
    make_release,
    save_history,
    start,
    worker,
)
from workflows.messages import Outcome
from workflows.release import FinanceRelease

TWO_WAVES = [{"name": "canary", "size": 1}, {"name": "rest", "size": "100%"}]


async def test_evidence_chain_verifies_and_records_every_decision(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(task_queue, 3, waves=TWO_WAVES)
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        with pytest.raises(WorkflowUpdateFailedError):  # refused before history
            await approve(handle, release, "alice@example.com", "platform")
        await approve_all(handle, release)
        result = await handle.result()
        await save_history(handle, "happy_path_two_waves")
    assert result.outcome == Outcome.COMPLETED
    chain = doubles.bundles[""]
    assert verify(chain) is None
    kinds = [e["kind"] for e in chain["entries"]]
    for kind in (
        "release",
        "work_item",
        "start",
        "approval",
        "approved",
        "calendar",
        "gate_passed",
        "tenant_bundles",
        "outcome",
    ):
        assert kind in kinds, kind
    assert kinds[0] == "release" and kinds[-1] == "outcome"
    assert chain["entries"][0]["data"]["spec_sha256"] == release.spec_sha256
    assert "approval_refused" not in kinds  # refused before history, so not in the evidence
    started = chain["entries"][kinds.index("start")]
    assert started["actor"] == "alice@example.com" and started["data"]["signature"]
    approval = chain["entries"][kinds.index("approval")]
    assert approval["actor"] == APPROVERS["platform"]
    assert parse_statement(approval["data"]["statement"]).bundle_digest == release.digest
    governance = chain["entries"][0]["data"]["governance"]
    assert governance["signed_by"] == list(GOVERNANCE_ADMINS)
    assert chain["entries"][0]["data"]["digest"] == release.digest
    links = [e["data"] for e in chain["entries"] if e["kind"] == "tenant_bundles"]
    assert len(links) == 2  # one entry per wave: canary, then the rest
    assert {link["location"] for link in links} == {f"{release.release_id}/{{tenant}}.json"}
    bundles = {item["tenant"]: item for link in links for item in link["bundles"]}
    assert set(bundles) == {"t1", "t2", "t3"}
    for tenant, entry in bundles.items():
        tenant_chain = doubles.bundles[tenant]
        assert verify(tenant_chain) is None
        assert entry == {"tenant": tenant, "head": tenant_chain["head"], "state": "deployed"}
        tenant_kinds = [e["kind"] for e in tenant_chain["entries"]]
        for kind in (
            "backup",
            "finance_snapshot",
            "running_state",
            "migration",
            "image_set",
            "smoke",
            "deployed",
            "tenant_outcome",
        ):
            assert kind in tenant_kinds, (tenant, kind)
        ledger = tenant_chain["entries"][tenant_kinds.index("finance_snapshot")]["data"]
        assert ledger["odoo_version"] == "18.0"
        assert ledger["companies"] == [
            {
                "id": 1,
                "currency": "EUR",
                "posted_entries": 10,
                "balance_total": "0.00",
                "unbalanced_entries": 0,
                "numbering_gaps": 0,
                "hashed_entries": 3,
                "hash_chain_sha256": "ab" * 32,
            }
        ]
        backup = tenant_chain["entries"][tenant_kinds.index("backup")]["data"]
        assert {"tenant", "blob_name", "url", "bytes", "sha256"} <= set(backup)


async def test_parent_history_stays_under_ten_events_per_tenant_over_200_tenants(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    tenants = 200
    doubles = Doubles()
    release = make_release(
        task_queue,
        [f"t{i:03d}" for i in range(tenants)],
        migrations=False,
        waves=[{"name": "canary", "size": 1}, {"name": "rest", "size": "100%"}],
        max_parallel=50,
    )
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve_all(handle, release)
        result = await handle.result()
        events = 0
        async for _ in handle.fetch_history_events():
            events += 1
        status = await handle.query(FinanceRelease.status)
    assert result.outcome == Outcome.COMPLETED
    assert set(result.tenants.values()) == {"deployed"}
    print(
        f"parent history: {events} events for {tenants} tenants ({events / tenants:.2f} per tenant)"
    )
    assert events / tenants < 10
    # the release bundle travels as one payload (Temporal warns at 256 KB): tenant links are
    # batched, so a 1,000-tenant release stays well under it
    bundle_bytes = len(canonical_json(doubles.bundles[""]).encode())
    print(f"release bundle: {bundle_bytes} bytes ({bundle_bytes / tenants:.0f} per tenant)")
    assert bundle_bytes / tenants * 1000 < 256 * 1024 * 0.8
    assert status.outcome == Outcome.COMPLETED
    assert sum(len(w.tenants) for w in status.waves) == tenants


def _ssh_verify(allowed: Path, signer: str, statement: Path) -> int:
    with statement.open("rb") as stdin:
        return subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", allowed, "-I", signer, "-n", "finrelease",
             "-s", f"{statement}.sig"],
            stdin=stdin, capture_output=True, timeout=60, check=False,
        ).returncode  # fmt: skip


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="./dev bootstrap installs it")
async def test_signed_statements_in_the_evidence_verify_offline_and_with_ssh_keygen(
    time_skipping_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    doubles = Doubles()
    release = make_release(task_queue, 2, risk="medium")
    async with worker(time_skipping_env.client, task_queue, doubles):
        handle = await start(time_skipping_env.client, release, task_queue)
        await approve_all(handle, release)
        assert (await handle.result()).outcome == Outcome.COMPLETED
    bundle = doubles.bundles[""]
    audit = audit_evidence(bundle)
    assert audit.problems == [] and audit.statements == audit.verified == 3  # start + 2
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(allowed_signers_of(bundle))
    exported = exported_statements(bundle)
    for stem, statement, signature in exported:
        (tmp_path / f"{stem}.json").write_text(statement)
        (tmp_path / f"{stem}.json.sig").write_text(signature)
        signer = parse_statement(statement).signer
        assert _ssh_verify(allowed, signer, tmp_path / f"{stem}.json") == 0, stem

    # one byte of one signature flipped: the audit and ssh-keygen both refuse it
    stem, statement, signature = exported[1]
    lines = signature.splitlines()
    body = lines[1]
    lines[1] = body[:20] + ("A" if body[20] != "A" else "B") + body[21:]
    (tmp_path / f"{stem}.json.sig").write_text("\n".join(lines) + "\n")
    assert _ssh_verify(allowed, parse_statement(statement).signer, tmp_path / f"{stem}.json") != 0
    tampered = copy.deepcopy(bundle)
    entry = next(e for e in tampered["entries"] if e["data"].get("statement") == statement)
    entry["data"]["signature"] = "\n".join(lines) + "\n"
    problems = audit_evidence(tampered).problems
    assert any(f"entry {entry['seq']}" in p for p in problems), problems
    assert any("says approved" in p for p in problems), problems  # the quorum is gone too
