"""Demo tenants on the embedded stack: Odoo-shaped databases, filestores and running deployments.

Used by `./dev demo` and the end-to-end tests. Only demo databases (the inventory's) and the
leftovers of earlier demo restores are ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
from devstack.paths import PROJECT_ROOT, state_dir
from devstack.signing import GOVERNANCE_ADMINS, Keyring, demo_keyring, signed_bundle
from governance.bundle import parse_bundle
from governance.inventory import Inventory, parse_inventory
from governance.release_digest import release_digest
from governance.spec import parse_spec

EXAMPLES = PROJECT_ROOT / "examples"
PREVIOUS_IMAGE = "acr.example.io/odoo@sha256:" + "1" * 64


REQUESTER = "alice@example.com"


@dataclass(frozen=True)
class DemoFiles:
    spec: Path
    inventory: Path
    policy: Path
    calendars: Path
    bundle: Path  # the governance bundle, signed by the demo's two administrators
    keys: Keyring  # the demo personas' throwaway keys
    requester: str = REQUESTER

    def key(self, identity: str) -> Path:
        return self.keys.key_file(identity)

    def start_arguments(self) -> list[str]:
        """`finrelease start` with these files, signed by the requester."""
        return [
            "start",
            str(self.spec),
            "--bundle",
            str(self.bundle),
            "--as",
            self.requester,
            "--key",
            str(self.key(self.requester)),
        ]

    def digest(self) -> str:
        """The release digest, as `finrelease governance digest` shows it to an approver."""
        bundle = parse_bundle(self.bundle.read_bytes())
        text = self.spec.read_text()
        spec = parse_spec(text, bundle.inventory, bundle.policy, bundle.calendars)
        scripts = [(name, (self.spec.parent / name).read_text()) for name in spec.migrations]
        return release_digest(spec, scripts, bundle)

    def approve_arguments(
        self, release_id: str, identity: str, role: str, *extra: str, verb: str = "approve"
    ) -> list[str]:
        """`finrelease approve` (or reject) as `identity`, signing this release's digest."""
        return [
            verb, release_id, "--as", identity, "--role", role,
            "--digest", self.digest(), "--key", str(self.key(identity)), *extra,
        ]  # fmt: skip


def write_demo_files(
    directory: Path,
    release_id: str,
    odoo_port: int,
    calendar: str = "demo",
    database_prefix: str = "",
    root: Path | None = None,
    requester: str = REQUESTER,
) -> DemoFiles:
    """The examples, with a fresh release id, the Odoo double's port and an always-open
    calendar, under a governance bundle the demo's administrators sign (keys under `root`,
    default the state folder).

    The demo must not wait for a real month-end, so every tenant uses `calendar` (default
    `demo`: no closes, no windows); the real calendars stay in examples/calendars.
    """
    directory.mkdir(parents=True, exist_ok=True)
    spec = (EXAMPLES / "release.yaml").read_text().replace("FIN-2026-11-042", release_id, 1)
    if requester != REQUESTER:  # JSON's string syntax is YAML's double-quoted scalar
        spec = spec.replace(f"requested_by: {REQUESTER}", f"requested_by: {json.dumps(requester)}")
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
    inventory_text = yaml.safe_dump(inventory, sort_keys=False)
    (directory / "tenants.yaml").write_text(inventory_text)
    keys = demo_keyring(root or state_dir())
    policy = (EXAMPLES / "policy.yaml").read_text()
    calendars = {p.stem: p.read_text() for p in sorted((EXAMPLES / "calendars").glob("*.yaml"))}
    people = {requester, *(p for m in yaml.safe_load(policy)["approvers"].values() for p in m)}
    governance = signed_bundle(
        keys, policy=policy, inventory=inventory_text, calendars=calendars, people=people
    )
    bundle = directory / "governance" / "bundle.json"
    bundle.parent.mkdir(exist_ok=True)
    bundle.write_text(governance.bundle)
    for admin, signature in zip(GOVERNANCE_ADMINS, governance.signatures, strict=True):
        (bundle.parent / f"bundle.json.{admin}.sig").write_text(signature)
    return DemoFiles(
        spec=directory / "release.yaml",
        inventory=directory / "tenants.yaml",
        policy=EXAMPLES / "policy.yaml",
        calendars=EXAMPLES / "calendars",
        bundle=bundle,
        keys=keys,
        requester=requester,
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
