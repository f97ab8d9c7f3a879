"""Blob Storage clients: workload identity on Azure, a connection string locally.

The API version is pinned so that Azurite (the local emulator, which rejects versions newer
than it knows) and Azure answer the same requests the same way.
"""

from __future__ import annotations

import os

from azure.storage.blob.aio import BlobServiceClient

BLOB_API_VERSION = os.environ.get("FINRELEASE_BLOB_API_VERSION", "2026-06-06")
BACKUP_CONTAINER = os.environ.get("FINRELEASE_BACKUP_CONTAINER", "backups")
EVIDENCE_CONTAINER = os.environ.get("FINRELEASE_EVIDENCE_CONTAINER", "evidence")
FILESTORE_CONTAINER = os.environ.get("FINRELEASE_FILESTORE_CONTAINER", "filestore")


def blob_service_from_environment() -> BlobServiceClient:
    """`AZURE_STORAGE_CONNECTION_STRING`, else `AZURE_STORAGE_ACCOUNT_URL` + DefaultAzureCredential."""
    connection_string = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if connection_string:
        return blob_service_from_connection_string(connection_string)
    account_url = os.environ.get("AZURE_STORAGE_ACCOUNT_URL")
    if not account_url:
        raise RuntimeError(
            "set AZURE_STORAGE_CONNECTION_STRING (local) or AZURE_STORAGE_ACCOUNT_URL "
            "(Azure, with workload identity) for Blob Storage"
        )
    from azure.identity.aio import DefaultAzureCredential

    return BlobServiceClient(
        account_url, credential=DefaultAzureCredential(), api_version=BLOB_API_VERSION
    )


def blob_service_from_connection_string(connection_string: str) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(connection_string, api_version=BLOB_API_VERSION)


def azurite_connection_string(port: int, host: str = "127.0.0.1") -> str:
    """The well-known development account of Azurite (public, documented, not a secret)."""
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={key};BlobEndpoint=http://{host}:{port}/devstoreaccount1;"
    )
