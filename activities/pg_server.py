"""A PostgreSQL server seen from the db worker: DSN handling, scratch databases, renames.

The DSN never leaves `PgServer`: psycopg gets it directly and the client tools get it as
`PG*` environment variables (nothing in argv, where `ps` would show it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import time
from typing import Any

import psycopg
import structlog
from psycopg import sql
from temporalio.exceptions import ApplicationError

from workflows.contracts import ErrorType

log = structlog.get_logger(__name__)

IDENTIFIER_MAX = 63  # PostgreSQL truncates longer names silently: we refuse them instead

# libpq keyword -> environment variable, for handing a DSN to pg_dump/pg_restore.
_LIBPQ_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "options": "PGOPTIONS",
}


def non_retryable(message: str, error_type: str) -> ApplicationError:
    return ApplicationError(message, type=error_type, non_retryable=True)


def dsn_from_environment(alias: str) -> str:
    """`FINRELEASE_PG_<ALIAS>_DSN`; a non-retryable ConfigurationMissing naming the variable."""
    variable = f"FINRELEASE_PG_{alias.upper()}_DSN"
    value = os.environ.get(variable)
    if not value:
        raise non_retryable(
            f"db_server {alias!r}: set {variable} in the db worker's environment",
            ErrorType.CONFIGURATION_MISSING,
        )
    return value


class PgServer:
    """One PostgreSQL server; knows its DSN but never shows it (repr included)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._params = psycopg.conninfo.conninfo_to_dict(dsn)

    def __repr__(self) -> str:
        return f"<PgServer {self._params.get('host', 'local')}>"

    def dsn(self, database: str) -> str:
        return psycopg.conninfo.make_conninfo(self._dsn, dbname=database)

    def environment(self, database: str) -> dict[str, str]:
        """The worker's environment with this server's `PG*` variables (and no others)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        for keyword, value in self._params.items():
            if keyword in _LIBPQ_ENV and value is not None:
                env[_LIBPQ_ENV[keyword]] = str(value)
        env["PGDATABASE"] = database
        env.setdefault("PGAPPNAME", "finrelease")
        return env

    async def connect(self, database: str) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.dsn(database))

    async def admin(self) -> psycopg.AsyncConnection[Any]:
        """Autocommit, on the `postgres` database: for CREATE/DROP/RENAME DATABASE."""
        return await psycopg.AsyncConnection.connect(self.dsn("postgres"), autocommit=True)


# ---------------------------------------------------------------- names


def _slug(text: str, length: int) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())[:length] or "x"


def short_release_id(release_id: str) -> str:
    """The first 8 alphanumerics of the release id, used in database names."""
    return _slug(release_id, 8)


def checked_name(name: str, what: str) -> str:
    if len(name.encode()) > IDENTIFIER_MAX:
        raise non_retryable(
            f"{what} name {name!r} is longer than PostgreSQL's {IDENTIFIER_MAX} bytes",
            ErrorType.INVALID_RELEASE,
        )
    return name


def _scratch_stem(prefix: str, release_id: str, tenant: str, kind: str) -> str:
    return f"{prefix}_{_slug(release_id, 16)}_{_slug(tenant, 12)}_{kind}_"


def scratch_database_name(prefix: str, release_id: str, tenant: str, kind: str, now: float) -> str:
    """`<prefix>_<release>_<tenant>_<kind>_<epoch seconds>`: the epoch lets a sweep age it."""
    stem = _scratch_stem(prefix, release_id, tenant, kind)
    return checked_name(f"{stem}{int(now)}", "scratch database")


# ---------------------------------------------------------------- scratch databases


class ScratchDatabase:
    """`async with`: a new scratch database, dropped on exit (also when cancelled).

    Leftovers of the same release, tenant and kind (a crashed earlier attempt) are dropped
    before it is created.
    """

    def __init__(
        self, server: PgServer, prefix: str, release_id: str, tenant: str, kind: str, template: str
    ) -> None:
        self._server = server
        self._stem = _scratch_stem(prefix, release_id, tenant, kind)
        self.name = scratch_database_name(prefix, release_id, tenant, kind, time.time())
        self._template = template

    async def __aenter__(self) -> str:
        async with await self._server.admin() as admin:
            for name in await databases_like(admin, self._stem):
                await drop_database(admin, name)
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name))
            if self._template:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(self._template))
            await admin.execute(statement)
        return self.name

    async def __aexit__(self, *_: object) -> None:
        await asyncio.shield(self._drop())  # a cancelled activity still drops what it made

    async def _drop(self) -> None:
        async with await self._server.admin() as admin:
            await drop_database(admin, self.name)


async def sweep_scratch_databases(
    admin_dsn: str, prefix: str, older_than: dt.timedelta, now: dt.datetime | None = None
) -> list[str]:
    """Drop scratch databases `<prefix>_..._<epoch>` created before `now - older_than`."""
    cutoff = ((now or dt.datetime.now(dt.UTC)) - older_than).timestamp()
    dropped = []
    async with await PgServer(admin_dsn).admin() as admin:
        for name in await databases_like(admin, f"{prefix}_"):
            epoch = name.rsplit("_", 1)[-1]
            if epoch.isdigit() and int(epoch) < cutoff:
                await drop_database(admin, name)
                dropped.append(name)
    if dropped:
        log.info("scratch databases swept", dropped=dropped)
    return dropped


# ---------------------------------------------------------------- catalog and DDL


async def databases_like(admin: psycopg.AsyncConnection[Any], stem: str) -> list[str]:
    pattern = stem.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
    query = "SELECT datname FROM pg_database WHERE datname LIKE %s"
    return [row[0] for row in await (await admin.execute(query, (pattern,))).fetchall()]


async def existing_databases(admin: psycopg.AsyncConnection[Any], *names: str) -> set[str]:
    query = "SELECT datname FROM pg_database WHERE datname = ANY(%s)"
    return {row[0] for row in await (await admin.execute(query, (list(names),))).fetchall()}


async def database_owner(admin: psycopg.AsyncConnection[Any], name: str) -> str | None:
    query = "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s"
    row = await (await admin.execute(query, (name,))).fetchone()
    return row[0] if row else None


async def drop_database(admin: psycopg.AsyncConnection[Any], name: str) -> None:
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
    await admin.execute(statement.format(sql.Identifier(name)))


async def rename_database(admin: psycopg.AsyncConnection[Any], name: str, to: str) -> None:
    statement = sql.SQL("ALTER DATABASE {} RENAME TO {}")
    await admin.execute(statement.format(sql.Identifier(name), sql.Identifier(to)))


async def swap_databases(
    admin: psycopg.AsyncConnection[Any], current: str, restored: str, kept: str
) -> None:
    """Rename `current` to `kept` and `restored` to `current`, cutting Odoo's connections."""
    allow = sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}")
    await admin.execute(allow.format(sql.Identifier(current), sql.SQL("false")))
    try:
        for _ in range(20):  # a client may slip in between terminate and rename
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (current,),
            )
            try:
                await rename_database(admin, current, kept)
                break
            except psycopg.errors.ObjectInUse:
                await asyncio.sleep(0.2)
        else:
            raise ApplicationError(f"{current} stayed in use; not renamed", type="DatabaseInUse")
    finally:
        renamed = kept if await existing_databases(admin, kept) else current
        await admin.execute(allow.format(sql.Identifier(renamed), sql.SQL("true")))
    await rename_database(admin, restored, current)


async def tool_major(tool: str) -> int:
    """Major version of a client tool (`pg_dump (PostgreSQL) 15.20` -> 15)."""
    process = await asyncio.create_subprocess_exec(
        tool, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    match = re.search(rb"(\d+)(?:\.\d+)?", output)
    if process.returncode != 0 or match is None:
        text = output.decode(errors="replace").strip()
        raise non_retryable(f"cannot tell the version of {tool}: {text}", ErrorType.TOOL_VERSION)
    return int(match.group(1))
