"""Backup throughput: the `backup_database` activity against raw `pg_dump` and a user's script.

One seeded Odoo-shaped database, one compression level (the activity's: `-Z1` on
PostgreSQL < 16, `zstd:1` from 16), measured in this order:

    (a)  pg_dump -Fc > /dev/null                       the physical limit
    (b)  backup_database into Azurite                  in a child: its peak RSS, disk writes
    (b0) backup_database into a null sink              the same child, blocks hashed and dropped
    (c)  pg_dump -Fc -f file, then upload the file     what a user would script
    (d)  verify_backup                                 restore into scratch + exact row counts
    (e)  rehearsal clone: CREATE DATABASE ... TEMPLATE vs a second pg_restore

(a), (b), (b0) and (c) run `rounds` times, interleaved (a b b0 c a b b0 c ...), and the table
shows each one's median: on a shared machine the neighbours' load moves during a run, and
interleaving exposes every step to it alike. Each of them also reports the CPU seconds of
pg_dump, of the Python side (worker or script) and of Azurite, which is what bounds them when
the cores are shared. (b0) is (b) without the storage emulator: the difference between them
is Azurite's, not ours.

Every database it creates is named `frbench_<run>_...` and dropped at the end, also on failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import re
import resource
import statistics
import subprocess
import tempfile
import threading
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
ROUNDS = 3  # runs of (a), (b), (b0) and (c), interleaved; the table shows medians
CPU_OF = ("pg_dump", "postgres", "python", "azurite")
FULL_ENTRIES = 1_500_000  # ~1 GB on disk
UPLOAD_CONCURRENCY = 4  # the activity's default staging concurrency: a like-for-like script
SCRATCH_PREFIX = "frbench_scratch"


@dataclass(frozen=True)
class Run:
    """One run of a step: wall seconds, and CPU seconds of each process that took part.

    pg_dump, the PostgreSQL backend serving it, the Python side (worker or script), Azurite.
    """

    seconds: float
    pg_dump_cpu: float = 0.0
    postgres_cpu: float = 0.0
    python_cpu: float = 0.0
    azurite_cpu: float = 0.0


@dataclass(frozen=True)
class Step:
    """One measured step: its runs; the table shows their medians."""

    label: str
    runs: tuple[Run, ...]
    note: str = ""

    @property
    def seconds(self) -> float:
        return statistics.median(run.seconds for run in self.runs)

    def cpu(self, what: str) -> float:
        return statistics.median(getattr(run, f"{what}_cpu") for run in self.runs)


@dataclass
class BackupReport:
    database_bytes: int
    dump_bytes: int
    entries: int
    rounds: int = 1
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
            (f"frbench\\_{run}\\_%", f"{SCRATCH_PREFIX}\\_{run}%"),
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


# ------------------------------------------------------------------ CPU accounting


def cpu_of_pid(pid: int | None) -> float:
    """CPU seconds (user + system) a running process has used so far; 0 if it is gone."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(who: int) -> float:
    """CPU seconds of this process (`RUSAGE_SELF`) or of its waited-for children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class BackendCpu:
    """CPU seconds of the local PostgreSQL backends connected to `database` during a `with`.

    Sampled from /proc every `interval` (a backend's last moments before it exits are missed);
    0 when the server runs elsewhere.
    """

    def __init__(self, database: str, interval: float = 0.1) -> None:
        self._marker = f" {database} "
        self._interval = interval
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self.seconds = 0.0

    def __enter__(self) -> BackendCpu:
        self._first = self._backends()  # connected before: count from now
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sampler.join()
        self._record(self._backends())
        self.seconds = sum(cpu - self._first.get(pid, 0.0) for pid, cpu in self._last.items())

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self._record(self._backends())

    def _record(self, backends: dict[int, float]) -> None:
        self._last.update(backends)

    def _backends(self) -> dict[int, float]:
        found = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                command = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if command.startswith(b"postgres: ") and self._marker.encode() in command:
                found[int(entry.name)] = cpu_of_pid(int(entry.name))
        return found


# ------------------------------------------------------------------ (b) in a child process


class NullBlob:
    """Stands in for a BlobClient in (b0): nothing committed before, staged blocks dropped."""

    def __init__(self, name: str) -> None:
        self.blob_name = name
        self.url = f"null:///{name}"

    async def get_blob_properties(self) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        raise ResourceNotFoundError(f"{self.blob_name} (null sink)")

    async def stage_block(self, block_id: str, data: bytes, length: int | None = None) -> None:
        return None

    async def commit_block_list(self, blocks: Any, **kwargs: Any) -> None:
        return None

    async def upload_blob(self, data: Any, **kwargs: Any) -> None:
        return None


class NullBlobService:
    """A BlobServiceClient whose blobs are `NullBlob`s: (b) minus the storage service."""

    def get_blob_client(self, container: str, name: str) -> NullBlob:
        return NullBlob(name)


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
    null_sink: bool,
    reply: multiprocessing.connection.Connection,
) -> None:
    """Run `backup_database` as a worker would; send back time, result, peak RSS, disk, CPU."""
    try:
        reply.send(
            asyncio.run(
                _backup_activity(dsn, connection_string, container, database, release_id, null_sink)
            )
        )
    except BaseException as error:  # the parent re-raises it with the child's message
        reply.send({"error": f"{type(error).__name__}: {error}"})
    finally:
        reply.close()


async def _backup_activity(
    dsn: str,
    connection_string: str,
    container: str,
    database: str,
    release_id: str,
    null_sink: bool,
) -> dict[str, Any]:
    from temporalio.testing import ActivityEnvironment

    from activities.azure_storage import blob_service_from_connection_string
    from activities.postgres import PostgresActivities
    from workflows.contracts import TenantTask

    async with blob_service_from_connection_string(connection_string) as blobs:
        sink: Any = NullBlobService() if null_sink else blobs
        activities = PostgresActivities({"main": dsn}, sink, container=container)
        task = TenantTask(release_id=release_id, tenant=bench_tenant(database))
        baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        writes_before = _disk_writes_of_this_process()
        cpu_before = cpu_of(resource.RUSAGE_SELF), cpu_of(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        backup = await ActivityEnvironment().run(activities.backup_database, task)
        seconds = time.perf_counter() - started
        return {
            "seconds": seconds,
            "python_cpu": cpu_of(resource.RUSAGE_SELF) - cpu_before[0],
            "pg_dump_cpu": cpu_of(resource.RUSAGE_CHILDREN) - cpu_before[1],
            "bytes": backup.bytes,
            "sha256": backup.sha256,
            "backup": backup,
            "baseline_rss": baseline_rss,
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "disk_writes": _disk_writes_of_this_process() - writes_before,
        }


def backup_in_worker_process(
    dsn: str,
    connection_string: str,
    container: str,
    database: str,
    release_id: str,
    null_sink: bool = False,
) -> dict[str, Any]:
    """(b) in a fresh interpreter, so its peak RSS is the worker's and nothing else's."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_backup_in_child,
        args=(dsn, connection_string, container, database, release_id, null_sink, send),
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
    return measured_command(command, env, **kwargs).seconds


def measured_command(command: list[str], env: dict[str, str], **kwargs: Any) -> Run:
    """Run a client tool; its wall seconds and CPU seconds."""
    cpu_before = cpu_of(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, stderr=subprocess.PIPE, check=False, **kwargs)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(
            f"{command[0]} failed ({completed.returncode}): {completed.stderr.decode()[-500:]}"
        )
    return Run(seconds, pg_dump_cpu=cpu_of(resource.RUSAGE_CHILDREN) - cpu_before)


async def upload_file(
    connection_string: str, container: str, name: str, path: Path
) -> tuple[float, float]:
    """Upload the dump file as a user's script would: (wall seconds, this process's CPU seconds)."""
    from activities.azure_storage import blob_service_from_connection_string

    async with blob_service_from_connection_string(connection_string) as blobs:
        blob = blobs.get_blob_client(container, name)
        cpu_before = cpu_of(resource.RUSAGE_SELF)
        started = time.perf_counter()
        with path.open("rb") as dump:
            await blob.upload_blob(dump, overwrite=True, max_concurrency=UPLOAD_CONCURRENCY)
        return time.perf_counter() - started, cpu_of(resource.RUSAGE_SELF) - cpu_before


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


def run_backup_bench(
    quick: bool, entries: int | None = None, say: Any = print, rounds: int = ROUNDS
) -> BackupReport:
    """Seed, measure (a)-(e), drop everything; the report of what was measured."""
    from activities.azure_storage import azurite_connection_string
    from devstack.odoo_seed import seed_odoo_database
    from devstack.ports import free_port
    from devstack.services import azurite

    entries = entries or (QUICK_ENTRIES if quick else FULL_ENTRIES)
    run = uuid.uuid4().hex[:8]
    admin = admin_dsn()
    source = f"frbench_{run}_src"
    container = "backups"
    compression = dump_compression()
    with tempfile.TemporaryDirectory(prefix="frbench-") as temp:
        temp_dir = Path(temp)
        port = free_port()
        storage = azurite(temp_dir, port)
        try:
            storage.start(timeout=60)
            azurite_pid = storage.pid()
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
                conn.execute("CHECKPOINT")  # the seed's dirty pages written now, not during (a)
            size = database_size(admin, source)
            say(f"seeded {size / MB:,.0f} MB in {time.perf_counter() - started:.0f} s")
            report = BackupReport(
                database_bytes=size, dump_bytes=0, entries=entries, rounds=max(rounds, 1)
            )
            env = pg_environment(admin, source)
            runs: dict[str, list[Run]] = {"a": [], "b": [], "b0": [], "c": []}
            script_parts: list[tuple[float, float]] = []
            backup: Any = None
            dump_file = temp_dir / "script.dump"

            def dump_to_null() -> Run:
                with BackendCpu(source) as backend:
                    dumped = measured_command(
                        ["pg_dump", "-Fc", *compression, "--no-password"],
                        env,
                        stdout=subprocess.DEVNULL,
                    )
                return dataclasses.replace(dumped, postgres_cpu=backend.seconds)

            def backup_activity(release_id: str, null_sink: bool) -> Run:
                azurite_before = cpu_of_pid(azurite_pid)
                with BackendCpu(source) as backend:
                    worker = backup_in_worker_process(
                        admin, connection_string, container, source, release_id, null_sink
                    )
                if not null_sink:
                    nonlocal backup
                    backup = worker["backup"]
                    report.dump_bytes = worker["bytes"]
                    report.worker_peak_rss = max(report.worker_peak_rss, worker["peak_rss"])
                    report.worker_baseline_rss = max(
                        report.worker_baseline_rss, worker["baseline_rss"]
                    )
                    report.worker_disk_writes = max(
                        report.worker_disk_writes, worker["disk_writes"]
                    )
                return Run(
                    worker["seconds"],
                    pg_dump_cpu=worker["pg_dump_cpu"],
                    postgres_cpu=backend.seconds,
                    python_cpu=worker["python_cpu"],
                    azurite_cpu=cpu_of_pid(azurite_pid) - azurite_before,
                )

            def dump_then_upload(n: int) -> Run:
                dump_file.unlink(missing_ok=True)
                with BackendCpu(source) as backend:
                    dumped = measured_command(
                        ["pg_dump", "-Fc", *compression, "--no-password", "-f", str(dump_file)],
                        env,
                    )
                report.script_temp_disk = dump_file.stat().st_size
                azurite_before = cpu_of_pid(azurite_pid)
                upload_seconds, upload_cpu = asyncio.run(
                    upload_file(
                        connection_string, container, f"script/{source}-{n}.dump", dump_file
                    )
                )
                script_parts.append((dumped.seconds, upload_seconds))
                return Run(
                    dumped.seconds + upload_seconds,
                    pg_dump_cpu=dumped.pg_dump_cpu,
                    postgres_cpu=backend.seconds,
                    python_cpu=upload_cpu,
                    azurite_cpu=cpu_of_pid(azurite_pid) - azurite_before,
                )

            for n in range(1, report.rounds + 1):
                say(f"round {n}/{report.rounds}")
                for key, measure in (
                    ("a", lambda _: dump_to_null()),
                    ("b", lambda n: backup_activity(f"{run}-b{n}", null_sink=False)),
                    ("b0", lambda n: backup_activity(f"{run}-n{n}", null_sink=True)),
                    ("c", dump_then_upload),
                ):
                    measured = measure(n)
                    runs[key].append(measured)
                    say(f"  ({key}) {measured.seconds:.2f} s")
            report.steps["a"] = Step("(a) pg_dump -Fc > /dev/null", tuple(runs["a"]))
            report.steps["b"] = Step("(b) backup_database -> Azurite", tuple(runs["b"]))
            report.steps["b0"] = Step(
                "(b0) backup_database -> null sink",
                tuple(runs["b0"]),
                "blocks hashed, then dropped",
            )
            dump_median = statistics.median(dump for dump, _ in script_parts)
            upload_median = statistics.median(upload for _, upload in script_parts)
            report.steps["c"] = Step(
                "(c) pg_dump -f file + upload",
                tuple(runs["c"]),
                f"dump {dump_median:.1f} s + upload {upload_median:.1f} s",
            )

            say("(d) verify_backup ...")
            seconds = asyncio.run(
                verify_in_process(admin, connection_string, container, f"{run}-v", backup)
            )
            report.steps["d"] = Step("(d) verify_backup (restore + counts)", (Run(seconds),))

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
            report.steps["e1"] = Step("(e) clone: CREATE DATABASE TEMPLATE", (Run(clone_seconds),))
            second = f"frbench_{run}_restore"
            create_database(admin, second)
            seconds = timed_command(
                [*restore, "-d", second, str(dump_file)], pg_environment(admin, second)
            )
            report.steps["e2"] = Step("(e) clone: second pg_restore", (Run(seconds),))
            return report
        finally:
            dropped = drop_run_databases(admin, run)
            storage.stop()
            say(f"dropped {', '.join(dropped) or 'nothing'}; Azurite stopped")


# ------------------------------------------------------------------ the table


def backup_tables(report: BackupReport) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """(header, step rows, target rows) for printing."""
    header = [
        "step",
        "seconds",
        "min-max",
        "MB/s of db",
        "MB/s of dump",
        "CPU s pg_dump",
        "CPU s backend",
        "CPU s Python",
        "CPU s Azurite",
        "note",
    ]
    rows = []
    for key, step in report.steps.items():
        times = [run.seconds for run in step.runs]
        measured_cpu = len(step.runs) > 1 or step.cpu("pg_dump") > 0
        rows.append(
            [
                step.label,
                f"{step.seconds:.2f}",
                f"{min(times):.2f}-{max(times):.2f}" if len(times) > 1 else "",
                f"{report.mb_per_s(key, 'database'):.1f}",
                f"{report.mb_per_s(key, 'dump'):.1f}",
                *(f"{step.cpu(what):.2f}" if measured_cpu else "" for what in CPU_OF),
                step.note,
            ]
        )
    a, b, b0, c = (report.steps[k].seconds for k in ("a", "b", "b0", "c"))
    paired = ", ".join(
        f"{ra.seconds / rb.seconds:.2f}"
        for ra, rb in zip(report.steps["a"].runs, report.steps["b"].runs, strict=True)
    )
    e1, e2 = report.steps["e1"].seconds, report.steps["e2"].seconds
    peak = report.worker_peak_rss / MiB
    targets = [
        ["(b)/(a) throughput, medians", f"{a / b:.2f}", ">= 0.80", _met(a / b >= 0.8)],
        ["(b)/(a) in each round", paired, "", ""],
        ["(c)/(b) time, medians", f"{c / b:.2f}", ">= 1.30", _met(c / b >= 1.3)],
        ["(b0)/(a): our streaming without storage", f"{a / b0:.2f}", "-", ""],
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
        [
            "temp disk of (c)",
            f"{report.script_temp_disk / MiB:.0f} MiB (the dump; (b) staged {report.dump_bytes / MiB:.0f} MiB)",
            "-",
            "",
        ],
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
        f"dump {report.dump_bytes / MB:,.0f} MB; (a)-(c): median of {report.rounds} "
        "interleaved rounds"
    )
    steps = Table(*header, title=title)
    for row in rows:
        steps.add_row(*row)
    checks = Table("measure", "value", "target", "", title="Backup targets")
    for row in targets:
        checks.add_row(*row)
    console = Console(width=None if Console().is_terminal else 160)
    console.print(steps)
    console.print(checks)
