"""What the database activity tests share: a tenant on a test database, the activities wired
to this run's PostgreSQL and Azurite container, and this run's scratch databases."""

from __future__ import annotations

import psycopg
import pytest

from activities.azure_storage import blob_service_from_connection_string
from activities.postgres import PostgresActivities
from governance.inventory import Tenant
from tests.conftest import RUN_PREFIX

# Scratch databases of this run only, so a concurrent run's never count (or get swept).
SCRATCH_PREFIX = f"{RUN_PREFIX}scratch"


def tenant_on(database: str, name: str = "acme") -> Tenant:
    return Tenant(
        name=name,
        tier="shared",
        namespace="odoo-acme",
        deployments={"web": "odoo-web"},
        db_server="main",
        database=database,
        filestore="acme/filestore",
        url="https://acme.example.com",
        timezone="Europe/Berlin",
        calendar="default",
    )


def databases_starting_with(admin_dsn: str, prefix: str) -> list[str]:
    with psycopg.connect(admin_dsn) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY 1", (prefix,)
        )
        return [row[0] for row in rows]


def scratch_databases(admin_dsn: str) -> list[str]:
    return databases_starting_with(admin_dsn, SCRATCH_PREFIX)


@pytest.fixture
async def blobs(blob_container):
    async with blob_service_from_connection_string(blob_container.connection_string) as service:
        yield service


@pytest.fixture
def postgres(pg_admin_dsn, blobs, blob_container) -> PostgresActivities:
    return PostgresActivities(
        {"main": pg_admin_dsn},
        blobs,
        container=blob_container.name,
        scratch_prefix=SCRATCH_PREFIX,
        block_size=256 * 1024,
    )
