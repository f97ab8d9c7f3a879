"""Demo tenants on the embedded stack: Odoo-shaped databases, filestores and running deployments.

Used by `./dev demo` and the end-to-end tests. Only demo databases (the inventory's) and the
leftovers of earlier demo restores are ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import yaml
from azure.core.exceptions import ResourceExistsError

from activities.azure_storage import (
    BACKUP_CONTAINER,
    EVIDENCE_CONTAINER,
    FILESTORE_CONTAINER,
    blob_service_from_connection_string,
)
from devstack.odoo_seed import attachment_files, seed_odoo_database
from devstack.paths import PROJECT_ROOT
from governance.inventory import Inventory, parse_inventory

EXAMPLES = PROJECT_ROOT / "examples"
PREVIOUS_IMAGE = "acr.example.io/odoo@sha256:" + "1" * 64


@dataclass(frozen=True)
class DemoFiles:
    spec: Path
    inventory: Path
    policy: Path
    calendars: Path

    def start_arguments(self) -> list[str]:
        """`finrelease start` with these files."""
        return [
            "start",
            str(self.spec),
            "--inventory",
            str(self.inventory),
            "--policy",
            str(self.policy),
            "--calendars",
            str(self.calendars),
        ]


def write_demo_files(
    directory: Path,
    release_id: str,
    odoo_port: int,
    calendar: str = "demo",
    database_prefix: str = "",
) -> DemoFiles:
    """The examples, with a fresh release id, the Odoo double's port and an always-open calendar.

    The demo must not wait for a real month-end, so every tenant uses `calendar` (default
    `demo`: no closes, no windows); the real calendars stay in examples/calendars.
    """
    directory.mkdir(parents=True, exist_ok=True)
    spec = (EXAMPLES / "release.yaml").read_text().replace("FIN-2026-11-042", release_id, 1)
    (directory / "release.yaml").write_text(spec)
    migrations = directory / "migrations"
    migrations.mkdir(exist_ok=True)
    for script in (EXAMPLES / "migrations").glob("*.sql"):
        (migrations / script.name).write_text(script.read_text())
    inventory = yaml.safe_load((EXAMPLES / "tenants.yaml").read_text())
    for tenant in inventory["tenants"]:
        tenant["calendar"] = calendar
        tenant["url"] = f"http://127.0.0.1:{odoo_port}/{tenant['name']}"
        tenant["database"] = f"{database_prefix}{tenant['database']}"
    (directory / "tenants.yaml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    return DemoFiles(
        spec=directory / "release.yaml",
        inventory=directory / "tenants.yaml",
        policy=EXAMPLES / "policy.yaml",
        calendars=EXAMPLES / "calendars",
    )


def load_inventory(files: DemoFiles) -> Inventory:
    return parse_inventory(files.inventory.read_text())


def seed_databases(admin_dsn: str, inventory: Inventory, entries: int) -> None:
    """Fresh Odoo-shaped database per tenant (and earlier demo restores' leftovers dropped)."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
        for tenant in inventory.tenants:
            doomed = [
                n
                for n in names
                if n == tenant.database
                or n.startswith(f"{tenant.database}_failed_")
                or n.startswith(f"{tenant.database}_restore_")
            ]
            for name in doomed:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (name,),
                )
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{tenant.database}"')
    for index, tenant in enumerate(inventory.tenants):
        dsn = psycopg.conninfo.make_conninfo(admin_dsn, dbname=tenant.database)
        seed_odoo_database(
            dsn,
            entries=entries,
            seed=index,
            attachments=8,
            filestore_prefix="",
            version=demo_version(index),
        )


def demo_version(index: int) -> str:
    """A mixed fleet, as a real one is mid-upgrade: every second tenant runs Odoo 18."""
    return "18.0" if index % 2 else "17.0"


async def provision_containers(connection_string: str) -> None:
    """The containers an Azure deployment provisions with its infrastructure code."""
    async with blob_service_from_connection_string(connection_string) as service:
        for name in (FILESTORE_CONTAINER, BACKUP_CONTAINER, EVIDENCE_CONTAINER):
            with contextlib.suppress(ResourceExistsError):
                await service.create_container(name)


async def upload_filestores(connection_string: str, inventory: Inventory) -> None:
    await provision_containers(connection_string)
    async with blob_service_from_connection_string(connection_string) as service:
        container = service.get_container_client(FILESTORE_CONTAINER)
        for index, tenant in enumerate(inventory.tenants):
            prefix = tenant.filestore.strip("/")
            for relative, content in attachment_files(index, 8):
                await container.upload_blob(f"{prefix}/{relative}", content, overwrite=True)


def seed_kubernetes(k8s_url: str, inventory: Inventory, image: str = PREVIOUS_IMAGE) -> None:
    """Each tenant's web/worker/cron running the previous image (deployments are recreated)."""
    with httpx.Client(base_url=k8s_url, timeout=10) as client:
        for tenant in inventory.tenants:
            for name in tenant.deployments.values():
                client.delete(f"/apis/apps/v1/namespaces/{tenant.namespace}/deployments/{name}")
            response = client.post(
                "/_double/seed",
                json={
                    "namespace": tenant.namespace,
                    "deployments": tenant.deployments,
                    "image": image,
                },
            )
            response.raise_for_status()


def prepare_tenants(files: DemoFiles, env: dict[str, str], k8s_url: str, entries: int) -> Inventory:
    """Databases, filestores and deployments for every demo tenant."""
    inventory = load_inventory(files)
    seed_databases(env["FINRELEASE_PG_DSN"], inventory, entries)
    asyncio.run(upload_filestores(env["AZURE_STORAGE_CONNECTION_STRING"], inventory))
    seed_kubernetes(k8s_url, inventory)
    return inventory
