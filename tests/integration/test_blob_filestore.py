"""The filestore backup copies exactly the tenant's files and seals them with a manifest."""

from __future__ import annotations

import hashlib
import json

import pytest
from temporalio.testing import ActivityEnvironment

from activities.azure_storage import blob_service_from_connection_string
from activities.blob import BlobActivities
from devstack.odoo_seed import attachment_files
from governance.inventory import Tenant
from workflows.contracts import TenantTask


def tenant(name: str = "acme") -> Tenant:
    return Tenant(
        name=name,
        tier="shared",
        namespace=f"odoo-{name}",
        deployments={"web": "odoo-web"},
        db_server="main",
        database=name,
        filestore=f"{name}/filestore",
        url=f"https://{name}.example.com",
        timezone="Europe/Berlin",
        calendar="default",
    )


@pytest.fixture
async def blobs(blob_container):
    async with blob_service_from_connection_string(blob_container.connection_string) as service:
        yield service


@pytest.fixture
async def filestore(blobs, blob_container) -> dict[str, bytes]:
    """acme's attachments (Odoo's layout) and one file of another tenant beside them."""
    container = blobs.get_container_client(blob_container.name)
    files = dict(attachment_files(seed=1, attachments=6))
    for relative, content in files.items():
        await container.upload_blob(f"acme/filestore/{relative}", content)
    await container.upload_blob("globex/filestore/00/0000", b"not acme's")
    return files


def content_hash(content: bytes) -> set[str]:
    return {
        "md5:" + hashlib.md5(content).hexdigest(),
        "sha256:" + hashlib.sha256(content).hexdigest(),
    }


async def test_filestore_backup_copies_the_tenants_files_and_returns_the_manifest_hash(
    blobs, blob_container, filestore
):
    activities = BlobActivities(
        blobs, filestore_container=blob_container.name, backup_container=blob_container.name
    )

    backup = await ActivityEnvironment().run(
        activities.backup_filestore, TenantTask(release_id="rel-1", tenant=tenant())
    )

    container = blobs.get_container_client(blob_container.name)
    manifest_blob = container.get_blob_client("rel-1/acme/filestore-manifest.json")
    body = await (await manifest_blob.download_blob()).readall()
    manifest = json.loads(body)
    assert backup.manifest_sha256 == hashlib.sha256(body).hexdigest()
    assert backup.manifest_url == manifest_blob.url
    assert (backup.files, backup.bytes) == (6, sum(len(c) for c in filestore.values()))
    assert [f["name"] for f in manifest["files"]] == sorted(filestore)
    for entry in manifest["files"]:
        content = filestore[entry["name"]]
        copied = await (
            await container.download_blob(f"rel-1/acme/filestore/{entry['name']}")
        ).readall()
        assert copied == content
        assert entry["size"] == len(content)
        assert entry["hash"] in content_hash(content)
    copied_names = [b.name async for b in container.list_blobs(name_starts_with="rel-1/")]
    assert not any("globex" in name or "0000" in name for name in copied_names)


async def test_second_filestore_backup_of_a_release_reuses_the_manifest(
    blobs, blob_container, filestore
):
    activities = BlobActivities(
        blobs, filestore_container=blob_container.name, backup_container=blob_container.name
    )
    task = TenantTask(release_id="rel-2", tenant=tenant())
    first = await ActivityEnvironment().run(activities.backup_filestore, task)
    manifest = blobs.get_blob_client(blob_container.name, "rel-2/acme/filestore-manifest.json")
    etag = (await manifest.get_blob_properties()).etag

    second = await ActivityEnvironment().run(activities.backup_filestore, task)

    assert second == first
    assert (await manifest.get_blob_properties()).etag == etag


async def test_empty_filestore_gives_an_empty_manifest(blobs, blob_container):
    activities = BlobActivities(
        blobs, filestore_container=blob_container.name, backup_container=blob_container.name
    )
    backup = await ActivityEnvironment().run(
        activities.backup_filestore, TenantTask(release_id="rel-3", tenant=tenant("initech"))
    )
    assert (backup.files, backup.bytes) == (0, 0)
    assert len(backup.manifest_sha256) == 64
