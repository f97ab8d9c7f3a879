"""The end-to-end stack as tests see it: the CLI, the workers, and what the services hold.

PostgreSQL, Azurite and the Temporal dev server are real; Kubernetes, Azure DevOps, Monitor and
Odoo JSON-RPC are the HTTP doubles of devstack. Tenant databases carry this run's prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client
from temporalio.service import RPCError

from activities.azure_storage import EVIDENCE_CONTAINER, blob_service_from_connection_string
from activities.evidence import evidence_blob_name
from activities.pg_server import scratch_database_name
from devstack.demo_tenants import DemoFiles, prepare_tenants, write_demo_files
from devstack.fleet import start_fleet, stop_fleet
from devstack.ports import free_port
from devstack.process import ManagedProcess
from devstack.services import azurite, http_doubles, kubernetes_double, temporal_dev_server
from devstack.stack import DEMO_WORK_ITEM, StackPorts, stack_environment
from tests.conftest import RUN_PREFIX, drop_database

FINRELEASE = str(Path(sys.executable).parent / "finrelease")
NEW_IMAGE = (
    "acr.example.io/odoo@sha256:4f5c2a9d0e8b7c6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa9988"
)
TENANTS = ("berlin", "newyork", "tokyo")
# A deployed tenant's Deployments each change spec three times, once each: scaled to zero for
# maintenance, the new image, scaled back (workflows/cutover.py). More means a step repeated.
CUTOVER_CHANGES = 3
DEPLOYMENTS = ("odoo-web", "odoo-worker", "odoo-cron")
# A completed release closes its work item, so each release gets its own change request.
WORK_ITEMS = tuple(range(DEMO_WORK_ITEM, DEMO_WORK_ITEM + 12))
SCRATCH_PREFIX = "finrelease_scratch"  # PostgresActivities' default, used by the db worker

T = TypeVar("T")


def database_of(tenant: str) -> str:
    return f"{RUN_PREFIX}odoo_{tenant}"


@contextlib.contextmanager
def running_stack(root: Path, admin_dsn: str) -> Iterator[Stack]:
    """The real services, the HTTP doubles and the five workers under `root`; all stopped
    and this run's tenant databases dropped afterwards (used by the e2e tests and bench)."""
    ports = StackPorts(**{name: free_port() for name in StackPorts.__dataclass_fields__})
    databases = {
        name: psycopg.conninfo.make_conninfo(admin_dsn, dbname=database_of(name))
        for name in TENANTS
    }
    services: list[ManagedProcess] = [
        temporal_dev_server(root, ports.temporal, ports.ui),
        azurite(root, ports.azurite),
        kubernetes_double(root, ports.kubernetes),
        http_doubles(root, ports.doubles, databases, list(WORK_ITEMS)),
    ]
    env = {**os.environ, **stack_environment(root, ports, admin_dsn)}
    for name in TENANTS:
        env[f"FINRELEASE_SMOKE_{name.upper()}_USER"] = "smoke"
        env[f"FINRELEASE_SMOKE_{name.upper()}_PASSWORD"] = "smoke"
    workers: list[ManagedProcess] = []
    try:
        for service in services:
            service.start(timeout=90)
        workers = start_fleet(root, env)
        yield Stack(
            root=root,
            ports=ports,
            env=env,
            admin_dsn=admin_dsn,
            temporal=services[0],
            workers={w.name.removeprefix("worker-"): w for w in workers},
        )
    finally:
        stop_fleet(workers)
        for service in reversed(services):
            service.stop()
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            leftovers = [
                r[0]
                for r in conn.execute(
                    "SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                    (f"{RUN_PREFIX}odoo_",),
                ).fetchall()
            ]
        for name in leftovers:
            drop_database(admin_dsn, name)


@dataclass
class Deployment:
    generation: int
    image: str
    release: str  # the finrelease/release-id annotation of its pod template


@dataclass
class Stack:
    root: Path
    ports: StackPorts
    env: dict[str, str]
    admin_dsn: str
    temporal: ManagedProcess
    workers: dict[str, ManagedProcess]
    _work_items: Iterator[int] = field(default_factory=lambda: iter(WORK_ITEMS))
    _files: dict[str, DemoFiles] = field(default_factory=dict)

    # ------------------------------------------------------------ releases through the CLI

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FINRELEASE, *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def files(self, release_id: str) -> DemoFiles:
        """The demo release, inventory and policy for `release_id`, its own work item."""
        files = write_demo_files(
            self.root / release_id,
            release_id,
            self.ports.odoo,
            database_prefix=RUN_PREFIX,
            root=self.root,
        )
        self._files[release_id] = files
        spec = files.spec.read_text().replace(
            f"work_item: {DEMO_WORK_ITEM}", f"work_item: {next(self._work_items)}"
        )
        files.spec.write_text(spec)
        return files

    def start(self, files: DemoFiles) -> None:
        """Fresh tenants (databases, filestores, deployments), then `finrelease start`."""
        prepare_tenants(files, self.env, self.k8s_url, entries=500)
        started = self.cli(*files.start_arguments())
        assert started.returncode == 0, started.stdout + started.stderr

    def approve(self, release_id: str) -> None:
        for approver, role in (("bob@example.com", "platform"), ("carol@example.com", "finance")):
            approved = self.approve_as(release_id, approver, role)
            assert approved.returncode == 0, approved.stdout + approved.stderr

    def approve_as(
        self, release_id: str, identity: str, role: str, *extra: str, verb: str = "approve"
    ) -> subprocess.CompletedProcess[str]:
        """`finrelease approve` signed with `identity`'s demo key over the release digest."""
        files = self._files[release_id]
        return self.cli(*files.approve_arguments(release_id, identity, role, *extra, verb=verb))

    def key(self, release_id: str, identity: str) -> str:
        return str(self._files[release_id].key(identity))

    def follow(self, release_id: str, timeout: float = 300) -> dict[str, Any]:
        """`finrelease status --json` until the release has an outcome."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            result = self.cli("status", release_id, "--json")
            if result.returncode == 0:
                status = json.loads(result.stdout)
                if status.get("outcome"):
                    return status
            time.sleep(1)
        raise AssertionError(f"no outcome within {timeout}s; last status {status}")

    # ------------------------------------------------------------ Temporal

    def temporal_call(self, call: Callable[[Client], Any]) -> Any:
        """Run `await call(client)` against the dev server (a short-lived connection)."""

        async def go() -> Any:
            client = await Client.connect(self.env["TEMPORAL_ADDRESS"], namespace="default")
            return await call(client)

        return asyncio.run(go())

    def started_activities(self, workflow_id: str) -> list[tuple[str, int]]:
        """(activity type, attempt) of each activity of `workflow_id` running on a worker now."""

        async def pending(client: Client) -> list[tuple[str, int]]:
            described = await client.get_workflow_handle(workflow_id).describe()
            return [
                (p.activity_type.name, p.attempt)
                for p in described.raw_description.pending_activities
                if p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            ]

        try:
            return self.temporal_call(pending)
        except RPCError:  # the workflow does not exist yet: nothing runs
            return []

    def completed_attempts(self, workflow_id: str, activity_type: str) -> list[dict[str, Any]]:
        """For each completed `activity_type` of the workflow: the attempt that completed it
        and the failure of the attempt before (empty on a first attempt)."""

        async def history(client: Client) -> list[dict[str, Any]]:
            events = (await client.get_workflow_handle(workflow_id).fetch_history()).events
            by_id = {event.event_id: event for event in events}
            attempts = []
            for event in events:
                if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                    continue
                done = event.activity_task_completed_event_attributes
                started = by_id[done.started_event_id].activity_task_started_event_attributes
                scheduled = by_id[done.scheduled_event_id]
                name = scheduled.activity_task_scheduled_event_attributes.activity_type.name
                if name == activity_type:
                    failure = started.last_failure
                    attempts.append(
                        {
                            "attempt": started.attempt,
                            "last_failure": failure.message,
                            "timeout": failure.timeout_failure_info.timeout_type,
                        }
                    )
            return attempts

        return self.temporal_call(history)

    # ------------------------------------------------------------ workers

    def kill_worker(self, queue: str) -> None:
        """SIGKILL the worker and the tools it runs (pg_dump...), as when its pod dies."""
        worker = self.workers[queue]
        pid = worker.pid()
        assert pid is not None, f"worker {queue} is not running"
        os.killpg(pid, signal.SIGKILL)
        wait_until(lambda: not _ready(worker), f"worker {queue} still answers after SIGKILL")

    def restart_worker(self, queue: str) -> None:
        self.workers[queue].start(timeout=90)

    # ------------------------------------------------------------ Kubernetes double

    @property
    def k8s_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.kubernetes}"

    def deployments(self) -> dict[tuple[str, str], Deployment]:
        """(tenant, deployment) -> generation, Odoo image and release annotation, read by
        listing (a list is no poll for the double's rollout controller)."""
        found = {}
        with httpx.Client(base_url=self.k8s_url, timeout=10) as k8s:
            for tenant in TENANTS:
                items = k8s.get(f"/apis/apps/v1/namespaces/odoo-{tenant}/deployments").json()
                for body in items["items"]:
                    template = body["spec"]["template"]
                    images = {c["name"]: c["image"] for c in template["spec"]["containers"]}
                    annotations = template.get("metadata", {}).get("annotations") or {}
                    found[(tenant, body["metadata"]["name"])] = Deployment(
                        generation=body["metadata"]["generation"],
                        image=images["odoo"],
                        release=annotations.get("finrelease/release-id", ""),
                    )
        return found

    def hold_answer(self, tenant: str, deployment: str, verb: str = "PATCH") -> None:
        """The next `verb` of the deployment is applied but not answered until released."""
        with httpx.Client(base_url=self.k8s_url, timeout=10) as k8s:
            body = {"namespace": f"odoo-{tenant}", "name": deployment, "verb": verb}
            k8s.post("/_double/holds", json=body).raise_for_status()

    def held_answers(self) -> int:
        with httpx.Client(base_url=self.k8s_url, timeout=10) as k8s:
            return sum(h["waiting"] for h in k8s.get("/_double/holds").json()["holds"])

    def release_answers(self) -> int:
        with httpx.Client(base_url=self.k8s_url, timeout=10) as k8s:
            return int(k8s.delete("/_double/holds").json()["released"])

    # ------------------------------------------------------------ PostgreSQL and Blob Storage

    def tenant_dsn(self, database: str) -> str:
        return psycopg.conninfo.make_conninfo(self.admin_dsn, dbname=database)

    def databases(self) -> set[str]:
        with psycopg.connect(self.admin_dsn) as conn:
            return {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}

    def scratch_databases(self, release_id: str) -> list[str]:
        """The db worker's verify/rehearsal databases of this release still on the server."""
        stem = f"{SCRATCH_PREFIX}_{re.sub(r'[^a-z0-9]+', '', release_id.lower())[:16]}_"
        # the product's own naming must match, or this check would pass on anything
        assert scratch_database_name(SCRATCH_PREFIX, release_id, "t", "v", 0).startswith(stem)
        return sorted(name for name in self.databases() if name.startswith(stem))

    def blob(self, container: str, name: str) -> bytes | None:
        """A committed blob's content (None if there is none)."""
        from azure.core.exceptions import ResourceNotFoundError

        async def read() -> bytes | None:
            connection = self.env["AZURE_STORAGE_CONNECTION_STRING"]
            async with blob_service_from_connection_string(connection) as service:
                try:
                    download = await service.get_blob_client(container, name).download_blob()
                    return bytes(await download.readall())
                except ResourceNotFoundError:
                    return None

        return asyncio.run(read())

    def tenant_evidence(self, release_id: str, tenant: str) -> list[dict[str, Any]]:
        """The entries of the tenant's sealed bundle `evidence/<release_id>/<tenant>.json`."""
        content = self.blob(EVIDENCE_CONTAINER, evidence_blob_name(release_id, tenant))
        assert content is not None, f"no evidence bundle for {tenant} of {release_id}"
        return list(json.loads(content)["entries"])


def wait_until(condition: Callable[[], T], what: str, timeout: float = 180) -> T:
    """Poll `condition` until it is truthy (its value is returned); fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def _ready(worker: ManagedProcess) -> bool:
    try:
        return bool(worker.ready())
    except Exception:  # noqa: BLE001
        return False
