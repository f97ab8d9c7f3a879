"""Filestore backups: a server-side copy of the tenant's attachments plus a hashed manifest.

Odoo keeps attachments as files named by their sha1 under the tenant's filestore prefix.
The copy never passes file contents through the worker (Copy Blob runs inside the storage
service); the manifest lists every file with its size and content hash, and its own sha256
is what the evidence records.
"""

from __future__ import annotations

import asyncio
import hashlib
import json

import structlog
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob.aio import BlobClient, BlobServiceClient
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.azure_storage import BACKUP_CONTAINER, FILESTORE_CONTAINER
from workflows.contracts import FilestoreBackup, TenantTask

log = structlog.get_logger(__name__)

COPY_POLL_SECONDS = 0.5


class BlobActivities:
    """Blob Storage activities of the azure worker, holding one blob service client."""

    def __init__(
        self,
        blobs: BlobServiceClient,
        *,
        filestore_container: str = FILESTORE_CONTAINER,
        backup_container: str = BACKUP_CONTAINER,
        concurrency: int = 16,
    ) -> None:
        self._blobs = blobs
        self._filestore = filestore_container
        self._backups = backup_container
        self._concurrency = concurrency

    @activity.defn(name="backup_filestore")
    async def backup_filestore(self, task: TenantTask) -> FilestoreBackup:
        """Copy `<filestore prefix>/*` to `<release>/<tenant>/filestore/` and write the manifest."""
        tenant = task.tenant
        logger = log.bind(release_id=task.release_id, tenant=tenant.name)
        source_prefix = tenant.filestore.strip("/") + "/"
        target_prefix = f"{task.release_id}/{tenant.name}/filestore/"
        manifest_blob = self._blobs.get_blob_client(
            self._backups, f"{task.release_id}/{tenant.name}/filestore-manifest.json"
        )
        existing = await _committed_manifest(manifest_blob, tenant.name)
        if existing is not None:
            logger.info("filestore backup already complete, reusing it")
            return existing

        source = self._blobs.get_container_client(self._filestore)
        limit = asyncio.Semaphore(self._concurrency)
        copies: list[asyncio.Task[dict[str, object]]] = []
        async for item in source.list_blobs(name_starts_with=source_prefix):
            relative = item.name[len(source_prefix) :]
            target = self._blobs.get_blob_client(self._backups, target_prefix + relative)
            copies.append(
                asyncio.ensure_future(
                    _copy(limit, source.get_blob_client(item.name), target, relative, item)
                )
            )
        try:
            files = []
            for copy in asyncio.as_completed(copies):
                files.append(await copy)
                activity.heartbeat(len(files))
        finally:
            for copy in copies:
                copy.cancel()

        files.sort(key=lambda f: str(f["name"]))
        manifest = {
            "release_id": task.release_id,
            "tenant": tenant.name,
            "source": f"{self._filestore}/{source_prefix}",
            "target": f"{self._backups}/{target_prefix}",
            "files": files,
        }
        body = json.dumps(manifest, sort_keys=True, indent=1).encode()
        sha256 = hashlib.sha256(body).hexdigest()
        total = sum(int(str(f["size"])) for f in files)
        metadata = {"sha256": sha256, "files": str(len(files)), "bytes": str(total)}
        await manifest_blob.upload_blob(body, overwrite=True, metadata=metadata)
        logger.info("filestore backed up", files=len(files), bytes=total)
        return FilestoreBackup(
            tenant=tenant.name,
            manifest_url=manifest_blob.url,
            manifest_sha256=sha256,
            files=len(files),
            bytes=total,
        )


async def _copy(
    limit: asyncio.Semaphore, source: BlobClient, target: BlobClient, relative: str, item: object
) -> dict[str, object]:
    """Server-side copy of one file; the manifest entry (name, size, content hash)."""
    async with limit:
        copy = await target.start_copy_from_url(source.url)
        status = copy.get("copy_status")
        while status == "pending":
            await asyncio.sleep(COPY_POLL_SECONDS)
            status = (await target.get_blob_properties()).copy.status
        if status != "success":
            raise ApplicationError(
                f"copy of filestore file {relative} ended {status}", type="CopyFailed"
            )
        properties = await target.get_blob_properties()
        return {
            "name": relative,
            "size": properties.size,
            "hash": await _content_hash(target, properties.content_settings.content_md5),
        }


async def _content_hash(blob: BlobClient, content_md5: bytes | bytearray | None) -> str:
    """The service's Content-MD5 when it has one; otherwise a sha256 read from the copy."""
    if content_md5:
        return "md5:" + bytes(content_md5).hex()
    digest = hashlib.sha256()
    async for chunk in (await blob.download_blob()).chunks():
        digest.update(chunk)
    return "sha256:" + digest.hexdigest()


async def _committed_manifest(blob: BlobClient, tenant: str) -> FilestoreBackup | None:
    try:
        properties = await blob.get_blob_properties()
    except ResourceNotFoundError:
        return None
    metadata = properties.metadata or {}
    if not all(metadata.get(key) for key in ("sha256", "files", "bytes")):
        return None
    return FilestoreBackup(
        tenant=tenant,
        manifest_url=blob.url,
        manifest_sha256=metadata["sha256"],
        files=int(metadata["files"]),
        bytes=int(metadata["bytes"]),
    )
