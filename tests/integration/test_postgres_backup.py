"""Backups stream from pg_dump into Blob Storage, verify against their snapshot, retry safely."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import stat
import threading

import psutil
import psycopg
import pytest
from azure.core.exceptions import ResourceNotFoundError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from activities.postgres import PostgresActivities
from devstack.odoo_seed import seed_odoo_database
from tests.integration.conftest import scratch_databases, tenant_on
from workflows.contracts import BackupRequest, ErrorType, TenantTask

MiB = 1 << 20


@pytest.mark.parametrize("version", ["17.0", "18.0"])
async def test_backup_restores_into_scratch_with_identical_row_counts(
    postgres, pg_database, blobs, blob_container, version
):
    summary = seed_odoo_database(pg_database.dsn, entries=500, version=version)
    with psycopg.connect(pg_database.dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()[0]
    task = TenantTask(release_id="rel-2026-001", tenant=tenant_on(pg_database.name))
    heartbeats: list[object] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.extend(details)

    backup = await env.run(postgres.backup_database, task)
    verification = await ActivityEnvironment().run(
        postgres.verify_backup,
        BackupRequest(release_id=task.release_id, tenant=task.tenant, backup=backup),
    )

    assert backup.blob_name == f"rel-2026-001/acme/{pg_database.name}.dump"
    assert heartbeats and heartbeats[-1] == backup.bytes  # bytes so far, ending at the total
    assert backup.row_counts["account_move"] == 500
    assert backup.row_counts["account_move_line"] == summary.lines
    assert backup.max_move_id == summary.max_move_id
    assert verification.verified and verification.sha256 == backup.sha256
    assert verification.tables_compared == len(backup.row_counts) == tables > 7
    assert verification.rows_compared == sum(backup.row_counts.values())
    assert scratch_databases(pg_database.admin_dsn) == []


async def test_sha256_in_blob_metadata_equals_a_fresh_hash_of_the_blob(
    postgres, pg_database, blobs, blob_container
):
    seed_odoo_database(pg_database.dsn, entries=300)
    backup = await ActivityEnvironment().run(
        postgres.backup_database,
        TenantTask(release_id="rel-sha", tenant=tenant_on(pg_database.name)),
    )

    blob = blobs.get_blob_client(blob_container.name, backup.blob_name)
    content = await (await blob.download_blob()).readall()
    properties = await blob.get_blob_properties()
    assert properties.metadata["sha256"] == hashlib.sha256(content).hexdigest() == backup.sha256
    assert int(properties.metadata["bytes"]) == len(content) == backup.bytes
    assert content.startswith(b"PGDMP")  # custom format


async def test_killed_pg_dump_commits_no_blob_and_the_retry_succeeds(
    postgres, pg_database, blobs, blob_container
):
    seed_odoo_database(pg_database.dsn, entries=20_000)
    task = TenantTask(release_id="rel-kill", tenant=tenant_on(pg_database.name))
    killed: list[int] = []

    def kill_pg_dump(*details: object) -> None:
        for child in psutil.Process().children(recursive=True):
            try:  # a short-lived child (e.g. `pg_dump --version`) may be gone already
                if child.name() == "pg_dump" and not killed:
                    killed.append(child.pid)
                    child.kill()
            except psutil.NoSuchProcess:
                continue

    env = ActivityEnvironment()
    env.on_heartbeat = kill_pg_dump
    with pytest.raises(ApplicationError, match="pg_dump exited"):
        await env.run(postgres.backup_database, task)

    blob = blobs.get_blob_client(blob_container.name, f"rel-kill/acme/{pg_database.name}.dump")
    assert killed
    with pytest.raises(ResourceNotFoundError):
        await blob.get_blob_properties()
    backup = await ActivityEnvironment().run(postgres.backup_database, task)
    assert backup.row_counts["account_move"] == 20_000
    assert (await blob.get_blob_properties()).metadata["sha256"] == backup.sha256


async def test_sha256_of_a_backup_in_large_blocks_equals_a_fresh_hash_of_the_blob(
    pg_admin_dsn, pg_database, blobs, blob_container
):
    # 1 MiB blocks are read by the pipe reader thread and hashed off the event loop.
    postgres = PostgresActivities(
        {"main": pg_admin_dsn}, blobs, container=blob_container.name, block_size=MiB
    )
    seed_odoo_database(pg_database.dsn, entries=40_000, attachments=0)
    backup = await ActivityEnvironment().run(
        postgres.backup_database,
        TenantTask(release_id="rel-large-blocks", tenant=tenant_on(pg_database.name)),
    )

    blob = blobs.get_blob_client(blob_container.name, backup.blob_name)
    content = await (await blob.download_blob()).readall()
    blocks = (await blob.get_block_list())[0]
    assert len(blocks) >= 3 and all(block.size == MiB for block in blocks[:-1])
    assert hashlib.sha256(content).hexdigest() == backup.sha256
    assert len(content) == backup.bytes == sum(block.size for block in blocks)


async def test_cancelled_backup_stops_pg_dump_commits_nothing_and_closes_its_pipe(
    postgres, pg_database, blobs, blob_container
):
    seed_odoo_database(pg_database.dsn, entries=20_000)
    task = TenantTask(release_id="rel-cancel-dump", tenant=tenant_on(pg_database.name))
    pipes_before = open_pipes()
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: env.cancel()

    with pytest.raises(BaseException) as stopped:
        await env.run(postgres.backup_database, task)

    assert isinstance(stopped.value, asyncio.CancelledError | CancelledError)
    assert not [c for c in psutil.Process().children(recursive=True) if c.name() == "pg_dump"]
    assert open_pipes() == pipes_before
    for reader in [t for t in threading.enumerate() if t.name.startswith("pipe-reader")]:
        reader.join(timeout=10)
        assert not reader.is_alive(), "the pipe reader thread outlived the backup"
    blob = blobs.get_blob_client(
        blob_container.name, f"rel-cancel-dump/acme/{pg_database.name}.dump"
    )
    with pytest.raises(ResourceNotFoundError):
        await blob.get_blob_properties()


def open_pipes() -> list[str]:
    """The pipes this process holds open (`pipe:[inode]`)."""
    pipes = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the fd listdir itself used
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("pipe:"):
                pipes.append(target)
    return sorted(pipes)


async def test_second_backup_of_a_release_returns_the_committed_blob(
    postgres, pg_database, blobs, blob_container
):
    seed_odoo_database(pg_database.dsn, entries=200)
    task = TenantTask(release_id="rel-twice", tenant=tenant_on(pg_database.name))
    first = await ActivityEnvironment().run(postgres.backup_database, task)
    blob = blobs.get_blob_client(blob_container.name, first.blob_name)
    etag = (await blob.get_blob_properties()).etag
    with psycopg.connect(pg_database.dsn) as conn:  # a dump now would differ
        conn.execute("DELETE FROM ir_cron")

    second = await ActivityEnvironment().run(postgres.backup_database, task)

    assert second == first
    assert (await blob.get_blob_properties()).etag == etag


async def test_verify_names_the_table_whose_row_is_missing_from_the_restore(postgres, pg_database):
    seed_odoo_database(pg_database.dsn, entries=100)
    task = TenantTask(release_id="rel-missing", tenant=tenant_on(pg_database.name))
    backup = await ActivityEnvironment().run(postgres.backup_database, task)
    recorded = backup.row_counts["account_move_line"]
    # As if a row went missing between dump time and restore: the restore has one row fewer.
    claimed = dataclasses.replace(
        backup, row_counts={**backup.row_counts, "account_move_line": recorded + 1}
    )

    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(
            postgres.verify_backup,
            BackupRequest(release_id=task.release_id, tenant=task.tenant, backup=claimed),
        )

    assert failure.value.type == ErrorType.BACKUP_VERIFICATION_FAILED
    assert failure.value.non_retryable
    assert f"table account_move_line: recorded {recorded + 1} rows, restored {recorded}" in str(
        failure.value
    )
    assert scratch_databases(pg_database.admin_dsn) == []


async def test_verify_rejects_a_blob_whose_sha256_differs_from_the_record(postgres, pg_database):
    seed_odoo_database(pg_database.dsn, entries=50)
    task = TenantTask(release_id="rel-sha-bad", tenant=tenant_on(pg_database.name))
    backup = await ActivityEnvironment().run(postgres.backup_database, task)
    claimed = dataclasses.replace(backup, sha256="0" * 64)

    with pytest.raises(ApplicationError, match="has sha256") as failure:
        await ActivityEnvironment().run(
            postgres.verify_backup,
            BackupRequest(release_id=task.release_id, tenant=task.tenant, backup=claimed),
        )
    assert failure.value.type == ErrorType.BACKUP_VERIFICATION_FAILED
    assert scratch_databases(pg_database.admin_dsn) == []


async def test_pg_dump_older_than_the_server_is_a_non_retryable_error(
    pg_admin_dsn, blobs, blob_container, pg_database, tmp_path
):
    fake = tmp_path / "pg_dump"
    fake.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    postgres = PostgresActivities(
        {"main": pg_admin_dsn}, blobs, container=blob_container.name, pg_bin_dir=str(tmp_path)
    )

    with pytest.raises(ApplicationError, match="pg_dump 9 cannot dump server") as failure:
        await ActivityEnvironment().run(
            postgres.backup_database,
            TenantTask(release_id="rel-old", tenant=tenant_on(pg_database.name)),
        )
    assert failure.value.type == ErrorType.TOOL_VERSION and failure.value.non_retryable


async def test_missing_server_dsn_names_the_environment_variable(
    blobs, blob_container, monkeypatch
):
    monkeypatch.delenv("FINRELEASE_PG_NOWHERE_DSN", raising=False)
    postgres = PostgresActivities.from_environment(blobs)
    tenant = dataclasses.replace(tenant_on("odoo"), db_server="nowhere")

    with pytest.raises(ApplicationError, match="FINRELEASE_PG_NOWHERE_DSN") as failure:
        await ActivityEnvironment().run(
            postgres.finance_snapshot, TenantTask(release_id="r", tenant=tenant)
        )
    assert failure.value.type == ErrorType.CONFIGURATION_MISSING


async def test_backup_streams_a_large_database_with_bounded_memory(postgres, pg_database):
    entries = int(os.environ.get("FINRELEASE_TEST_BACKUP_ENTRIES", "300000"))  # ~200 MB on disk
    seed_odoo_database(pg_database.dsn, entries=entries, attachments=0)
    with psycopg.connect(pg_database.dsn) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = baseline
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        backup = await ActivityEnvironment().run(
            postgres.backup_database,
            TenantTask(release_id="rel-big", tenant=tenant_on(pg_database.name)),
        )
    finally:
        done.set()
        await sampler

    assert backup.row_counts["account_move"] == entries
    assert backup.bytes > 10 * MiB
    growth = peak - baseline
    assert growth < 100 * MiB, f"RSS grew {growth // MiB} MB backing up {size // MiB} MB"


async def test_credentials_reach_pg_dump_only_through_its_environment(
    pg_admin_dsn, blobs, blob_container, pg_database
):
    secret = "s3cret-never-in-argv"
    dsn = psycopg.conninfo.make_conninfo(pg_admin_dsn, password=secret)  # trust auth ignores it
    postgres = PostgresActivities(
        {"main": dsn}, blobs, container=blob_container.name, block_size=64 * 1024
    )
    seed_odoo_database(pg_database.dsn, entries=10_000)
    seen: list[tuple[list[str], dict[str, str]]] = []

    def inspect_pg_dump(*details: object) -> None:
        for child in psutil.Process().children(recursive=True):
            if child.name() == "pg_dump" and not seen:
                seen.append((child.cmdline(), child.environ()))

    env = ActivityEnvironment()
    env.on_heartbeat = inspect_pg_dump
    backup = await env.run(
        postgres.backup_database,
        TenantTask(release_id="rel-cred", tenant=tenant_on(pg_database.name)),
    )

    assert seen, "pg_dump was not seen running"
    argv, environment = seen[0]
    assert not any(secret in arg or "host=" in arg or "postgresql://" in arg for arg in argv)
    assert environment["PGPASSWORD"] == secret
    assert environment["PGDATABASE"] == pg_database.name
    assert secret not in repr(backup)


async def test_cancelled_verification_still_drops_its_scratch_database(postgres, pg_database):
    seed_odoo_database(pg_database.dsn, entries=20_000)
    task = TenantTask(release_id="rel-cancel", tenant=tenant_on(pg_database.name))
    backup = await ActivityEnvironment().run(postgres.backup_database, task)
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: env.cancel()

    with pytest.raises(BaseException) as stopped:
        await env.run(
            postgres.verify_backup,
            BackupRequest(release_id=task.release_id, tenant=task.tenant, backup=backup),
        )

    assert isinstance(stopped.value, asyncio.CancelledError | CancelledError)
    assert scratch_databases(pg_database.admin_dsn) == []
