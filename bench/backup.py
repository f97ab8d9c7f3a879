"""Backup throughput: the `backup_database` activity against raw `pg_dump` and a user's script.

One seeded Odoo-shaped database, one compression level (the activity's: `-Z1` on
PostgreSQL < 16, `zstd:1` from 16), measured in this order:

    (a) pg_dump -Fc > /dev/null                       the physical limit
    (b) backup_database into Azurite                  in a child: its peak RSS, disk writes
    (c) pg_dump -Fc -f file, then upload the file     what a user would script
    (d) verify_backup                                 restore into scratch + exact row counts
    (e) rehearsal clone: CREATE DATABASE ... TEMPLATE vs a second pg_restore

Every database it creates is named `frbench_<run>_...` and dropped at the end, also on failure.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import re
import resource
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

MB = 1_000_000
MiB = 1 << 20
QUICK_ENTRIES = 150_000  # ~100 MB on disk
FULL_ENTRIES = 1_500_000  # ~1 GB on disk
UPLOAD_CONCURRENCY = 4  # the activity's default staging concurrency: a like-for-like script
SCRATCH_PREFIX = "frbench_scratch"


@dataclass(frozen=True)
class Step:
    """One measured step: wall seconds, and the bytes it moved."""

    label: str
    seconds: float
    note: str = ""


@dataclass
class BackupReport:
    database_bytes: int
    dump_bytes: int
    entries: int
    steps: dict[str, Step] = field(default_factory=dict)
    worker_peak_rss: int = 0
    worker_baseline_rss: int = 0
    worker_disk_writes: int = 0
    script_temp_disk: int = 0

    def mb_per_s(self, key: str, of: str) -> float:
        size = self.database_bytes if of == "database" else self.dump_bytes
        return size / MB / self.steps[key].seconds


def admin_dsn() -> str:
    return os.environ.get("FINRELEASE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_environment(dsn: str, database: str) -> dict[str, str]:
    """The client tools get the server through `PG*` variables, never argv."""
    from activities.pg_server import PgServer

    return PgServer(dsn).environment(database)


def dump_compression() -> list[str]:
    """The activity's compression flag for the installed pg_dump (same level in every step)."""
    version = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"(\d+)", version.stdout)
    major = int(match.group(1)) if match else 0
    return ["--compress=zstd:1"] if major >= 16 else ["-Z1"]


# ------------------------------------------------------------------ databases


def create_database(admin: str, name: str, template: str = "") -> float:
    """CREATE DATABASE (optionally from a template); return the seconds it took."""
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(admin, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(statement)
        return time.perf_counter() - started


def drop_run_databases(admin: str, run: str) -> list[str]:
    """Drop every database of this run (`frbench_<run>_*` and its scratch databases)."""
    dropped = []
    with psycopg.connect(admin, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s OR datname LIKE %s",
            (f"frbench\\_{run}\\_%", f"{SCRATCH_PREFIX}\\_bench{run}%"),
        ).fetchall()
        for (name,) in rows:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            dropped.append(name)
    return dropped


def database_size(admin: str, name: str) -> int:
    with psycopg.connect(admin) as conn:
        row = conn.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
        return int(row[0]) if row else 0


def bench_tenant(database: str) -> Any:
    from governance.inventory import Tenant

    return Tenant(
        name="bench",
        tier="shared",
        namespace="odoo-bench",
        deployments={"web": "odoo-web"},
        db_server="main",
        database=database,
        filestore="bench/filestore",
        url="https://bench.example.com",
        timezone="UTC",
        calendar="default",
    )


# ------------------------------------------------------------------ (b) in a child process


def _disk_writes_of_this_process() -> int:
    """Bytes this process caused to be written to storage (/proc/self/io write_bytes)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def _backup_in_child(
    dsn: str,
    connection_string: str,
    container: str,
    database: str,
    release_id: str,
    reply: multiprocessing.connection.Connection,
) -> None:
    """Run `backup_database` as a worker would; send back time, result, peak RSS and disk writes."""
    try:
        reply.send(
            asyncio.run(_backup_activity(dsn, connection_string, container, database, release_id))
        )
    except BaseException as error:  # the parent re-raises it with the child's message
        reply.send({"error": f"{type(error).__name__}: {error}"})
    finally:
        reply.close()


async def _backup_activity(
    dsn: str, connection_string: str, container: str, database: str, release_id: str
) -> dict[str, Any]:
    from temporalio.testing import ActivityEnvironment

    from activities.azure_storage import blob_service_from_connection_string
    from activities.postgres import PostgresActivities
    from workflows.contracts import TenantTask

    async with blob_service_from_connection_string(connection_string) as blobs:
        activities = PostgresActivities({"main": dsn}, blobs, container=container)
        task = TenantTask(release_id=release_id, tenant=bench_tenant(database))
        baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        writes_before = _disk_writes_of_this_process()
        started = time.perf_counter()
        backup = await ActivityEnvironment().run(activities.backup_database, task)
        seconds = time.perf_counter() - started
        return {
            "seconds": seconds,
            "bytes": backup.bytes,
            "sha256": backup.sha256,
            "backup": backup,
            "baseline_rss": baseline_rss,
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "disk_writes": _disk_writes_of_this_process() - writes_before,
        }


def backup_in_worker_process(
    dsn: str, connection_string: str, container: str, database: str, release_id: str
) -> dict[str, Any]:
    """(b) in a fresh interpreter, so its peak RSS is the worker's and nothing else's."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_backup_in_child,
        args=(dsn, connection_string, container, database, release_id, send),
    )
    child.start()
    send.close()
    try:
        result: dict[str, Any] = receive.recv()
    except EOFError:
        result = {"error": f"backup process died (exit code {child.exitcode})"}
    child.join()
    if "error" in result:
        raise RuntimeError(f"(b) backup_database failed: {result['error']}")
    return result


# ------------------------------------------------------------------ the steps


def timed_command(command: list[str], env: dict[str, str], **kwargs: Any) -> float:
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, stderr=subprocess.PIPE, check=False, **kwargs)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(
            f"{command[0]} failed ({completed.returncode}): {completed.stderr.decode()[-500:]}"
        )
    return seconds


async def upload_file(connection_string: str, container: str, name: str, path: Path) -> float:
    from activities.azure_storage import blob_service_from_connection_string

    async with blob_service_from_connection_string(connection_string) as blobs:
        blob = blobs.get_blob_client(container, name)
        started = time.perf_counter()
        with path.open("rb") as dump:
            await blob.upload_blob(dump, overwrite=True, max_concurrency=UPLOAD_CONCURRENCY)
        return time.perf_counter() - started


async def verify_in_process(
    dsn: str, connection_string: str, container: str, release_id: str, backup: Any
) -> float:
    from temporalio.testing import ActivityEnvironment

    from activities.azure_storage import blob_service_from_connection_string
    from activities.postgres import PostgresActivities
    from workflows.contracts import BackupRequest

    async with blob_service_from_connection_string(connection_string) as blobs:
        activities = PostgresActivities(
            {"main": dsn}, blobs, container=container, scratch_prefix=SCRATCH_PREFIX
        )
        request = BackupRequest(
            release_id=release_id, tenant=bench_tenant(backup.database), backup=backup
        )
        started = time.perf_counter()
        verification = await ActivityEnvironment().run(activities.verify_backup, request)
        seconds = time.perf_counter() - started
    if not verification.verified:
        raise RuntimeError("(d) verify_backup did not verify the backup")
    return seconds


async def ensure_container(connection_string: str, container: str) -> None:
    from activities.azure_storage import blob_service_from_connection_string

    async with blob_service_from_connection_string(connection_string) as blobs:
        await blobs.create_container(container)


def run_backup_bench(quick: bool, entries: int | None = None, say: Any = print) -> BackupReport:
    """Seed, measure (a)-(e), drop everything; the report of what was measured."""
    from activities.azure_storage import azurite_connection_string
    from devstack.odoo_seed import seed_odoo_database
    from devstack.ports import free_port
    from devstack.services import azurite

    entries = entries or (QUICK_ENTRIES if quick else FULL_ENTRIES)
    run = uuid.uuid4().hex[:8]
    admin = admin_dsn()
    source = f"frbench_{run}_src"
    release_id = f"bench{run}"
    container = "backups"
    compression = dump_compression()
    with tempfile.TemporaryDirectory(prefix="frbench-") as temp:
        temp_dir = Path(temp)
        port = free_port()
        storage = azurite(temp_dir, port)
        try:
            storage.start(timeout=60)
            connection_string = azurite_connection_string(port)
            asyncio.run(ensure_container(connection_string, container))
            create_database(admin, source)
            say(f"seeding {entries:,} journal entries into {source} ...")
            started = time.perf_counter()
            seed_odoo_database(
                psycopg.conninfo.make_conninfo(admin, dbname=source), entries=entries, attachments=0
            )
            with psycopg.connect(
                psycopg.conninfo.make_conninfo(admin, dbname=source), autocommit=True
            ) as conn:
                conn.execute("VACUUM ANALYZE")  # hint bits set now, not during the first dump
            size = database_size(admin, source)
            say(f"seeded {size / MB:,.0f} MB in {time.perf_counter() - started:.0f} s")
            report = BackupReport(database_bytes=size, dump_bytes=0, entries=entries)
            env = pg_environment(admin, source)

            say("(a) pg_dump > /dev/null ...")
            seconds = timed_command(
                ["pg_dump", "-Fc", *compression, "--no-password"], env, stdout=subprocess.DEVNULL
            )
            report.steps["a"] = Step("(a) pg_dump -Fc > /dev/null", seconds)

            say("(b) backup_database into Azurite (worker process) ...")
            worker = backup_in_worker_process(
                admin, connection_string, container, source, release_id
            )
            report.dump_bytes = worker["bytes"]
            report.worker_peak_rss = worker["peak_rss"]
            report.worker_baseline_rss = worker["baseline_rss"]
            report.worker_disk_writes = worker["disk_writes"]
            report.steps["b"] = Step("(b) backup_database -> Azurite", worker["seconds"])

            say("(c) pg_dump to a file, then upload it ...")
            dump_file = temp_dir / "script.dump"
            dump_seconds = timed_command(
                ["pg_dump", "-Fc", *compression, "--no-password", "-f", str(dump_file)], env
            )
            report.script_temp_disk = dump_file.stat().st_size
            upload_seconds = asyncio.run(
                upload_file(connection_string, container, f"script/{source}.dump", dump_file)
            )
            report.steps["c"] = Step(
                "(c) pg_dump -f file + upload",
                dump_seconds + upload_seconds,
                f"dump {dump_seconds:.1f} s + upload {upload_seconds:.1f} s",
            )

            say("(d) verify_backup ...")
            seconds = asyncio.run(
                verify_in_process(admin, connection_string, container, release_id, worker["backup"])
            )
            report.steps["d"] = Step("(d) verify_backup (restore + counts)", seconds)

            say("(e) rehearsal clone: TEMPLATE vs pg_restore ...")
            template = f"frbench_{run}_tpl"
            create_database(admin, template)
            restore = [
                "pg_restore",
                "--exit-on-error",
                "--no-password",
                "--no-owner",
                "--no-privileges",
            ]
            timed_command(
                [*restore, "-d", template, str(dump_file)], pg_environment(admin, template)
            )
            clone_seconds = create_database(admin, f"frbench_{run}_clone", template=template)
            report.steps["e1"] = Step("(e) clone: CREATE DATABASE TEMPLATE", clone_seconds)
            second = f"frbench_{run}_restore"
            create_database(admin, second)
            seconds = timed_command(
                [*restore, "-d", second, str(dump_file)], pg_environment(admin, second)
            )
            report.steps["e2"] = Step("(e) clone: second pg_restore", seconds)
            return report
        finally:
            dropped = drop_run_databases(admin, run)
            storage.stop()
            say(f"dropped {', '.join(dropped) or 'nothing'}; Azurite stopped")


# ------------------------------------------------------------------ the table


def backup_tables(report: BackupReport) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """(header, step rows, target rows) for printing."""
    header = ["step", "seconds", "MB/s of db", "MB/s of dump", "note"]
    rows = []
    for key, step in report.steps.items():
        rows.append(
            [
                step.label,
                f"{step.seconds:.2f}",
                f"{report.mb_per_s(key, 'database'):.1f}",
                f"{report.mb_per_s(key, 'dump'):.1f}",
                step.note,
            ]
        )
    a, b, c = (report.steps[k].seconds for k in ("a", "b", "c"))
    e1, e2 = report.steps["e1"].seconds, report.steps["e2"].seconds
    peak = report.worker_peak_rss / MiB
    targets = [
        ["(b)/(a) throughput", f"{a / b:.2f}", ">= 0.80", _met(a / b >= 0.8)],
        ["(c)/(b) time", f"{c / b:.2f}", ">= 1.30", _met(c / b >= 1.3)],
        [
            "worker peak RSS during (b)",
            f"{peak:.0f} MiB (baseline {report.worker_baseline_rss / MiB:.0f})",
            "< 150 MiB",
            _met(peak < 150),
        ],
        [
            "temp disk of (b)",
            f"{report.worker_disk_writes / MiB:.1f} MiB written",
            "0",
            _met(report.worker_disk_writes < MiB),
        ],
        ["temp disk of (c)", f"{report.script_temp_disk / MiB:.0f} MiB", "-", ""],
        ["clone: pg_restore / TEMPLATE", f"{e2 / e1:.1f}x", "-", ""],
    ]
    return header, rows, targets


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_backup_report(report: BackupReport) -> None:
    from rich.console import Console
    from rich.table import Table

    header, rows, targets = backup_tables(report)
    title = (
        f"Backup: {report.entries:,} entries, database {report.database_bytes / MB:,.0f} MB, "
        f"dump {report.dump_bytes / MB:,.0f} MB"
    )
    steps = Table(*header, title=title)
    for row in rows:
        steps.add_row(*row)
    checks = Table("measure", "value", "target", "", title="Backup targets")
    for row in targets:
        checks.add_row(*row)
    console = Console(width=None if Console().is_terminal else 120)
    console.print(steps)
    console.print(checks)
