"""Going back: entries written since the backup are surfaced; a restore keeps what it replaces."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest
from temporalio.testing import ActivityEnvironment

from activities.postgres import short_release_id, sweep_scratch_databases
from devstack.odoo_seed import seed_odoo_database
from tests.integration.conftest import SCRATCH_PREFIX, databases_starting_with, tenant_on
from workflows.contracts import BackupRequest, TenantTask

RELEASE = "rel-2026-restore"


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def databases_like(admin_dsn: str, pattern: str) -> list[str]:
    with psycopg.connect(admin_dsn) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", (pattern,)
        )
        return [row[0] for row in rows]


@pytest.fixture(params=["17.0", "18.0"])
async def request_after_backup(postgres, pg_database, request) -> BackupRequest:
    seed_odoo_database(pg_database.dsn, entries=120, seed=2, version=request.param)
    task = TenantTask(release_id=RELEASE, tenant=tenant_on(pg_database.name))
    backup = await ActivityEnvironment().run(postgres.backup_database, task)
    return BackupRequest(release_id=RELEASE, tenant=task.tenant, backup=backup)


def post_entry(dsn: str, name: str) -> None:
    """What Odoo would write after the backup: a posted, balanced customer invoice."""
    with psycopg.connect(dsn) as conn:
        move = conn.execute(
            """
            INSERT INTO account_move (name, journal_id, company_id, currency_id, date, state,
                                      move_type, sequence_prefix, sequence_number)
            VALUES (%s, 1, 1, 1, '2026-01-05', 'posted', 'out_invoice', 'INV/2026/', 999)
            RETURNING id
            """,
            (name,),
        ).fetchone()[0]
        for account, debit, credit in ((3, 120, 0), (7, 0, 120)):
            conn.execute(
                """
                INSERT INTO account_move_line (move_id, account_id, company_id, journal_id,
                                               currency_id, display_type, name, date,
                                               parent_state, debit, credit, balance)
                VALUES (%s, %s, 1, 1, 1, 'product', 'late invoice', '2026-01-05', 'posted',
                        %s, %s, %s)
                """,
                (move, account, debit, credit, debit - credit),
            )


async def test_entries_written_after_the_backup_are_counted_and_exported(
    postgres, request_after_backup, pg_database, blobs, blob_container
):
    post_entry(pg_database.dsn, "INV/2026/00999")
    post_entry(pg_database.dsn, "INV/2026/01000")

    since = await ActivityEnvironment().run(postgres.entries_since_backup, request_after_backup)

    assert since.count == 2
    blob = blobs.get_blob_client(blob_container.name, f"{RELEASE}/acme/entries-since-backup.jsonl")
    assert since.export_url == blob.url
    lines = (await (await blob.download_blob()).readall()).decode().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["name"] for e in entries] == ["INV/2026/00999", "INV/2026/01000"]
    assert entries[0]["id"] > request_after_backup.backup.max_move_id
    assert [(li["account"], li["debit"], li["credit"]) for li in entries[0]["lines"]] == [
        ("121000", "120", "0"),
        ("400000", "0", "120"),
    ]


async def test_no_entries_since_the_backup_exports_nothing(postgres, request_after_backup):
    since = await ActivityEnvironment().run(postgres.entries_since_backup, request_after_backup)
    assert (since.count, since.export_url) == (0, "")


async def test_restore_swaps_in_the_backup_and_keeps_the_replaced_database(
    postgres, request_after_backup, pg_database
):
    post_entry(pg_database.dsn, "INV/2026/00999")
    holder = psycopg.connect(pg_database.dsn)  # an Odoo worker still connected
    short = short_release_id(RELEASE)
    kept_name = f"{pg_database.name}_failed_{short}"
    try:
        restored = await ActivityEnvironment().run(postgres.restore_database, request_after_backup)

        assert restored.restored_database == pg_database.name
        assert restored.kept_database == kept_name
        with psycopg.connect(pg_database.dsn) as conn:
            assert conn.execute("SELECT max(id) FROM account_move").fetchone()[0] == 120
        kept_dsn = psycopg.conninfo.make_conninfo(pg_database.dsn, dbname=kept_name)
        with psycopg.connect(kept_dsn) as conn:
            assert (
                conn.execute(
                    "SELECT count(*) FROM account_move WHERE name = 'INV/2026/00999'"
                ).fetchone()[0]
                == 1
            )
        assert holder.closed or holder.broken or _connection_dead(holder)
        assert databases_like(pg_database.admin_dsn, f"{pg_database.name}\\_restore\\_%") == []

        again = await ActivityEnvironment().run(postgres.restore_database, request_after_backup)
        assert again == restored
    finally:
        holder.close()
        drop_database(pg_database.admin_dsn, kept_name)


def _connection_dead(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


async def test_sweep_drops_only_scratch_databases_older_than_the_cutoff(pg_admin_dsn):
    old = f"{SCRATCH_PREFIX}_relold_acme_v_1000000000"
    fresh = f"{SCRATCH_PREFIX}_relnew_acme_v_{int(dt.datetime.now(dt.UTC).timestamp())}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        for name in (old, fresh):
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        dropped = await sweep_scratch_databases(pg_admin_dsn, SCRATCH_PREFIX, dt.timedelta(days=1))
        remaining = databases_starting_with(pg_admin_dsn, f"{SCRATCH_PREFIX}_rel")
    finally:
        for name in (old, fresh):
            drop_database(pg_admin_dsn, name)
    assert dropped == [old]
    assert remaining == [fresh]
