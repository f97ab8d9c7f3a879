"""The release CLI against a dev server, the workflows worker's own builder and activity doubles.

The CLI runs in-process through Typer's CliRunner on a worker thread (as a pipeline would
run it: its own event loop), while the workers poll on the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
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


@pytest_asyncio.fixture(scope="module")
async def cli_stack(dev_server_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    """Workers on queues of their own (FINRELEASE_QUEUE_PREFIX), the CLI pointed at them."""
    client = dev_server_env.client
    prefix = f"cli{uuid.uuid4().hex[:8]}-"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEMPORAL_ADDRESS", client.service_client.config.target_host)
        patch.setenv("TEMPORAL_NAMESPACE", client.namespace)
        patch.setenv("FINRELEASE_QUEUE_PREFIX", prefix)
        patch.delenv("FINRELEASE_USER", raising=False)
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


def release_files(directory: Path, release_id: str) -> list[str | Path]:
    """examples/ with a fresh release_id: the arguments after `start`."""
    spec = (EXAMPLES / "release.yaml").read_text().replace("FIN-2026-11-042", release_id)
    (directory / "release.yaml").write_text(spec)
    shutil.copytree(EXAMPLES / "migrations", directory / "migrations", dirs_exist_ok=True)
    return [
        directory / "release.yaml",
        "--inventory",
        EXAMPLES / "tenants.yaml",
        "--policy",
        EXAMPLES / "policy.yaml",
        "--calendars",
        EXAMPLES / "calendars",
    ]


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
        else:  # started by another process that may not have got there yet
            assert "no release with workflow id" in result.stderr, result.output
        await asyncio.sleep(0.1)
    raise AssertionError(f"{release_id} never reached AwaitingApproval: {status}")


@pytest_asyncio.fixture
async def started(cli_stack: Client, tmp_path: Path) -> tuple[str, str]:
    """A release started with the CLI and waiting for approvals: (release id, spec sha256)."""
    release_id = f"FIN-CLI-{uuid.uuid4().hex[:8]}"
    result = await finrelease("start", *release_files(tmp_path, release_id), "--json")
    assert result.exit_code == 0, result.output
    sha = json.loads(result.stdout)["spec_sha256"]
    await awaiting_approval(release_id)
    return release_id, sha


async def test_start_prints_workflow_id_spec_sha256_and_ui_link(
    cli_stack: Client, tmp_path: Path
) -> None:
    release_id = f"FIN-CLI-{uuid.uuid4().hex[:8]}"
    files = release_files(tmp_path, release_id)
    validated = await finrelease("spec", "validate", *files)
    assert validated.exit_code == 0, validated.output
    expected_sha = validated.stdout.strip().splitlines()[-1].removeprefix("sha256: ")

    result = await finrelease("start", *files)

    assert result.exit_code == 0, result.output
    assert f"workflow id: release-{release_id}" in result.stdout
    assert f"spec sha256: {expected_sha}" in result.stdout
    assert (
        f"http://127.0.0.1:8233/namespaces/default/workflows/release-{release_id}" in result.stdout
    )
    described = await cli_stack.get_workflow_handle(f"release-{release_id}").describe()
    assert described.typed_search_attributes.get(RELEASE_ID) == release_id
    assert described.typed_search_attributes.get(RISK_CLASS) == "medium"
    assert (await awaiting_approval(release_id))["spec_sha256"] == expected_sha


async def test_start_refuses_a_release_id_already_used(
    started: tuple[str, str], tmp_path: Path
) -> None:
    release_id, _ = started
    result = await finrelease("start", *release_files(tmp_path, release_id))
    assert result.exit_code == 2
    assert f"release {release_id} already exists" in result.stderr


async def test_start_reports_the_same_errors_as_spec_validate(tmp_path: Path) -> None:
    files = release_files(tmp_path, "FIN-CLI-invalid")
    replace_in(Path(files[0]), "risk: medium", "risk: extreme")
    validated = await finrelease("spec", "validate", *files)
    result = await finrelease("start", *files)
    assert validated.exit_code == result.exit_code == 2
    assert validated.stderr.strip() in result.stderr
    assert "risk" in result.stderr


async def test_requester_cannot_approve_own_release(started: tuple[str, str]) -> None:
    release_id, sha = started
    result = await finrelease(
        "approve", release_id, "--as", "alice@example.com", "--role", "platform"
    )
    assert result.exit_code == 3, result.output
    assert f"spec sha256: {sha}" in result.stdout
    assert "alice@example.com requested this release and may not decide it" in result.stderr
    refused = (await status_of(release_id))["refused"]
    assert [(r["approver"], r["code"]) for r in refused] == [("alice@example.com", "requester")]


async def test_non_member_cannot_approve(started: tuple[str, str]) -> None:
    release_id, _ = started
    result = await finrelease(
        "approve", release_id, "--as", "mallory@example.com", "--role", "finance"
    )
    assert result.exit_code == 3, result.output
    assert "mallory@example.com is not a member of role 'finance'" in result.stderr


async def test_approval_for_other_content_is_refused(started: tuple[str, str]) -> None:
    release_id, _ = started
    result = await finrelease(
        "approve",
        release_id,
        "--as",
        "bob@example.com",
        "--role",
        "platform",
        "--spec-sha256",
        "0" * 64,
    )
    assert result.exit_code == 3, result.output


async def test_valid_approval_is_accepted_and_shown_in_status(
    started: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    release_id, _ = started
    monkeypatch.setenv("FINRELEASE_USER", "bob@example.com")  # identity from the environment
    result = await finrelease("approve", release_id, "--role", "platform", "--comment", "lgtm")
    assert result.exit_code == 0, result.output
    assert "approved" in result.stdout
    status = await status_of(release_id)
    assert [(a["approver"], a["role"]) for a in status["approvals"]] == [
        ("bob@example.com", "platform")
    ]
    assert status["missing"] == {"finance": 1}


async def test_status_shows_missing_approvals_and_every_tenant(started: tuple[str, str]) -> None:
    result = await finrelease("status", started[0])
    assert result.exit_code == 0, result.output
    assert f"release {started[0]}: AwaitingApproval" in result.stdout
    missing = next(line for line in result.stdout.splitlines() if "approvals missing" in line)
    assert "platform x1" in missing and "finance x1" in missing
    for tenant in ("berlin", "newyork", "tokyo"):
        assert tenant in result.stdout


async def test_approve_without_identity_is_invalid_input(started: tuple[str, str]) -> None:
    result = await finrelease("approve", started[0], "--role", "platform")
    assert result.exit_code == 2
    assert "FINRELEASE_USER" in result.stderr


async def test_list_finds_the_release_awaiting_approval(started: tuple[str, str]) -> None:
    release_id, _ = started
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
    files = release_files(tmp_path, release_id)
    replace_in(tmp_path / "release.yaml", "alice@example.com", '"[bold]al[/]ice@example.com"')
    started = await finrelease("start", *files, "--json")
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


async def test_pause_and_resume_reach_the_release(started: tuple[str, str]) -> None:
    release_id, _ = started
    paused = await finrelease("pause", release_id, "--as", "erin@example.com")
    assert paused.exit_code == 0, paused.output
    assert (await status_of(release_id))["paused"] is True
    again = await finrelease("pause", release_id, "--as", "erin@example.com")
    assert again.exit_code == 3
    assert "already paused" in again.stderr
    resumed = await finrelease("resume", release_id, "--as", "erin@example.com")
    assert resumed.exit_code == 0, resumed.output
    assert (await status_of(release_id))["paused"] is False


async def test_operator_verbs_without_an_operator_role_are_refused(
    started: tuple[str, str],
) -> None:
    release_id, _ = started
    for verb in (["pause"], ["abort", "--reason", "mine now"]):
        refused = await finrelease(*verb[:1], release_id, "--as", "bob@example.com", *verb[1:])
        assert refused.exit_code == 3, refused.output
        assert "is not a member of release_manager or operator" in refused.stderr
    status = await status_of(release_id)
    assert status["paused"] is False and status["outcome"] == ""


async def test_abort_needs_a_reason(started: tuple[str, str]) -> None:
    result = await finrelease("abort", started[0], "--as", "erin@example.com", "--reason", "")
    assert result.exit_code == 3
    assert "abort needs a reason" in result.stderr


async def test_abort_ends_a_release_awaiting_approval(started: tuple[str, str]) -> None:
    release_id, _ = started
    aborted = await finrelease(
        "abort", release_id, "--as", "erin@example.com", "--reason", "test over"
    )
    assert aborted.exit_code == 0, aborted.output
    for _ in range(300):
        status = await status_of(release_id)
        if status["outcome"]:
            break
        await asyncio.sleep(0.1)
    assert status["outcome"] == "Aborted"


async def test_start_wait_follows_to_completed_and_exits_0(
    cli_stack: Client, tmp_path: Path
) -> None:
    release_id = f"FIN-CLI-{uuid.uuid4().hex[:8]}"
    files = release_files(tmp_path, release_id)
    calendars = tmp_path / "calendars"  # allowed at any time: the test never waits for a window
    calendars.mkdir()
    for name in ("berlin", "newyork", "tokyo"):
        (calendars / f"{name}.yaml").write_text("timezone: UTC\n")
    files[-1] = calendars
    # a pipeline's `start --wait` is its own process (CliRunner swaps sys.stdout: one at a time)
    waiting = asyncio.create_task(
        asyncio.to_thread(
            subprocess.run,
            [FINRELEASE, "start", *map(str, files), "--wait"],
            capture_output=True,
            text=True,
            timeout=240,
        )
    )
    await awaiting_approval(release_id)
    for approver, role in (("bob@example.com", "platform"), ("carol@example.com", "finance")):
        approved = await finrelease("approve", release_id, "--as", approver, "--role", role)
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
