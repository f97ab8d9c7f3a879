"""The release CLI against a dev server, the workflows worker's own builder and activity doubles.

The CLI runs in-process through Typer's CliRunner on a worker thread (as a pipeline would
run it: its own event loop), while the workers poll on the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from azure.core.exceptions import ResourceExistsError
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from typer.testing import CliRunner

from activities.azure_storage import (
    EVIDENCE_CONTAINER,
    blob_service_from_connection_string,
)
from activities.evidence import EvidenceActivities
from devstack.demo_tenants import DemoFiles, write_demo_files
from devstack.signing import demo_trust_root
from governance.evidence import EvidenceChain
from starter.cli import app
from tests.workflows.release_doubles import Doubles
from workers.queues import workflows_worker
from workflows.contracts import (
    AZURE_QUEUE,
    DB_QUEUE,
    K8S_QUEUE,
    SMOKE_QUEUE,
    EvidencePublication,
)
from workflows.messages import RELEASE_ID, RISK_CLASS

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

EXAMPLES = ROOT / "examples"
FINRELEASE = str(Path(sys.executable).parent / "finrelease")
runner = CliRunner()


async def finrelease(*args: str | Path) -> Any:
    """`finrelease ARGS` on its own thread, so its asyncio loop runs beside the workers'."""
    return await asyncio.to_thread(runner.invoke, app, [str(a) for a in args])


KEYS_ROOT: list[Path] = []  # the module's keyring and trust root folder (set by cli_stack)


@pytest_asyncio.fixture(scope="module")
async def cli_stack(
    dev_server_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Client]:
    """Workers on queues of their own (FINRELEASE_QUEUE_PREFIX), the CLI pointed at them, the
    workflows worker trusting two throwaway governance administrators."""
    client = dev_server_env.client
    prefix = f"cli{uuid.uuid4().hex[:8]}-"
    root = tmp_path_factory.mktemp("cli-keys")
    KEYS_ROOT[:] = [root]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEMPORAL_ADDRESS", client.service_client.config.target_host)
        patch.setenv("TEMPORAL_NAMESPACE", client.namespace)
        patch.setenv("FINRELEASE_QUEUE_PREFIX", prefix)
        patch.setenv("FINRELEASE_TRUST_ROOT", str(demo_trust_root(root)))
        patch.delenv("FINRELEASE_USER", raising=False)
        patch.delenv("FINRELEASE_KEY", raising=False)
        doubles = Doubles()
        workers = [workflows_worker(client, prefix=prefix).worker] + [
            Worker(client, task_queue=f"{prefix}{queue}", activities=doubles.activities())
            for queue in (DB_QUEUE, K8S_QUEUE, AZURE_QUEUE, SMOKE_QUEUE)
        ]
        runs = [asyncio.create_task(w.run()) for w in workers]
        try:
            yield client
        finally:
            await asyncio.gather(*(w.shutdown() for w in workers))
            await asyncio.gather(*runs, return_exceptions=True)


def release_files(
    directory: Path, release_id: str, requester: str = "alice@example.com"
) -> DemoFiles:
    """examples/ with a fresh release_id under a signed governance bundle (always-open
    `demo` calendar: no test waits for a window)."""
    return write_demo_files(directory, release_id, 8069, root=KEYS_ROOT[0], requester=requester)


def replace_in(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


async def status_of(release_id: str) -> dict:
    result = await finrelease("status", release_id, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


async def awaiting_approval(release_id: str) -> dict:
    status: dict = {}
    for _ in range(600):
        result = await finrelease("status", release_id, "--json")
        if result.exit_code == 0:
            status = json.loads(result.stdout)
            if status["phase"] == "AwaitingApproval":
                return status
            assert not status["outcome"], status
        else:  # started by another process that may not have got there yet
            assert "no release with workflow id" in result.stderr, result.output
        await asyncio.sleep(0.1)
    raise AssertionError(f"{release_id} never reached AwaitingApproval: {status}")


@dataclass
class Started:
    release_id: str
    spec_sha256: str
    digest: str
    files: DemoFiles

    def approve(self, identity: str, role: str, *extra: str, verb: str = "approve") -> list[str]:
        return self.files.approve_arguments(self.release_id, identity, role, *extra, verb=verb)

    def operate(self, verb: str, identity: str, *extra: str) -> list[str]:
        key = str(self.files.key(identity))
        return [verb, self.release_id, "--as", identity, "--key", key, *extra]


@pytest_asyncio.fixture
async def started(cli_stack: Client, tmp_path: Path) -> Started:
    """A release started with the CLI and waiting for approvals."""
    release_id = f"FIN-CLI-{uuid.uuid4().hex[:8]}"
    files = release_files(tmp_path, release_id)
    result = await finrelease(*files.start_arguments(), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    await awaiting_approval(release_id)
    return Started(release_id, out["spec_sha256"], out["digest"], files)


async def test_start_prints_workflow_id_digest_and_ui_link(
    cli_stack: Client, tmp_path: Path
) -> None:
    release_id = f"FIN-CLI-{uuid.uuid4().hex[:8]}"
    files = release_files(tmp_path, release_id)
    digest = await finrelease("governance", "digest", files.spec, "--bundle", files.bundle)
    assert digest.exit_code == 0, digest.output
    expected = digest.stdout.strip().splitlines()[-1].removeprefix("digest: ")

    result = await finrelease(*files.start_arguments())

    assert result.exit_code == 0, result.output
    assert f"workflow id: release-{release_id}" in result.stdout
    assert f"release digest (approvers sign it): {expected}" in result.stdout
    assert (
        f"http://127.0.0.1:8233/namespaces/default/workflows/release-{release_id}" in result.stdout
    )
    described = await cli_stack.get_workflow_handle(f"release-{release_id}").describe()
    assert described.typed_search_attributes.get(RELEASE_ID) == release_id
    assert described.typed_search_attributes.get(RISK_CLASS) == "medium"
    status = await awaiting_approval(release_id)
    assert status["digest"] == expected and status["governance_serial"] == 1


async def test_start_refuses_a_release_id_already_used(started: Started, tmp_path: Path) -> None:
    files = release_files(tmp_path, started.release_id)
    result = await finrelease(*files.start_arguments())
    assert result.exit_code == 2
    assert f"release {started.release_id} already exists" in result.stderr


async def test_start_reports_the_same_errors_as_spec_validate(
    cli_stack: Client, tmp_path: Path
) -> None:
    files = release_files(tmp_path, "FIN-CLI-invalid")
    replace_in(files.spec, "risk: medium", "risk: extreme")
    validated = await finrelease(
        "spec", "validate", files.spec, "--inventory", files.inventory,
        "--policy", files.policy, "--calendars", files.calendars,
    )  # fmt: skip
    result = await finrelease(*files.start_arguments())
    assert validated.exit_code == result.exit_code == 2
    assert "risk" in result.stderr and "risk" in validated.stderr


async def test_start_signed_by_someone_else_than_the_requester_is_refused(
    cli_stack: Client, tmp_path: Path
) -> None:
    files = release_files(tmp_path, f"FIN-CLI-{uuid.uuid4().hex[:8]}")
    arguments = files.start_arguments()
    arguments[arguments.index("--as") + 1] = "bob@example.com"
    result = await finrelease(*arguments)
    assert result.exit_code == 2
    assert "the requester signs the start" in result.stderr


async def test_a_bundle_not_signed_by_two_administrators_makes_the_release_invalid(
    cli_stack: Client, tmp_path: Path
) -> None:
    release_id = f"FIN-CLI-{uuid.uuid4().hex[:8]}"
    files = release_files(tmp_path, release_id)
    (files.bundle.parent / "bundle.json.gov-admin-2@example.com.sig").unlink()
    result = await finrelease(*files.start_arguments())
    assert result.exit_code == 0, result.output
    for _ in range(300):
        status = await status_of(release_id)
        if status["outcome"]:
            break
        await asyncio.sleep(0.1)
    assert status["outcome"] == "Invalid"
    assert status["digest"] == ""


async def test_requester_cannot_approve_own_release(started: Started) -> None:
    result = await finrelease(*started.approve("alice@example.com", "platform"))
    assert result.exit_code == 3, result.output
    assert f"release digest: {started.digest}" in result.stdout
    assert "alice@example.com requested this release and may not decide it" in result.stderr
    assert (await status_of(started.release_id))["approvals"] == []


async def test_a_key_outside_the_policy_cannot_approve(started: Started) -> None:
    result = await finrelease(*started.approve("mallory@example.com", "finance"))
    assert result.exit_code == 3, result.output
    assert "refused (unknown_key)" in result.stderr


async def test_approval_of_another_digest_is_refused_before_signing(started: Started) -> None:
    arguments = started.approve("bob@example.com", "platform")
    arguments[arguments.index("--digest") + 1] = "0" * 64
    result = await finrelease(*arguments)
    assert result.exit_code == 2, result.output
    assert f"release {started.release_id} runs under {started.digest}" in result.stderr


async def test_approve_needs_the_digest_spelled_out(started: Started) -> None:
    arguments = started.approve("bob@example.com", "platform")
    index = arguments.index("--digest")
    del arguments[index : index + 2]
    result = await finrelease(*arguments)
    assert result.exit_code == 2 and "--digest" in result.output


async def test_valid_approval_is_accepted_and_shown_in_status(
    started: Started, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    arguments = started.approve("bob@example.com", "platform")
    index = arguments.index("--as")
    del arguments[index : index + 2]
    monkeypatch.setenv("FINRELEASE_USER", "bob@example.com")  # identity from the environment
    comment = tmp_path / "comment.txt"
    comment.write_text("lgtm, the migration is idempotent")
    result = await finrelease(*arguments, "--comment-file", comment)
    assert result.exit_code == 0, result.output
    assert "approved" in result.stdout
    status = await status_of(started.release_id)
    assert [(a["approver"], a["role"]) for a in status["approvals"]] == [
        ("bob@example.com", "platform")
    ]
    assert status["missing"] == {"finance": 1}


async def test_status_shows_missing_approvals_and_every_tenant(started: Started) -> None:
    result = await finrelease("status", started.release_id)
    assert result.exit_code == 0, result.output
    assert f"release {started.release_id}: AwaitingApproval" in result.stdout
    missing = next(line for line in result.stdout.splitlines() if "approvals missing" in line)
    assert "platform x1" in missing and "finance x1" in missing
    for tenant in ("berlin", "newyork", "tokyo"):
        assert tenant in result.stdout


async def test_approve_without_identity_or_key_is_invalid_input(started: Started) -> None:
    result = await finrelease(
        "approve", started.release_id, "--role", "platform", "--digest", started.digest
    )
    assert result.exit_code == 2
    assert "FINRELEASE_USER" in result.stderr
    keyless = await finrelease(
        "approve", started.release_id, "--role", "platform", "--digest", started.digest,
        "--as", "bob@example.com",
    )  # fmt: skip
    assert keyless.exit_code == 2
    assert "no key to sign with" in keyless.stderr


async def test_list_finds_the_release_awaiting_approval(started: Started) -> None:
    release_id = started.release_id
    for _ in range(300):  # visibility is eventually consistent
        result = await finrelease("list", "--phase", "AwaitingApproval", "--json")
        assert result.exit_code == 0, result.output
        rows = json.loads(result.stdout)
        if any(row["workflow_id"] == f"release-{release_id}" for row in rows):
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"{release_id} not listed as AwaitingApproval: {rows}")
    row = next(r for r in rows if r["workflow_id"] == f"release-{release_id}")
    assert row["risk"] == "medium"
    assert row["requested_by"] == "alice@example.com"
    assert row["tenants"] == ["berlin", "newyork", "tokyo"]
    table = await finrelease("list", "--phase", "AwaitingApproval", "--tenant", "tokyo")
    assert release_id in table.stdout


async def test_list_prints_a_markup_like_requester_as_text(
    cli_stack: Client, tmp_path: Path
) -> None:
    release_id = f"FIN-CLI-{uuid.uuid4().hex[:8]}"
    files = release_files(tmp_path, release_id, requester="[bold]al[/]ice@example.com")
    started = await finrelease(*files.start_arguments(), "--json")
    assert started.exit_code == 0, started.output
    await awaiting_approval(release_id)
    for _ in range(300):  # visibility is eventually consistent
        table = await finrelease("list", "--tenant", "tokyo", "--limit", "500")
        assert table.exit_code == 0, (table.output, table.exception)  # Rich used to crash
        if release_id in table.stdout:
            break
        await asyncio.sleep(0.2)
    assert "[bold]al[/]" in table.stdout  # shown as typed, not read as markup
    status = await finrelease("status", release_id)
    assert status.exit_code == 0, (status.output, status.exception)


async def test_pause_and_resume_reach_the_release(started: Started) -> None:
    paused = await finrelease(*started.operate("pause", "erin@example.com"))
    assert paused.exit_code == 0, paused.output
    assert (await status_of(started.release_id))["paused"] is True
    again = await finrelease(*started.operate("pause", "erin@example.com"))
    assert again.exit_code == 3
    assert "already paused" in again.stderr
    resumed = await finrelease(*started.operate("resume", "erin@example.com"))
    assert resumed.exit_code == 0, resumed.output
    assert (await status_of(started.release_id))["paused"] is False


async def test_operator_verbs_without_an_operator_role_are_refused(started: Started) -> None:
    for verb, extra in (("pause", []), ("abort", ["--reason", "mine now"])):
        refused = await finrelease(*started.operate(verb, "bob@example.com", *extra))
        assert refused.exit_code == 3, refused.output
        assert "is not a member of release_manager or operator" in refused.stderr
    # erin's name with bob's key: the signature is not erin's
    forged = started.operate("pause", "erin@example.com")
    forged[forged.index("--key") + 1] = str(started.files.key("bob@example.com"))
    refused = await finrelease(*forged)
    assert refused.exit_code == 3 and "refused (signer_not_key_owner)" in refused.stderr
    status = await status_of(started.release_id)
    assert status["paused"] is False and status["outcome"] == ""


async def test_abort_needs_a_reason(started: Started) -> None:
    result = await finrelease(*started.operate("abort", "erin@example.com", "--reason", ""))
    assert result.exit_code == 3
    assert "abort needs a reason" in result.stderr


async def test_abort_ends_a_release_awaiting_approval(started: Started) -> None:
    aborted = await finrelease(*started.operate("abort", "erin@example.com", "--reason", "over"))
    assert aborted.exit_code == 0, aborted.output
    for _ in range(300):
        status = await status_of(started.release_id)
        if status["outcome"]:
            break
        await asyncio.sleep(0.1)
    assert status["outcome"] == "Aborted"


async def test_start_wait_follows_to_completed_and_exits_0(
    cli_stack: Client, tmp_path: Path
) -> None:
    release_id = f"FIN-CLI-{uuid.uuid4().hex[:8]}"
    files = release_files(tmp_path, release_id)
    # a pipeline's `start --wait` is its own process (CliRunner swaps sys.stdout: one at a time)
    waiting = asyncio.create_task(
        asyncio.to_thread(
            subprocess.run,
            [FINRELEASE, *files.start_arguments(), "--wait"],
            capture_output=True,
            text=True,
            timeout=240,
        )
    )
    await awaiting_approval(release_id)
    for approver, role in (("bob@example.com", "platform"), ("carol@example.com", "finance")):
        arguments = files.approve_arguments(release_id, approver, role)
        approved = await finrelease(*arguments)
        assert approved.exit_code == 0, approved.output

    result = await waiting

    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "outcome: Completed" in result.stdout
    assert f"evidence: https://blob/evidence/{release_id}.json" in result.stdout


async def test_status_of_an_unknown_release_is_an_error(cli_stack: Client) -> None:
    # invoked on the test's own running loop: the CLI must not try to nest asyncio.run
    result = runner.invoke(app, ["status", "FIN-does-not-exist"])
    assert result.exit_code == 1
    assert "no release with workflow id release-FIN-does-not-exist" in result.stderr


# ---------------------------------------------------------------- evidence by release id


@pytest_asyncio.fixture
async def published(azurite: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A release bundle published as the azure worker publishes it; returns its release id."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    release_id = f"FIN-EV-{uuid.uuid4().hex[:8]}"
    chain = EvidenceChain(release_id)
    chain.append("release", "finrelease", {"spec_sha256": "ab" * 32}, "2026-11-22T10:00:00+00:00")
    chain.append("outcome", "finrelease", {"outcome": "Completed"}, "2026-11-22T11:00:00+00:00")
    async with blob_service_from_connection_string(azurite.connection_string) as service:
        with contextlib.suppress(ResourceExistsError):
            await service.create_container(EVIDENCE_CONTAINER)
        publication = EvidencePublication(release_id, chain.bundle(), "Completed")
        await EvidenceActivities(service).publish_evidence(publication)
    return release_id


async def test_evidence_verify_by_release_id_checks_the_published_bundle(published: str) -> None:
    result = await finrelease("evidence", "verify", published)
    assert result.exit_code == 0, result.output
    assert "ok: 2 entries in 1 bundle(s)" in result.stdout


async def test_evidence_verify_of_an_unpublished_release_fails_naming_the_blob(
    published: str,
) -> None:
    result = await finrelease("evidence", "verify", "FIN-never-published")
    assert result.exit_code == 1
    assert f"{EVIDENCE_CONTAINER}/FIN-never-published.json: not found" in result.stderr


async def test_evidence_show_prints_the_published_entries(published: str) -> None:
    result = await finrelease("evidence", "show", published, "--json")
    assert result.exit_code == 0, result.output
    bundle = json.loads(result.stdout)
    assert [e["kind"] for e in bundle["entries"]] == ["release", "outcome"]
    table = await finrelease("evidence", "show", published)
    assert "outcome" in table.stdout and "Completed" in table.stdout
