"""A release through the CLI against a dev server, one worker process per queue, real services.

PostgreSQL, Azurite and the Temporal dev server are real; Kubernetes, Azure DevOps, Monitor and
Odoo JSON-RPC are the HTTP doubles of devstack. Tenant databases carry this run's prefix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from devstack.demo_tenants import DemoFiles, prepare_tenants, write_demo_files
from devstack.fleet import start_fleet, stop_fleet
from devstack.ports import free_port
from devstack.process import ManagedProcess
from devstack.services import azurite, http_doubles, kubernetes_double, temporal_dev_server
from devstack.stack import DEMO_WORK_ITEM, StackPorts, stack_environment
from tests.conftest import RUN_PREFIX, drop_database

pytestmark = pytest.mark.e2e
FINRELEASE = str(Path(sys.executable).parent / "finrelease")
NEW_IMAGE = (
    "acr.example.io/odoo@sha256:4f5c2a9d0e8b7c6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa9988"
)
TENANTS = ("berlin", "newyork", "tokyo")
# A completed release closes its work item, so each release here has its own change request.
SECOND_WORK_ITEM = DEMO_WORK_ITEM + 1
THIRD_WORK_ITEM = DEMO_WORK_ITEM + 2


@dataclass
class Stack:
    root: Path
    ports: StackPorts
    env: dict[str, str]
    admin_dsn: str
    temporal: ManagedProcess

    def files(self, release_id: str) -> DemoFiles:
        return write_demo_files(
            self.root / release_id, release_id, self.ports.odoo, database_prefix=RUN_PREFIX
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FINRELEASE, *args], env=self.env, capture_output=True, text=True, timeout=120
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_admin_dsn: str) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("e2e-stack")
    ports = StackPorts(**{name: free_port() for name in StackPorts.__dataclass_fields__})
    databases = {
        name: psycopg.conninfo.make_conninfo(pg_admin_dsn, dbname=f"{RUN_PREFIX}odoo_{name}")
        for name in TENANTS
    }
    services: list[ManagedProcess] = [
        temporal_dev_server(root, ports.temporal, ports.ui),
        azurite(root, ports.azurite),
        kubernetes_double(root, ports.kubernetes),
        http_doubles(
            root, ports.doubles, databases, [DEMO_WORK_ITEM, SECOND_WORK_ITEM, THIRD_WORK_ITEM]
        ),
    ]
    env = {**os.environ, **stack_environment(root, ports, pg_admin_dsn)}
    for name in TENANTS:
        env[f"FINRELEASE_SMOKE_{name.upper()}_USER"] = "smoke"
        env[f"FINRELEASE_SMOKE_{name.upper()}_PASSWORD"] = "smoke"
    workers: list[ManagedProcess] = []
    try:
        for service in services:
            service.start(timeout=90)
        workers = start_fleet(root, env)
        yield Stack(root=root, ports=ports, env=env, admin_dsn=pg_admin_dsn, temporal=services[0])
    finally:
        stop_fleet(workers)
        for service in reversed(services):
            service.stop()
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            leftovers = [
                r[0]
                for r in conn.execute(
                    "SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                    (f"{RUN_PREFIX}odoo_",),
                ).fetchall()
            ]
        for name in leftovers:
            drop_database(pg_admin_dsn, name)


def _follow(stack: Stack, release_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        result = stack.cli("status", release_id, "--json")
        if result.returncode == 0:
            status = json.loads(result.stdout)
            if status.get("outcome"):
                return status
        time.sleep(1)
    raise AssertionError(f"no outcome within {timeout}s; last status {status}")


def _start(stack: Stack, release_id: str, work_item: int = DEMO_WORK_ITEM) -> DemoFiles:
    files = stack.files(release_id)
    spec = files.spec.read_text().replace(f"work_item: {DEMO_WORK_ITEM}", f"work_item: {work_item}")
    files.spec.write_text(spec)
    prepare_tenants(files, stack.env, f"http://127.0.0.1:{stack.ports.kubernetes}", entries=500)
    started = stack.cli(
        "start",
        str(files.spec),
        "--inventory",
        str(files.inventory),
        "--policy",
        str(files.policy),
        "--calendars",
        str(files.calendars),
    )
    assert started.returncode == 0, started.stdout + started.stderr
    return files


def test_release_completes_over_three_tenants_through_worker_processes(stack: Stack):
    release_id = f"FIN-E2E-{uuid.uuid4().hex[:6]}"
    _start(stack, release_id)
    for approver, role in (("bob@example.com", "platform"), ("carol@example.com", "finance")):
        approved = stack.cli("approve", release_id, "--as", approver, "--role", role)
        assert approved.returncode == 0, approved.stdout + approved.stderr

    status = _follow(stack, release_id)

    assert status["outcome"] == "Completed", status
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.ports.kubernetes}") as k8s:
        for tenant in TENANTS:
            for deployment in ("odoo-web", "odoo-worker", "odoo-cron"):
                body = k8s.get(
                    f"/apis/apps/v1/namespaces/odoo-{tenant}/deployments/{deployment}"
                ).json()
                containers = {
                    c["name"]: c["image"] for c in body["spec"]["template"]["spec"]["containers"]
                }
                assert containers["odoo"] == NEW_IMAGE, (tenant, deployment)
                annotations = body["spec"]["template"]["metadata"]["annotations"]
                assert annotations["finrelease/release-id"] == release_id
    verified = stack.cli("evidence", "verify", release_id)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with psycopg.connect(stack.admin_dsn) as conn:
        scratch = conn.execute(
            "SELECT datname FROM pg_database WHERE datname ILIKE %s",
            (f"%{release_id.lower().replace('-', '_')}%",),
        ).fetchall()
    assert scratch == []


def test_cli_refusals_exit_3_and_list_finds_the_waiting_release(stack: Stack):
    release_id = f"FIN-E2E-{uuid.uuid4().hex[:6]}"
    _start(stack, release_id, work_item=SECOND_WORK_ITEM)

    own = stack.cli("approve", release_id, "--as", "alice@example.com", "--role", "platform")
    outsider = stack.cli("approve", release_id, "--as", "mallory@example.com", "--role", "finance")
    listed = ""
    for _ in range(30):  # visibility is eventually consistent
        listed = stack.cli("list", "--phase", "AwaitingApproval").stdout
        if release_id in listed:
            break
        time.sleep(0.5)
    rejected = stack.cli(
        "reject",
        release_id,
        "--as",
        "dan@example.com",
        "--role",
        "platform",
        "--comment",
        "not this week",
    )
    final = _follow(stack, release_id, timeout=60)

    assert own.returncode == 3 and "requester" in own.stdout + own.stderr, (own.stderr, final)
    assert outsider.returncode == 3 and "not_member" in outsider.stdout + outsider.stderr
    assert release_id in listed
    assert rejected.returncode == 0, rejected.stdout + rejected.stderr
    assert final["outcome"] == "Rejected"


def test_release_survives_a_temporal_server_restart(stack: Stack):
    """The dev server keeps its state in a SQLite file: stop it mid-release, start it again."""
    release_id = f"FIN-E2E-{uuid.uuid4().hex[:6]}"
    _start(stack, release_id, work_item=THIRD_WORK_ITEM)
    approved = stack.cli("approve", release_id, "--as", "bob@example.com", "--role", "platform")
    assert approved.returncode == 0, approved.stdout + approved.stderr

    assert stack.temporal.stop()
    stack.temporal.start(timeout=90)  # same --db-filename: the release is still there

    waiting = stack.cli("status", release_id, "--json")
    assert waiting.returncode == 0, waiting.stdout + waiting.stderr
    assert json.loads(waiting.stdout)["missing"] == {"finance": 1}
    approved = stack.cli("approve", release_id, "--as", "carol@example.com", "--role", "finance")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert _follow(stack, release_id)["outcome"] == "Completed"
