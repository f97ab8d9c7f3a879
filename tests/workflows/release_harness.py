"""Building releases for the workflow tests: documents, the pinned request, a worker, approvals."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml
from google.protobuf.empty_pb2 import Empty
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker

from devstack.signing import Keyring, signed_bundle, signed_statement, trust_root_text
from governance.bundle import parse_bundle
from governance.release_digest import release_digest
from governance.spec import parse_spec
from tests.workflows.release_doubles import Doubles
from workers.failure_routing import FailureRoutingInterceptor
from workers.keepalive import KeepAliveInterceptor
from workflows.contracts import Activity, MigrationScript
from workflows.lock import TenantLockActivities, lock_workflow_id
from workflows.messages import (
    PinnedText,
    ReleaseRequest,
    ReleaseResult,
    ReleaseStatus,
    SignedBundle,
    SignedStatement,
    release_workflow_id,
)
from workflows.policies import DEFAULT_QUEUES
from workflows.registry import WORKFLOW_RUNNER, WORKFLOWS
from workflows.release import FinanceRelease
from workflows.worker_config import WorkerConfig, WorkerConfigActivities

IMAGE = "acr.example.io/odoo@sha256:" + "a" * 64

POLICY = """
approvers:
  platform: [bob@example.com, dan@example.com]
  finance: [carol@example.com]
  release_manager: [erin@example.com]
  break_glass: [cfo@example.com]
  operator: [operator@example.com]
risk:
  low:       {approvals: {platform: 1}, rehearse: canary}
  medium:    {approvals: {platform: 1, finance: 1}, rehearse: all}
  high:      {approvals: {platform: 1, finance: 1, release_manager: 1}, rehearse: all, promotion: manual}
  emergency: {approvals: {platform: 1, break_glass: 1}, rehearse: canary, freeze_override: true}
approval_timeout: 72h
"""

# the example calendar of ARCHITECTURE.md, verbatim
BERLIN = """
timezone: Europe/Berlin
holidays: [2026-12-25, 2026-12-26, 2027-01-01]
fiscal_year_end_month: 12
month_end_close:   {business_days_before: 2, business_days_after: 3}
quarter_end_close: {business_days_before: 5, business_days_after: 5}
year_end_close:    {business_days_before: 5, business_days_after: 10}
blackouts:
  - {start: 2026-12-20T00:00, end: 2027-01-04T00:00, reason: year-end audit}
deployment_windows:
  - {days: [sat], start: "20:00", end: "24:00"}
  - {days: [sun], start: "00:00", end: "06:00"}
"""

ANYTIME = "timezone: Europe/Berlin\n"

MIGRATION = MigrationScript(
    "migrations/042_fix_tax_tags.sql",
    "UPDATE account_tax SET active = true;",
    hashlib.sha256(b"UPDATE account_tax SET active = true;").hexdigest(),
)

APPROVERS = {
    "platform": "bob@example.com",
    "finance": "carol@example.com",
    "release_manager": "erin@example.com",
    "break_glass": "cfo@example.com",
}
NEEDED = {
    "low": ["platform"],
    "medium": ["platform", "finance"],
    "high": ["platform", "finance", "release_manager"],
    "emergency": ["platform", "break_glass"],
}


def pinned(name: str, text: str) -> PinnedText:
    return PinnedText(name, text, hashlib.sha256(text.encode()).hexdigest())


def inventory_text(tenants: dict[str, tuple[str, str]]) -> str:
    """tenant -> (timezone, calendar name)."""
    items = [
        {
            "name": name,
            "tier": "shared",
            "namespace": f"odoo-{name}",
            "deployments": {"web": f"{name}-web", "worker": f"{name}-worker"},
            "db_server": "main",
            "database": f"odoo_{name}".replace("-", "_"),
            "filestore": f"filestore/{name}",
            "url": f"https://{name}.example.io",
            "timezone": zone,
            "calendar": calendar,
        }
        for name, (zone, calendar) in tenants.items()
    ]
    return yaml.safe_dump({"tenants": items}, sort_keys=False)


# one throwaway key per person for the whole test session; two governance administrators
# sign every bundle, and the test workers trust exactly them
KEYS = Keyring()
TRUST_ROOT = trust_root_text(KEYS)
REQUESTER = "alice@example.com"


def people_of(policy: str) -> list[str]:
    """Everyone the policy names, and the requester: each gets a key in the bundle."""
    roles = yaml.safe_load(policy)["approvers"]
    return sorted({REQUESTER, *(person for members in roles.values() for person in members)})


@dataclass
class Release:
    release_id: str
    request: ReleaseRequest
    spec_sha256: str
    risk: str
    digest: str = ""  # the release digest every statement signs

    def statement(
        self, kind: str, signer: str, now: datetime, comment: str = "", **extra: str
    ) -> SignedStatement:
        """`signer`'s signed statement of `kind` for this release, issued at `now`."""
        return signed_statement(
            KEYS,
            kind,
            release_id=self.release_id,
            digest=self.digest,
            signer=signer,
            now=now,
            comment=comment,
            **extra,
        )


def governance_of(policy: str, inventory: str, calendars: dict[str, str]) -> SignedBundle:
    return signed_bundle(
        KEYS, policy=policy, inventory=inventory, calendars=calendars, people=people_of(policy)
    )


STARTED: dict[str, Release] = {}  # workflow id -> the release `start` started


def release_of(handle: WorkflowHandle) -> Release:
    return STARTED[handle.id]


async def server_now(client: Client) -> datetime:
    """The Temporal server's clock: the time-skipping server's virtual time (it has skipped
    ahead over earlier tests), or real time on a dev server."""
    try:
        answer = await client.test_service.get_current_time(Empty())
    except RPCError:
        return datetime.now(UTC)
    return answer.time.ToDatetime().replace(tzinfo=UTC)


def make_release(
    task_queue: str,
    tenants: list[str] | dict[str, tuple[str, str]] | int = 3,
    *,
    risk: str = "low",
    waves: list[dict] | None = None,
    calendars: dict[str, str] | None = None,
    migrations: bool = True,
    simulated_start: str = "",
    policy_extra: dict[str, list[str]] | None = None,
    **rollout: object,
) -> Release:
    """A release over `tenants` (names, or name -> (zone, calendar)); activities on one queue."""
    if isinstance(tenants, int):
        tenants = [f"t{i}" for i in range(1, tenants + 1)]
    if isinstance(tenants, list):
        tenants = {name: ("Europe/Berlin", "anytime") for name in tenants}
    release_id = f"FIN-{uuid.uuid4().hex[:10]}"
    spec = {
        "release_id": release_id,
        "work_item": 4711,
        "requested_by": "alice@example.com",
        "risk": risk,
        "image": IMAGE,
        "modules": ["account"],
        "migrations": [MIGRATION.name] if migrations else [],
        "tenants": list(tenants),
        "rollout": {
            "waves": waves or [{"name": "all", "size": "100%"}],
            "max_parallel": 10,
            "max_failure_ratio": 0.0,
            "bake": "0s",
            **rollout,
        },
        "smoke": ["health", "login", "trial_balance"],
    }
    spec_text = yaml.safe_dump(spec, sort_keys=False)
    calendars = calendars or {"anytime": ANYTIME}
    policy = POLICY
    for role, members in (policy_extra or {}).items():  # extra members for a role
        old = [line for line in POLICY.splitlines() if line.strip().startswith(f"{role}:")][0]
        listed = old.split("[", 1)[1].rstrip("]").split(", ")
        policy = policy.replace(old, f"  {role}: [{', '.join(listed + members)}]", 1)
    governance = governance_of(policy, inventory_text(tenants), calendars)
    request = ReleaseRequest(
        release_id=release_id,
        spec=pinned("release.yaml", spec_text),
        governance=governance,
        start=SignedStatement("", ""),  # signed by `start`, at the server's time
        migrations=[MIGRATION] if migrations else [],
        simulated_start=simulated_start,
    )
    bundle = parse_bundle(governance.bundle.encode())
    parsed = parse_spec(spec_text, bundle.inventory, bundle.policy, bundle.calendars)
    scripts = [(m.name, m.sql) for m in request.migrations]
    return Release(
        release_id, request, parsed.sha256, risk, release_digest(parsed, scripts, bundle)
    )


@asynccontextmanager
async def worker(
    client: Client, task_queue: str, doubles: Doubles, *, demo_clock: bool = False
) -> AsyncIterator[Worker]:
    """A worker for every workflow and activity of the release on one task queue.

    Its configuration routes every activity to that queue, as a production workflows worker
    routes them to theirs; `demo_clock` is FINRELEASE_DEMO_CLOCK=1 (simulated_start allowed).

    On exit it waits until the tenant lock workflows this test used have closed: a lock
    left running on a queue nobody polls would stop the shared test server from skipping
    time (and would hold the lock id for later tests).
    """
    lock = TenantLockActivities(client)
    config = WorkerConfig({name: task_queue for name in DEFAULT_QUEUES}, demo_clock, TRUST_ROOT)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        workflow_runner=WORKFLOW_RUNNER,
        activities=[
            *doubles.activities(),
            *lock.activities(),
            *WorkerConfigActivities(config).activities(),
        ],
        # as on the real activity workers: the work's failures are counted by the workflow
        interceptors=[KeepAliveInterceptor(), FailureRoutingInterceptor()],
    ) as running:
        yield running
        for tenant in sorted(set(doubles.tenants_called(Activity.READ_RUNNING_STATE))):
            await _until_closed(client.get_workflow_handle(lock_workflow_id(tenant)))


async def _until_closed(handle: WorkflowHandle) -> None:
    for _ in range(200):
        try:
            description = await handle.describe()
        except RPCError:
            return
        if description.status != WorkflowExecutionStatus.RUNNING:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} is still running")


async def start(client: Client, release: Release, task_queue: str) -> WorkflowHandle:
    """Start the release, its start statement signed by the requester now (unless the test
    already put one in the request)."""
    if not release.request.start.statement:
        now = await server_now(client)
        release.request.start = release.statement("start", REQUESTER, now)
    STARTED[release_workflow_id(release.release_id)] = release
    return await client.start_workflow(
        FinanceRelease.run,
        release.request,
        id=release_workflow_id(release.release_id),
        task_queue=task_queue,
        result_type=ReleaseResult,
    )


async def until_approvals_open(handle: WorkflowHandle) -> None:
    """Statements are refused while the release validates its governance; wait it out."""
    await wait_for_status(handle, lambda s: s.phase != "Validating" or bool(s.outcome))


async def approve(
    handle: WorkflowHandle,
    release: Release,
    person: str,
    role: str,
    comment: str = "",
    kind: str = "approve",
) -> object:
    """`person` approves in `role` (kind approve, or retro_approve), signing now."""
    await until_approvals_open(handle)
    now = await server_now(handle._client)
    signed = release.statement(kind, person, now, comment, role=role)
    return await handle.execute_update(FinanceRelease.approve, signed)


async def approve_all(handle: WorkflowHandle, release: Release) -> None:
    for role in NEEDED[release.risk]:
        await approve(handle, release, APPROVERS[role], role)


async def operate(
    handle: WorkflowHandle,
    release: Release,
    action: str,
    operator: str = "operator@example.com",
    reason: str = "",
    **extra: str,
) -> object:
    """`operator` signs and sends pause | resume | promote | abort | decide | resolve."""
    await until_approvals_open(handle)
    now = await server_now(handle._client)
    signed = release.statement(action, operator, now, reason, **extra)
    return await handle.execute_update(getattr(FinanceRelease, action), signed)


async def run_approved(client: Client, release: Release, task_queue: str) -> ReleaseResult:
    handle = await start(client, release, task_queue)
    await approve_all(handle, release)
    return await handle.result()


async def abort_and_wait(handle: WorkflowHandle, reason: str = "test finished") -> ReleaseResult:
    """End a release properly. (Terminating one on the time-skipping server stops its clock
    from skipping for every later test, so tests never terminate.)"""
    await operate(handle, release_of(handle), "abort", reason=reason)
    return await handle.result()


HISTORIES = Path(__file__).resolve().parents[1] / "replay" / "histories"


async def save_history(handle: WorkflowHandle, name: str) -> None:
    """With RECORD_HISTORIES=1, keep this run's history for the replay test."""
    if os.environ.get("RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    HISTORIES.mkdir(parents=True, exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(history.to_json())


async def wait_for_status(
    handle: WorkflowHandle, predicate: Callable[[ReleaseStatus], bool]
) -> ReleaseStatus:
    """Poll the status query in real time (the test server's clock stands still meanwhile)."""
    status = None
    for _ in range(300):
        status = await handle.query(FinanceRelease.status)
        if predicate(status):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"status never matched; last: {status}")
