"""Chaos: one release fault-free, then the same release while workers are SIGKILLed every
5-15 s (over all five workers, the busiest first) and the Temporal server is restarted once.

Runs on the e2e stack (`tests/e2e/stack.py`: real Temporal dev server, PostgreSQL, Azurite,
the five worker processes; the HTTP doubles for Kubernetes, Odoo, Azure DevOps and Monitor),
over its three demo tenants, each padded so that its steps take seconds. Prints, per run:
the outcome, wall time, kills, and the retried attempts per step (read from the histories).
"""

from __future__ import annotations

import json
import random
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.orchestration import _use_test_doubles

PADDING_ROWS = 300_000
KILLS = 20
SEED = 20


@dataclass
class ChaosRun:
    label: str
    outcome: str = ""
    wall_seconds: float = 0.0
    kills: Counter[str] = field(default_factory=Counter)
    server_restarts: int = 0
    retries: Counter[str] = field(default_factory=Counter)  # activity type -> attempts > 1
    deployments_changed_once: bool = False
    evidence_verified: bool = False


def run_chaos_bench(kills: int = KILLS) -> list[ChaosRun]:
    """The fault-free run, then the chaos run, on one stack."""
    _use_test_doubles()
    from devstack.paths import state_dir
    from devstack.services import ensure_postgres
    from tests.e2e.stack import running_stack

    admin_dsn = ensure_postgres(state_dir()).dsn
    with tempfile.TemporaryDirectory(prefix="finrelease-chaos-") as root:
        with running_stack(Path(root), admin_dsn) as stack:
            return [_release(stack, "fault-free", 0), _release(stack, "chaos", kills)]


def _release(stack: Any, label: str, kills: int) -> ChaosRun:
    from tests.e2e.stack import CUTOVER_CHANGES, NEW_IMAGE, TENANTS, database_of
    from workflows.contracts import QUEUE_OF
    from workflows.messages import release_workflow_id, tenant_workflow_id

    run = ChaosRun(label)
    release_id = f"FIN-BENCH-{uuid.uuid4().hex[:6]}"
    files = stack.files(release_id)
    stack.start(files)
    before = stack.deployments()
    for tenant in TENANTS:
        with psycopg.connect(stack.tenant_dsn(database_of(tenant))) as conn:
            conn.execute(
                "CREATE TABLE bench_padding AS SELECT g AS id, md5(g::text) AS filler"
                f" FROM generate_series(1, {PADDING_ROWS}) g"
            )
            conn.execute("CREATE INDEX ON bench_padding (filler)")
    workflows = [release_workflow_id(release_id)] + [
        tenant_workflow_id(release_id, t) for t in TENANTS
    ]
    worker_of = {name: queue.removeprefix("finrelease-") for name, queue in QUEUE_OF.items()}
    chance = random.Random(SEED)
    started = time.monotonic()
    stack.approve(release_id)
    next_kill = started + chance.uniform(5, 15)
    while True:
        status = stack.cli("status", release_id, "--json")
        if status.returncode == 0 and json.loads(status.stdout).get("outcome"):
            break
        if sum(run.kills.values()) < kills and time.monotonic() >= next_kill:
            busy: Counter[str] = Counter()
            for workflow_id in workflows:
                for name, _ in stack.started_activities(workflow_id):
                    busy[worker_of[name]] += 1
            victim = busy.most_common(1)[0][0] if busy else chance.choice(sorted(stack.workers))
            stack.kill_worker(victim)
            stack.restart_worker(victim)
            run.kills[victim] += 1
            if sum(run.kills.values()) == kills // 2 and not run.server_restarts:
                stack.temporal.stop(grace=5)
                stack.temporal.start(timeout=90)
                run.server_restarts += 1
            next_kill = time.monotonic() + chance.uniform(5, 15)
        time.sleep(0.5)
    run.wall_seconds = time.monotonic() - started
    final = stack.follow(release_id, timeout=60)
    run.outcome = final["outcome"]
    after = stack.deployments()
    run.deployments_changed_once = all(
        after[key].image == NEW_IMAGE
        and after[key].generation == before[key].generation + CUTOVER_CHANGES
        for key in after
    )
    run.evidence_verified = stack.cli("evidence", "verify", release_id).returncode == 0
    for workflow_id in workflows:
        run.retries.update(_retried_attempts(stack, workflow_id))
    return run


def _retried_attempts(stack: Any, workflow_id: str) -> Counter[str]:
    from temporalio.api.enums.v1 import EventType

    async def history(client: Any) -> Counter[str]:
        events = (await client.get_workflow_handle(workflow_id).fetch_history()).events
        scheduled = {
            e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
            for e in events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        }
        retried: Counter[str] = Counter()
        for e in events:
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                attributes = e.activity_task_started_event_attributes
                if attributes.attempt > 1:
                    retried[scheduled[attributes.scheduled_event_id]] += attributes.attempt - 1
        return retried

    return stack.temporal_call(history)


def print_chaos_report(runs: list[ChaosRun]) -> None:
    base = runs[0].wall_seconds or 1.0
    print(
        "| run | outcome | wall s | × fault-free | kills | server restarts |"
        " each Deployment changed once | evidence verified | retried attempts per step |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        kills = ", ".join(f"{w} {n}" for w, n in sorted(run.kills.items())) or "0"
        retries = ", ".join(f"{a} {n}" for a, n in sorted(run.retries.items())) or "none"
        print(
            f"| {run.label} | {run.outcome} | {run.wall_seconds:.0f} |"
            f" {run.wall_seconds / base:.2f} | {sum(run.kills.values())} ({kills}) |"
            f" {run.server_restarts} | {run.deployments_changed_once} |"
            f" {run.evidence_verified} | {retries} |"
        )
