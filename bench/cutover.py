"""Cutover bench: database downtime of one tenant and rollback time, rename vs pg_restore.

`python -m bench cutover [--quick | --entries N]` seeds an Odoo-shaped database, then runs
the database side of the cutover with the real activities (`ActivityEnvironment`):
close -> restore point -> migration -> reopen (downtime), and close -> restore point ->
migration -> swap back by rename (rollback), against a `pg_restore` of a `pg_dump -Fc` of
the same database into a new one. Kubernetes scaling is not in these numbers (the API is
a double here); on AKS add the time the pods take to stop and start.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from temporalio.testing import ActivityEnvironment

from bench.backup import (
    FULL_ENTRIES,
    QUICK_ENTRIES,
    admin_dsn,
    bench_tenant,
    database_size,
    drop_run_databases,
    pg_environment,
)

MB = 1_000_000
# a migration with real work in it: an index over every journal item
MIGRATION = "CREATE INDEX bench_aml_name ON account_move_line (name, date);"


@dataclass
class CutoverTimes:
    entries: int
    database_bytes: int
    close: float
    restore_point: float
    migration: float
    reopen: float
    swap: float
    pg_restore: float

    @property
    def downtime(self) -> float:
        return self.close + self.restore_point + self.migration + self.reopen

    @property
    def overhead(self) -> float:
        return self.downtime - self.migration


def run_cutover_bench(quick: bool, entries: int | None = None, say: Any = print) -> CutoverTimes:
    from devstack.odoo_seed import seed_odoo_database

    admin = admin_dsn()
    run = uuid.uuid4().hex[:6]
    database = f"frbench_{run}_tenant"
    entries = entries or (QUICK_ENTRIES if quick else FULL_ENTRIES)
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        say(f"seeding {entries:,} journal entries into {database} ...")
        dsn = psycopg.conninfo.make_conninfo(admin, dbname=database)
        seed_odoo_database(dsn, entries=entries, attachments=0)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")
        size = database_size(admin, database)
        say(f"database {size / MB:,.0f} MB; dumping it for the pg_restore comparison ...")
        with tempfile.TemporaryDirectory() as scratch:
            dump = os.path.join(scratch, "tenant.dump")
            env = pg_environment(admin, database)
            subprocess.run(["pg_dump", "-Fc", "-Z1", "-f", dump], env=env, check=True)
            times = asyncio.run(_cutover(admin, database, run))
            restored = f"frbench_{run}_restored"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(restored)))
            started = time.perf_counter()
            subprocess.run(
                ["pg_restore", "--exit-on-error", "-d", restored, dump],
                env=pg_environment(admin, restored),
                check=True,
            )
            pg_restore = time.perf_counter() - started
        return CutoverTimes(entries, size, *times, pg_restore=pg_restore)
    finally:
        drop_run_databases(admin, run)


async def _cutover(admin: str, database: str, run: str) -> tuple[float, ...]:
    from activities.postgres import PostgresActivities
    from workflows.contracts import CutoverRequest, MigrationRequest, MigrationScript

    # the cutover activities use no blob storage
    activities = PostgresActivities({"main": admin}, None)  # type: ignore[arg-type]
    env = ActivityEnvironment()
    tenant = bench_tenant(database)
    request = CutoverRequest(f"bench-{run}", tenant, grace_seconds=0.0)
    script = MigrationScript("bench.sql", MIGRATION, hashlib.sha256(MIGRATION.encode()).hexdigest())
    migrate = MigrationRequest(request.release_id, tenant, [script])

    async def timed(activity: Any, arg: Any) -> float:
        started = time.perf_counter()
        await env.run(activity, arg)
        return time.perf_counter() - started

    close = await timed(activities.close_database, request)
    point = await timed(activities.take_restore_point, request)
    migration = await timed(activities.migrate_database, migrate)
    reopen = await timed(activities.reopen_database, request)
    # rollback before reopening: the same tenant closed again, the restore point swapped in
    await timed(activities.close_database, request)
    swap = await timed(activities.swap_to_restore_point, request)
    await timed(activities.reopen_database, request)
    return close, point, migration, reopen, swap


def print_cutover_report(times: CutoverTimes) -> None:
    print(
        f"\nCutover: {times.entries:,} entries, database {times.database_bytes / MB:,.0f} MB "
        "(database side only; Kubernetes scaling not included)\n"
    )
    rows = [
        ("close (REVOKE CONNECT, drain, grace 0 s)", times.close),
        ("restore point (CREATE DATABASE ... TEMPLATE, FILE_COPY)", times.restore_point),
        ("migration (CREATE INDEX on account_move_line)", times.migration),
        ("reopen (GRANT CONNECT back)", times.reopen),
        ("downtime = close + restore point + migration + reopen", times.downtime),
        ("overhead = downtime - migration", times.overhead),
        ("rollback: swap back by rename", times.swap),
        ("rollback the old way: pg_restore of a -Fc dump", times.pg_restore),
    ]
    print("| step | seconds |\n|---|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.2f} |")
    goal = 15 + 0.1 * times.migration
    print(f"\noverhead goal <= 15 s + 10 % of the migration = {goal:.2f} s: ", end="")
    print("met" if times.overhead <= goal else "NOT met")
