"""Chaos: the busiest worker SIGKILLed again and again, the Temporal server restarted once.

Issue 20: a killed worker is the machinery's fault, never the work's. The release must end
as if nothing had happened: Completed, each Deployment changed once, each migration applied
once, nothing left behind, the evidence verified. Kills aim at workers with an activity in
flight (observed on the dev server), not at idle ones.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import psycopg
import pytest

from activities.finance_ledger import LEDGER_TABLE
from tests.e2e.stack import CUTOVER_CHANGES, NEW_IMAGE, TENANTS, Stack, database_of, wait_until
from workflows.contracts import QUEUE_OF
from workflows.messages import release_workflow_id, tenant_workflow_id

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

KILLS = 4
WORKER_OF_QUEUE = {queue: queue.removeprefix("finrelease-") for queue in set(QUEUE_OF.values())}


def _in_flight(stack: Stack, release_id: str) -> Counter[str]:
    """Worker name -> activities of this release running on it right now."""
    busy: Counter[str] = Counter()
    workflows = [release_workflow_id(release_id)] + [
        tenant_workflow_id(release_id, t) for t in TENANTS
    ]
    for workflow_id in workflows:
        for name, _attempt in stack.started_activities(workflow_id):
            busy[WORKER_OF_QUEUE[QUEUE_OF[name]]] += 1
    return busy


def _outcome(stack: Stack, release_id: str) -> str:
    result = stack.cli("status", release_id, "--json")
    if result.returncode != 0:
        return ""
    return json.loads(result.stdout).get("outcome", "")


def _ledger(stack: Stack, database: str) -> list[str]:
    with psycopg.connect(stack.tenant_dsn(database)) as conn:
        rows = conn.execute(f"SELECT release_id FROM {LEDGER_TABLE}").fetchall()
    return [row[0] for row in rows]


def test_kills_of_the_busiest_worker_and_a_server_restart_leave_the_release_intact(
    stack: Stack,
):
    release_id = f"FIN-CHAOS-{uuid.uuid4().hex[:6]}"
    files = stack.files(release_id)
    stack.start(files)
    before = stack.deployments()
    for tenant in TENANTS:  # long enough steps that a kill lands in one
        with psycopg.connect(stack.tenant_dsn(database_of(tenant))) as conn:
            conn.execute(
                "CREATE TABLE chaos_padding AS"
                " SELECT g AS id, md5(g::text) AS filler FROM generate_series(1, 300000) g"
            )
            conn.execute("CREATE INDEX ON chaos_padding (filler)")
    stack.approve(release_id)

    kills: list[str] = []
    restarted_server = False
    deadline = time.monotonic() + 600
    while len(kills) < KILLS and time.monotonic() < deadline and not _outcome(stack, release_id):
        busy = _in_flight(stack, release_id)
        if not busy:
            time.sleep(0.3)
            continue
        worker, _ = busy.most_common(1)[0]
        stack.kill_worker(worker)
        stack.restart_worker(worker)
        kills.append(worker)
        if len(kills) == 2 and not restarted_server:
            stack.temporal.stop(grace=5)
            stack.temporal.start(timeout=90)
            restarted_server = True
        time.sleep(3)  # let the retried step get going before the next kill

    status = stack.follow(release_id, timeout=900)

    assert len(kills) >= 3 and restarted_server, (kills, restarted_server)
    assert status["outcome"] == "Completed", (kills, status)
    after = stack.deployments()
    for key, deployment in after.items():
        assert deployment.image == NEW_IMAGE, key
        assert deployment.release == release_id, key
        assert deployment.generation == before[key].generation + CUTOVER_CHANGES, (key, kills)
    for tenant in TENANTS:
        assert _ledger(stack, database_of(tenant)) == [release_id], tenant  # applied once
    assert stack.scratch_databases(release_id) == []
    wait_until(lambda: not _in_flight(stack, release_id), "activities still running")
    verified = stack.cli("evidence", "verify", release_id)
    assert verified.returncode == 0, verified.stdout + verified.stderr
