"""One end-to-end stack for every e2e module (starting it costs half a minute).

Tests run one after another on it: each starts its own release on freshly seeded tenants,
and a test that kills a worker starts it again before it ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from devstack.fleet import start_fleet, stop_fleet
from devstack.ports import free_port
from devstack.process import ManagedProcess
from devstack.services import azurite, http_doubles, kubernetes_double, temporal_dev_server
from devstack.stack import StackPorts, stack_environment
from tests.conftest import RUN_PREFIX, drop_database
from tests.e2e.stack import TENANTS, WORK_ITEMS, Stack, database_of


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_admin_dsn: str) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("e2e-stack")
    ports = StackPorts(**{name: free_port() for name in StackPorts.__dataclass_fields__})
    databases = {
        name: psycopg.conninfo.make_conninfo(pg_admin_dsn, dbname=database_of(name))
        for name in TENANTS
    }
    services: list[ManagedProcess] = [
        temporal_dev_server(root, ports.temporal, ports.ui),
        azurite(root, ports.azurite),
        kubernetes_double(root, ports.kubernetes),
        http_doubles(root, ports.doubles, databases, list(WORK_ITEMS)),
    ]
    env = {**os.environ, **stack_environment(root, ports, pg_admin_dsn)}
    for name in TENANTS:
        env[f"FINRELEASE_SMOKE_{name.upper()}_USER"] = "smoke"
        env[f"FINRELEASE_SMOKE_{name.upper()}_PASSWORD"] = "smoke"
    workers: list[ManagedProcess] = []
    try:
        for service in services:
            service.start(timeout=90)
        workers = start_fleet(root, env)
        yield Stack(
            root=root,
            ports=ports,
            env=env,
            admin_dsn=pg_admin_dsn,
            temporal=services[0],
            workers={w.name.removeprefix("worker-"): w for w in workers},
        )
    finally:
        stop_fleet(workers)
        for service in reversed(services):
            service.stop()
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            leftovers = [
                r[0]
                for r in conn.execute(
                    "SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
                    (f"{RUN_PREFIX}odoo_",),
                ).fetchall()
            ]
        for name in leftovers:
            drop_database(pg_admin_dsn, name)
