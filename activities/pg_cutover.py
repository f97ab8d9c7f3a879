"""The tenant database side of a cutover: close it to Odoo, keep an exact restore point,
swap back by rename, reopen.

Why REVOKE CONNECT and not the other switches PostgreSQL has:
- `ALLOW_CONNECTIONS false` refuses *everyone*, finrelease included ("If false then no one
  can connect to this database", ALTER DATABASE docs), so the migration could not run.
- `CONNECTION LIMIT 0` is not enforced for superusers only (postinit.c CheckMyDatabase
  skips it for `am_superuser`): on Azure Flexible Server the admin role is no superuser,
  so it would lock finrelease out too.
- `REVOKE CONNECT` is checked when a session starts (CheckMyDatabase ->
  `object_aclcheck(... ACL_CONNECT)`, "User does not have CONNECT privilege"); the owner's
  own CONNECT must be revoked as well (a NULL datacl means `acldefault('d', owner)`, which
  grants it), and finrelease's role gets an explicit grant, so only finrelease gets in.
  Existing sessions are not affected by a REVOKE: they are waited for, then terminated.

The CONNECT grants taken away are stored in `finrelease_cutover` inside the tenant
database, in the same transaction as the REVOKE: a retried close finds them and a reopen
gives back exactly those, also on a restore point swapped in (it was copied while closed).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import psycopg
import structlog
from psycopg import sql
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.pg_server import (
    PgServer,
    checked_name,
    database_owner,
    existing_databases,
    non_retryable,
    rename_database,
    short_release_id,
)
from workflows.contracts import ErrorType

log = structlog.get_logger(__name__)

CUTOVER_TABLE = "finrelease_cutover"
_DDL = f"""
CREATE TABLE IF NOT EXISTS {CUTOVER_TABLE} (
    release_id varchar PRIMARY KEY,
    revoked jsonb NOT NULL,
    granted_self boolean NOT NULL,
    closed_at timestamptz NOT NULL DEFAULT now()
)
"""
# who holds CONNECT on a database: a NULL datacl stands for the built-in default
_CONNECT_GRANTEES = """
SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
WHERE d.datname = %s AND a.privilege_type = 'CONNECT'
ORDER BY 1
"""
# client sessions on a database other than this role's own
_OTHER_SESSIONS = """
SELECT pid FROM pg_stat_activity
WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'
  AND usename IS DISTINCT FROM current_user
"""
_POLL_SECONDS = 0.2


def restore_point_name(database: str, release_id: str) -> str:
    return checked_name(f"{database}_rp_{short_release_id(release_id)}", "restore point")


def replaced_name(database: str, release_id: str) -> str:
    """Where the migrated database goes when the restore point is swapped in."""
    return checked_name(f"{database}_migrated_{short_release_id(release_id)}", "kept database")


def _role(name: str) -> sql.Composable:
    return sql.SQL("PUBLIC") if name == "PUBLIC" else sql.Identifier(name)


async def _rows(conn: psycopg.AsyncConnection[Any], query: Any, params: Any) -> list[Any]:
    return [row[0] for row in await (await conn.execute(query, params)).fetchall()]


async def close_to_others(server: PgServer, release_id: str, database: str) -> list[str]:
    """REVOKE CONNECT from everyone but finrelease's role; return who lost it (idempotent)."""
    db = sql.Identifier(database)
    async with await server.connect(database) as conn, conn.transaction():
        await conn.execute(_DDL)
        query = f"SELECT revoked FROM {CUTOVER_TABLE} WHERE release_id = %s"
        recorded = await _rows(conn, query, (release_id,))
        me = await _rows(conn, "SELECT current_user", None)
        holders = await _rows(conn, _CONNECT_GRANTEES, (database,))
        if recorded:  # a retry: the first attempt's record is the truth
            revoked = list(recorded[0])
        else:
            revoked = [role for role in holders if role != me[0]]
            await conn.execute(
                f"INSERT INTO {CUTOVER_TABLE} (release_id, revoked, granted_self) "
                "VALUES (%s, %s, %s)",
                (release_id, json.dumps(revoked), me[0] not in holders),
            )
        await conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO CURRENT_USER").format(db))
        for role in revoked:
            await conn.execute(
                sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(db, _role(role))
            )
        left = [r for r in await _rows(conn, _CONNECT_GRANTEES, (database,)) if r != me[0]]
        if left:  # granted by another grantor: our REVOKE does not reach it; change nothing
            raise non_retryable(
                f"database {database}: CONNECT of {left} was granted by a role other than the "
                "owner and cannot be revoked by finrelease; revoke it by hand",
                ErrorType.CONFIGURATION_MISSING,
            )
    return revoked


async def drain(server: PgServer, database: str, grace_seconds: float) -> int:
    """Wait for other sessions to end; after `grace_seconds` terminate them. Returns how many."""
    deadline = time.monotonic() + grace_seconds
    terminated = 0
    async with await server.admin() as admin:
        while pids := await _rows(admin, _OTHER_SESSIONS, (database,)):
            activity.heartbeat({"sessions": len(pids)})
            if time.monotonic() >= deadline:
                kill = (
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM unnest(%s) pid"
                )
                terminated += (await _rows(admin, kill, (pids,)))[0]
            await asyncio.sleep(_POLL_SECONDS)
    return terminated


async def take_restore_point(server: PgServer, release_id: str, database: str) -> tuple[str, bool]:
    """`CREATE DATABASE <db>_rp_<id> TEMPLATE <db>`, never accepting connections; reused if there."""
    name = restore_point_name(database, release_id)
    async with await server.admin() as admin:
        if await existing_databases(admin, name):
            return name, True
        owner = await database_owner(admin, database)
        if owner is None:
            raise non_retryable(f"database {database} does not exist", ErrorType.NOT_FOUND)
        # ALLOW_CONNECTIONS false from birth: nobody, not even a superuser, can write to it.
        # STRATEGY FILE_COPY (PG >= 15) copies files instead of WAL-logging every block; before
        # 15 it was the only way. Owner kept so a swap gives Odoo its own database back.
        strategy = " STRATEGY FILE_COPY" if admin.info.server_version >= 150000 else ""
        create = sql.SQL(
            "CREATE DATABASE {} TEMPLATE {} OWNER {} ALLOW_CONNECTIONS false" + strategy
        ).format(sql.Identifier(name), sql.Identifier(database), sql.Identifier(owner))
        # CREATE DATABASE ... TEMPLATE fails while anyone is connected to the template ("source
        # database is being accessed by other users"): only finrelease can be, and only briefly
        try:
            await _retry_in_use(admin, database, lambda: admin.execute(create))
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            # the attempt whose worker died kept running in its backend (PostgreSQL notices
            # a gone client only when it next talks to it) and committed first: that copy
            # was taken from the same closed database, so it is the restore point
            return name, True
    return name, False


async def swap_in_restore_point(server: PgServer, release_id: str, database: str) -> str:
    """Rename the tenant database away and the restore point into its place; return the
    replaced name. Resumes a half-done swap; the swapped-in copy stays closed to Odoo."""
    point = restore_point_name(database, release_id)
    replaced = replaced_name(database, release_id)
    async with await server.admin() as admin:
        names = await existing_databases(admin, database, point, replaced)
        if point in names and database in names:
            allow = sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false")
            await admin.execute(allow.format(sql.Identifier(database)))
            # ALTER DATABASE RENAME needs no session on that database ("database is being
            # accessed by other users"): terminate finrelease's own leftovers and retry
            await _retry_in_use(admin, database, lambda: rename_database(admin, database, replaced))
            names = {point, replaced}
        if point in names and replaced in names:
            await rename_database(admin, point, database)
        elif not (database in names and replaced in names):
            raise non_retryable(
                f"database {database}: no restore point {point} to swap in",
                ErrorType.NOT_FOUND,
            )
        # a restore point is born with the default ACL (owner and PUBLIC may connect): close
        # it to Odoo before it accepts anyone; reopen gives back what the cutover recorded
        db, owner = sql.Identifier(database), await database_owner(admin, database)
        assert owner is not None  # it exists: it was just renamed or found
        await admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO CURRENT_USER").format(db))
        me = (await _rows(admin, "SELECT current_user", None))[0]
        others = [sql.SQL("PUBLIC")] + ([sql.Identifier(owner)] if owner != me else [])
        revoke = sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}")
        await admin.execute(revoke.format(db, sql.SQL(", ").join(others)))
        await admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(db))
    return replaced


async def reopen(server: PgServer, release_id: str, database: str) -> list[str]:
    """Give CONNECT back to the roles the close recorded; nothing to do when already open."""
    db = sql.Identifier(database)
    async with await server.connect(database) as conn, conn.transaction():
        await conn.execute(_DDL)
        query = f"SELECT revoked, granted_self FROM {CUTOVER_TABLE} WHERE release_id = %s"
        rows = await (await conn.execute(query, (release_id,))).fetchall()
        if not rows:
            return []
        revoked, granted_self = list(rows[0][0]), bool(rows[0][1])
        for role in revoked:
            await conn.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, _role(role))
            )
        if granted_self:  # finrelease had no grant of its own before: leave the ACL as found
            await conn.execute(
                sql.SQL("REVOKE CONNECT ON DATABASE {} FROM CURRENT_USER").format(db)
            )
        await conn.execute(f"DELETE FROM {CUTOVER_TABLE} WHERE release_id = %s", (release_id,))
    return revoked


async def drop_restore_point(server: PgServer, release_id: str, database: str) -> str:
    name = restore_point_name(database, release_id)
    async with await server.admin() as admin:
        await admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    return name


async def _retry_in_use(admin: psycopg.AsyncConnection[Any], database: str, action: Any) -> None:
    terminate = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()"
    )
    for _ in range(25):
        try:
            await action()
            return
        except psycopg.errors.ObjectInUse:
            await admin.execute(terminate, (database,))
            await asyncio.sleep(_POLL_SECONDS)
    raise ApplicationError(f"database {database} stayed in use", type=ErrorType.DATABASE_IN_USE)


# ---------------------------------------------------------------- writes since reopening

WATERMARK_TABLE = "finrelease_write_watermark"
_WATERMARK_DDL = f"""
CREATE TABLE IF NOT EXISTS {WATERMARK_TABLE} (
    release_id varchar PRIMARY KEY,
    counters jsonb NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now()
)
"""
# Rows inserted, updated or deleted per user table, from the cumulative statistics. Why these
# and not an xmin/txid watermark: a deleted row leaves no xmin to find, and scanning every
# table's xmin is a full read of the database; the counters cost one catalog query. They are
# safe in one direction only, which is the one a rollback needs: backends flush them after a
# commit (at most once per PGSTAT_MIN_INTERVAL, 1 s) and at exit (pgstat.c,
# postgres/postgres src/backend/utils/activity/pgstat.c), so they are read after the close has
# ended every Odoo session; aborted writes count too (a false "written", never a missed one);
# a reset or a crash discards them (pgstat.c: "unless preceded by a crash"), which shows as a
# counter going down and is reported as "unknown". TRUNCATE is not counted (Odoo does not
# truncate business tables).
_COUNTERS = """
SELECT schemaname || '.' || relname, n_tup_ins + n_tup_upd + n_tup_del
FROM pg_stat_user_tables WHERE NOT starts_with(relname, 'finrelease_')
"""


async def _counters(conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
    await conn.execute("SELECT pg_stat_clear_snapshot()")  # no cached stats snapshot
    rows = await (await conn.execute(_COUNTERS)).fetchall()
    return {row[0]: int(row[1]) for row in rows}


async def _settled_counters(conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
    """Counters once two reads 0.5 s apart agree (at most ~5 s): a terminated backend leaves
    pg_stat_activity just before its exit hook flushes its last counts (both are
    before_shmem_exit callbacks, run in reverse order of registration)."""
    now = await _counters(conn)
    for _ in range(10):
        await asyncio.sleep(0.5)
        again = await _counters(conn)
        if again == now:
            break
        now = again
    return now


async def take_write_watermark(server: PgServer, release_id: str, database: str) -> int:
    """Record the write counters of every user table; a retry keeps the first (earlier) one."""
    async with await server.connect(database) as conn, conn.transaction():
        await conn.execute(_WATERMARK_DDL)
        counters = await _counters(conn)
        await conn.execute(
            f"INSERT INTO {WATERMARK_TABLE} (release_id, counters) VALUES (%s, %s) "
            "ON CONFLICT (release_id) DO NOTHING",
            (release_id, json.dumps(counters)),
        )
    return len(counters)


async def writes_since_watermark(
    server: PgServer, release_id: str, database: str
) -> tuple[bool, dict[str, int]]:
    """(known, rows written per table since the watermark). Unknown: no watermark, or the
    statistics were reset since (a counter went down)."""
    async with await server.connect(database) as conn, conn.transaction():
        await conn.execute(_WATERMARK_DDL)
        query = f"SELECT counters FROM {WATERMARK_TABLE} WHERE release_id = %s"
        rows = await (await conn.execute(query, (release_id,))).fetchall()
        now = await _settled_counters(conn)
    if not rows:
        return False, {}
    then: dict[str, int] = rows[0][0]
    known = all(now.get(table, 0) >= count for table, count in then.items() if table in now)
    written = {t: c - then.get(t, 0) for t, c in now.items() if c > then.get(t, 0)}
    return known, written
