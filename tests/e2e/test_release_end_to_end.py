"""A release through the CLI against a dev server, one worker process per queue, real services
(the stack: tests/e2e/conftest.py and tests/e2e/stack.py)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.e2e.stack import NEW_IMAGE, Stack

pytestmark = pytest.mark.e2e


def test_release_completes_over_three_tenants_through_worker_processes(stack: Stack):
    release_id = f"FIN-E2E-{uuid.uuid4().hex[:6]}"
    stack.start(stack.files(release_id))
    stack.approve(release_id)

    status = stack.follow(release_id)

    assert status["outcome"] == "Completed", status
    deployments = stack.deployments()
    assert len(deployments) == 9
    for (tenant, name), deployment in deployments.items():
        assert deployment.image == NEW_IMAGE, (tenant, name)
        assert deployment.release == release_id, (tenant, name)
    verified = stack.cli("evidence", "verify", release_id)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert stack.scratch_databases(release_id) == []


def test_cli_refusals_exit_3_and_list_finds_the_waiting_release(stack: Stack):
    release_id = f"FIN-E2E-{uuid.uuid4().hex[:6]}"
    stack.start(stack.files(release_id))

    own = stack.approve_as(release_id, "alice@example.com", "platform")
    outsider = stack.approve_as(release_id, "mallory@example.com", "finance")  # no key in policy
    listed = ""
    for _ in range(30):  # visibility is eventually consistent
        listed = stack.cli("list", "--phase", "AwaitingApproval").stdout
        if release_id in listed:
            break
        time.sleep(0.5)
    rejected = stack.approve_as(
        release_id, "dan@example.com", "platform", "--comment", "not this week", verb="reject"
    )
    final = stack.follow(release_id, timeout=60)

    assert own.returncode == 3 and "requester" in own.stdout + own.stderr, (own.stderr, final)
    assert outsider.returncode == 3 and "unknown_key" in outsider.stdout + outsider.stderr
    assert release_id in listed
    assert rejected.returncode == 0, rejected.stdout + rejected.stderr
    assert final["outcome"] == "Rejected"


def test_release_survives_a_temporal_server_restart(stack: Stack):
    """The dev server keeps its state in a SQLite file: stop it mid-release, start it again."""
    release_id = f"FIN-E2E-{uuid.uuid4().hex[:6]}"
    stack.start(stack.files(release_id))
    approved = stack.approve_as(release_id, "bob@example.com", "platform")
    assert approved.returncode == 0, approved.stdout + approved.stderr

    assert stack.temporal.stop()
    stack.temporal.start(timeout=90)  # same --db-filename: the release is still there

    waiting = stack.cli("status", release_id, "--json")
    assert waiting.returncode == 0, waiting.stdout + waiting.stderr
    assert json.loads(waiting.stdout)["missing"] == {"finance": 1}
    approved = stack.approve_as(release_id, "carol@example.com", "finance")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert stack.follow(release_id)["outcome"] == "Completed"
