"""The cutover on a real PostgreSQL: Odoo's role is shut out while finrelease works, the
restore point is exact and single, the swap back loses nothing, reopening restores the ACL."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.pg_cutover import replaced_name, restore_point_name
from devstack.odoo_seed import seed_odoo_database
from tests import conftest as shared
from tests.integration.conftest import tenant_on
from tests.integration.odoo_poster import Poster
from workflows.contracts import CutoverRequest, ErrorType, MigrationRequest, MigrationScript

RELEASE = "rel-2026-cutover"


@dataclass(frozen=True)
class OdooDatabase:
    name: str
    role: str
    odoo_dsn: str  # as the Odoo role (no superuser), as Odoo itself connects
    admin_dsn: str


@pytest.fixture
def odoo_db(pg_admin_dsn: str) -> Iterator[OdooDatabase]:
    """A seeded tenant database owned by a non-superuser Odoo role, as Odoo creates them."""
    name = shared.test_database_name("cut")
    role = f"{shared.RUN_PREFIX}odoo_{name[-6:]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
    odoo_dsn = psycopg.conninfo.make_conninfo(pg_admin_dsn, dbname=name, user=role)
    seed_odoo_database(odoo_dsn, entries=40, seed=5)
    try:
        yield OdooDatabase(name, role, odoo_dsn, pg_admin_dsn)
    finally:
        for db in (name, restore_point_name(name, RELEASE), replaced_name(name, RELEASE)):
            with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def request(db: OdooDatabase, grace: float = 0.5) -> CutoverRequest:
    return CutoverRequest(RELEASE, tenant_on(db.name), grace_seconds=grace)


def acl(admin_dsn: str, database: str) -> list[tuple[str, str]]:
    with psycopg.connect(admin_dsn) as conn:
        rows = conn.execute(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, "
            "a.privilege_type FROM pg_database d, "
            "aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a "
            "WHERE d.datname = %s ORDER BY 1, 2",
            (database,),
        )
        return [(r[0], r[1]) for r in rows]


def moves(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM account_move")}


def can_connect(dsn: str) -> bool:
    try:
        psycopg.connect(dsn, connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


def admin_on(db: OdooDatabase, database: str) -> str:
    return psycopg.conninfo.make_conninfo(db.admin_dsn, dbname=database)


async def test_closed_database_refuses_the_odoo_role_and_reopens_with_the_same_acl(
    postgres, odoo_db
):
    env = ActivityEnvironment()
    before = acl(odoo_db.admin_dsn, odoo_db.name)
    with Poster(odoo_db.odoo_dsn) as poster:
        poster.wait_for(5)
        closed = await env.run(postgres.close_database, request(odoo_db))
        landed = moves(admin_on(odoo_db, odoo_db.name))
        refused_so_far = len(poster.refusals)
        await asyncio.sleep(0.6)  # the poster keeps trying while the database is closed
        assert moves(admin_on(odoo_db, odoo_db.name)) == landed  # not one write got in
        assert len(poster.refusals) > refused_so_far
        assert "CONNECT privilege" in poster.refusals[-1] or "permission" in poster.refusals[-1]
        assert not can_connect(odoo_db.odoo_dsn)
        assert can_connect(admin_on(odoo_db, odoo_db.name))  # finrelease still gets in
        assert set(closed.revoked_from) == {"PUBLIC", odoo_db.role}
        assert closed.terminated == 1  # the poster's open connection, after the grace period

        again = await env.run(postgres.close_database, request(odoo_db))
        assert again.revoked_from == closed.revoked_from  # a retry remembers the first

        reopened = await env.run(postgres.reopen_database, request(odoo_db))
        assert sorted(reopened.granted_to) == sorted(closed.revoked_from)
        poster.wait_for(len(poster.committed) + 3)
    assert acl(odoo_db.admin_dsn, odoo_db.name) == before
    assert set(poster.committed) <= moves(admin_on(odoo_db, odoo_db.name))
    assert (await env.run(postgres.reopen_database, request(odoo_db))).granted_to == []


async def test_an_idle_odoo_session_gets_the_grace_period_then_is_terminated(postgres, odoo_db):
    idle = psycopg.connect(odoo_db.odoo_dsn)
    try:
        started = time.monotonic()
        closed = await ActivityEnvironment().run(postgres.close_database, request(odoo_db, 1.0))
        assert time.monotonic() - started >= 1.0
        assert closed.terminated == 1
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
    finally:
        idle.close()


async def test_a_session_that_ends_within_the_grace_period_is_not_terminated(postgres, odoo_db):
    short = psycopg.connect(odoo_db.odoo_dsn)
    env = ActivityEnvironment()
    threading.Timer(0.3, short.close).start()
    closed = await env.run(postgres.close_database, request(odoo_db, 5.0))
    assert closed.terminated == 0


async def test_negative_grace_is_refused_before_anything_changes(postgres, odoo_db):
    before = acl(odoo_db.admin_dsn, odoo_db.name)
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(postgres.close_database, request(odoo_db, -1))
    assert failure.value.type == ErrorType.INVALID_RELEASE and failure.value.non_retryable
    assert "grace_seconds" in failure.value.message
    assert acl(odoo_db.admin_dsn, odoo_db.name) == before


async def test_restore_point_is_taken_once_and_never_accepts_connections(postgres, odoo_db):
    env = ActivityEnvironment()
    await env.run(postgres.close_database, request(odoo_db))
    first = await env.run(postgres.take_restore_point, request(odoo_db))
    second = await env.run(postgres.take_restore_point, request(odoo_db))
    assert (first.reused, second.reused) == (False, True)
    assert first.name == second.name == restore_point_name(odoo_db.name, RELEASE)
    with psycopg.connect(odoo_db.admin_dsn) as conn:
        rows = conn.execute(
            "SELECT datname, datallowconn, pg_get_userbyid(datdba) FROM pg_database "
            "WHERE starts_with(datname, %s)",
            (f"{odoo_db.name}_",),
        ).fetchall()
    assert rows == [(first.name, False, odoo_db.role)]
    assert not can_connect(admin_on(odoo_db, first.name))  # not even a superuser


async def test_rollback_before_reopen_swaps_back_by_rename_with_zero_lost_rows(postgres, odoo_db):
    env = ActivityEnvironment()
    before_acl = acl(odoo_db.admin_dsn, odoo_db.name)
    finrelease = admin_on(odoo_db, odoo_db.name)
    migration = "ALTER TABLE account_move ADD COLUMN release_marker int; UPDATE account_move SET release_marker = 1;"
    script = MigrationScript(
        "001_marker.sql", migration, hashlib.sha256(migration.encode()).hexdigest()
    )
    with Poster(odoo_db.odoo_dsn) as poster:
        poster.wait_for(10)
        await env.run(postgres.close_database, request(odoo_db))
        committed_before_maintenance = list(poster.committed)
        point = await env.run(postgres.take_restore_point, request(odoo_db))
        await env.run(
            postgres.migrate_database, MigrationRequest(RELEASE, tenant_on(odoo_db.name), [script])
        )
        swapped = await env.run(postgres.swap_to_restore_point, request(odoo_db))
        swapped_again = await env.run(postgres.swap_to_restore_point, request(odoo_db))
        assert swapped == swapped_again
        assert not can_connect(odoo_db.odoo_dsn)  # the swapped-in copy is still closed
        await env.run(postgres.reopen_database, request(odoo_db))
        poster.wait_for(len(poster.committed) + 3)
    kept = replaced_name(odoo_db.name, RELEASE)
    assert swapped.kept_database == kept
    assert set(committed_before_maintenance) <= moves(finrelease)
    assert set(poster.committed) <= moves(finrelease)  # also what came after reopening
    with psycopg.connect(finrelease) as conn:
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'account_move' AND column_name = 'release_marker'"
        ).fetchall()
    assert columns == []  # the migrated schema is gone
    with psycopg.connect(odoo_db.admin_dsn) as conn:
        names = dict(
            conn.execute(
                "SELECT datname, datallowconn FROM pg_database WHERE starts_with(datname, %s)",
                (odoo_db.name,),
            ).fetchall()
        )
    assert names == {odoo_db.name: True, kept: False}  # the restore point became the tenant
    assert point.name not in names
    assert acl(odoo_db.admin_dsn, odoo_db.name) == before_acl


async def test_a_swap_interrupted_after_the_first_rename_is_finished(postgres, odoo_db):
    env = ActivityEnvironment()
    await env.run(postgres.close_database, request(odoo_db))
    await env.run(postgres.take_restore_point, request(odoo_db))
    with psycopg.connect(odoo_db.admin_dsn, autocommit=True) as admin:  # the crash left this
        admin.execute(
            f'ALTER DATABASE "{odoo_db.name}" RENAME TO "{replaced_name(odoo_db.name, RELEASE)}"'
        )
    await env.run(postgres.swap_to_restore_point, request(odoo_db))
    await env.run(postgres.reopen_database, request(odoo_db))
    assert can_connect(odoo_db.odoo_dsn)


async def test_swap_without_a_restore_point_is_refused_and_touches_nothing(postgres, odoo_db):
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(postgres.swap_to_restore_point, request(odoo_db))
    assert failure.value.type == ErrorType.NOT_FOUND and failure.value.non_retryable
    assert can_connect(odoo_db.odoo_dsn)


async def test_writes_since_reopening_are_found_in_every_table_they_touched(postgres, odoo_db):
    env = ActivityEnvironment()
    await env.run(postgres.take_write_watermark, request(odoo_db))
    with Poster(odoo_db.odoo_dsn, prefix="LATE/2026/") as poster:
        poster.wait_for(4)
        await env.run(postgres.close_database, request(odoo_db, 0.0))  # back in maintenance
    written = await env.run(postgres.writes_since_reopen, request(odoo_db))
    entries = len(poster.committed)
    assert written.known
    assert written.tables == ["public.account_move_line", "public.account_move"]
    # every committed entry is one move and two lines; a refused attempt wrote nothing, an
    # attempt cut by the termination may have been counted (aborted writes count: safe side)
    assert 3 * entries <= written.rows <= 3 * (entries + 1)


async def test_no_write_since_reopening_is_known_and_a_stats_reset_is_not(postgres, odoo_db):
    env = ActivityEnvironment()
    with psycopg.connect(odoo_db.odoo_dsn) as conn:  # before the watermark: not counted
        conn.execute("UPDATE account_move SET ref = 'before' WHERE id = 1")
    await asyncio.sleep(1.2)  # past PGSTAT_MIN_INTERVAL: that write is flushed
    await env.run(postgres.take_write_watermark, request(odoo_db))
    await env.run(postgres.take_write_watermark, request(odoo_db))  # a retry keeps the first
    quiet = await env.run(postgres.writes_since_reopen, request(odoo_db))
    assert (quiet.known, quiet.rows, quiet.tables) == (True, 0, [])
    with psycopg.connect(admin_on(odoo_db, odoo_db.name)) as conn:
        conn.execute("SELECT pg_stat_reset()")
    reset = await env.run(postgres.writes_since_reopen, request(odoo_db))
    assert not reset.known


async def test_a_database_owned_by_finrelease_itself_is_swapped_and_reopened(postgres, pg_database):
    """When finrelease's role owns the database (a small setup), it never locks itself out."""
    seed_odoo_database(pg_database.dsn, entries=5, seed=1)
    tenant_request = CutoverRequest(RELEASE, tenant_on(pg_database.name), grace_seconds=0.1)
    env = ActivityEnvironment()
    before = acl(pg_database.admin_dsn, pg_database.name)
    try:
        closed = await env.run(postgres.close_database, tenant_request)
        assert closed.revoked_from == ["PUBLIC"]
        await env.run(postgres.take_restore_point, tenant_request)
        await env.run(postgres.swap_to_restore_point, tenant_request)
        await env.run(postgres.reopen_database, tenant_request)
        assert acl(pg_database.admin_dsn, pg_database.name) == before
    finally:
        with psycopg.connect(pg_database.admin_dsn, autocommit=True) as admin:
            for name in (
                restore_point_name(pg_database.name, RELEASE),
                replaced_name(pg_database.name, RELEASE),
            ):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_restore_point_committed_by_a_dead_attempt_is_reused(
    postgres, odoo_db, monkeypatch
):
    """The first attempt's CREATE DATABASE finished in its backend after its worker died: the
    retry's own CREATE then finds the name taken, and reuses that copy instead of failing."""
    env = ActivityEnvironment()
    await env.run(postgres.close_database, request(odoo_db))
    await env.run(postgres.take_restore_point, request(odoo_db))

    async def looks_absent(*_: object) -> set[str]:  # the retry checked before that commit
        return set()

    monkeypatch.setattr("activities.pg_cutover.existing_databases", looks_absent)
    again = await env.run(postgres.take_restore_point, request(odoo_db))
    assert again.reused and again.name == restore_point_name(odoo_db.name, RELEASE)


async def test_dropping_the_restore_point_leaves_the_tenant_and_can_be_repeated(postgres, odoo_db):
    env = ActivityEnvironment()
    await env.run(postgres.close_database, request(odoo_db))
    point = await env.run(postgres.take_restore_point, request(odoo_db))
    await env.run(postgres.reopen_database, request(odoo_db))
    await env.run(postgres.drop_restore_point, request(odoo_db))
    await env.run(postgres.drop_restore_point, request(odoo_db))  # a retry: nothing left to drop
    with psycopg.connect(odoo_db.admin_dsn) as conn:
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (odoo_db.name,)
        ).fetchall()
    assert left == [(odoo_db.name,)] and point.name != odoo_db.name
    assert can_connect(odoo_db.odoo_dsn)
