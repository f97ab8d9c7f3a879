"""Evidence bundles in Blob Storage: published write-once, verifiable by an auditor.

A release bundle lives at `<release_id>.json` in the evidence container, a tenant bundle
(a large release splits its evidence per tenant) at `<release_id>/<tenant>.json`. Each
carries its sha256 in metadata and blob index tags (release, outcome). Publishing is
write-once (`If-None-Match: *`): the same content again is a no-op, different content is
refused — evidence is never overwritten.

`verify_published_evidence` is what `finrelease evidence verify` runs: the release chain,
every tenant bundle it links (location and head), and every backup blob any bundle names,
re-hashed while streaming.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import structlog
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobServiceClient
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.azure_storage import BACKUP_CONTAINER, EVIDENCE_CONTAINER
from governance.evidence import canonical_json, find_break, sha256_hex
from governance.evidence_audit import audit_evidence
from workflows.contracts import (
    TENANT_BUNDLES,
    Activity,
    ErrorType,
    EvidencePublication,
    PublishedEvidence,
    evidence_blob_name,
)

log = structlog.get_logger(__name__)

# One tenant bundle linked per entry: {tenant, blob_name, head} (bundles sealed before
# `TENANT_BUNDLES`, which links a few hundred per entry, kept the release bundle small).
TENANT_BUNDLE = "tenant_bundle"
BACKUP = "backup"  # entry kind naming a backup blob: {blob_name, sha256, [container], ...}


class EvidenceActivities:
    def __init__(self, service: BlobServiceClient, container: str = EVIDENCE_CONTAINER) -> None:
        self.service = service
        self.container = container

    @activity.defn(name=Activity.PUBLISH_EVIDENCE)
    async def publish_evidence(self, publication: EvidencePublication) -> PublishedEvidence:
        """Upload the canonical bundle once; identical re-publish is a no-op, different content
        is refused with `EvidenceConflict`."""
        name = evidence_blob_name(publication.release_id, publication.tenant)
        content = canonical_json(publication.bundle).encode("utf-8")
        digest = sha256_hex(content)
        blob = self.service.get_blob_client(self.container, name)
        result = PublishedEvidence(
            url=blob.url,
            blob_name=name,
            sha256=digest,
            head=str(publication.bundle.get("head", "")),
        )
        bound = log.bind(release_id=publication.release_id, tenant=publication.tenant, blob=name)
        try:
            await blob.upload_blob(
                content,
                overwrite=False,  # sends If-None-Match: *
                metadata={"sha256": digest, "release": publication.release_id},
                tags={"release": publication.release_id, "outcome": publication.outcome},
                content_settings=ContentSettings(content_type="application/json"),
            )
        except ResourceExistsError:
            existing = await _stored_sha256(blob)
            if existing != digest:
                raise ApplicationError(
                    f"evidence {self.container}/{name} already exists with different content "
                    f"(sha256 {existing}, this bundle {digest}); evidence is never overwritten",
                    type=ErrorType.EVIDENCE_CONFLICT,
                    non_retryable=True,
                ) from None
            bound.info("evidence already published", sha256=digest)
            return result
        bound.info("evidence published", sha256=digest, bytes=len(content))
        return result


async def _stored_sha256(blob: Any) -> str:
    properties = await blob.get_blob_properties()
    recorded = (properties.metadata or {}).get("sha256")
    # The metadata is our own claim; hash the bytes so a mismatch between the two shows too.
    actual = await _stream_sha256(blob)
    return actual if recorded in (None, actual) else f"{actual} (metadata says {recorded})"


async def _stream_sha256(blob: Any) -> str:
    hasher = hashlib.sha256()
    downloader = await blob.download_blob()
    async for chunk in downloader.chunks():
        hasher.update(chunk)
    return hasher.hexdigest()


# ---------------------------------------------------------------- verification


@dataclass
class EvidenceReport:
    """What `finrelease evidence verify` found; `ok` only when nothing is wrong."""

    release_id: str
    problems: list[str] = field(default_factory=list)
    bundles: list[str] = field(default_factory=list)  # blob names verified
    entries: int = 0
    backups: list[str] = field(default_factory=list)  # backup blobs re-hashed
    statements: int = 0  # signed statements re-verified

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_published_evidence(
    service: BlobServiceClient,
    release_id: str,
    *,
    container: str = EVIDENCE_CONTAINER,
    backup_container: str = BACKUP_CONTAINER,
) -> EvidenceReport:
    """Verify a release's published evidence end to end, reporting every mismatch found."""
    report = EvidenceReport(release_id)
    name = evidence_blob_name(release_id)
    bundle = await _load_bundle(service, container, name, release_id, report)
    if bundle is None:
        return report
    audit = audit_evidence(bundle)  # every signature, quorum and segregation of duties
    report.problems += [f"{name}: {problem}" for problem in audit.problems]
    report.statements = audit.verified
    bundles = [bundle]
    for where, link in _tenant_links(bundle):
        linked = await _follow_tenant_link(service, container, release_id, where, link, report)
        if linked is not None:
            bundles.append(linked)
    seen: set[tuple[str, str]] = set()
    for each in bundles:
        for entry in _entries_of(each, BACKUP):
            await _check_backup(service, backup_container, entry, seen, report)
    return report


async def _load_bundle(
    service: BlobServiceClient, container: str, name: str, release_id: str, report: EvidenceReport
) -> dict[str, Any] | None:
    blob = service.get_blob_client(container, name)
    try:
        properties = await blob.get_blob_properties()
        content = await (await blob.download_blob()).readall()
    except ResourceNotFoundError:
        report.problems.append(f"{container}/{name}: not found")
        return None
    digest = sha256_hex(content)
    recorded = (properties.metadata or {}).get("sha256")
    if recorded != digest:
        report.problems.append(f"{name}: sha256 is {digest}, its metadata says {recorded}")
    try:
        bundle = json.loads(content)
    except ValueError as error:
        report.problems.append(f"{name}: not JSON ({error})")
        return None
    broken = find_break(bundle)
    if broken is not None:
        report.problems.append(f"{name}: chain broken at entry {broken.seq}: {broken.reason}")
    if isinstance(bundle, dict) and bundle.get("release_id") != release_id:
        report.problems.append(
            f"{name}: release_id is {bundle.get('release_id')!r}, expected {release_id!r}"
        )
    report.bundles.append(name)
    report.entries += len(bundle.get("entries", [])) if isinstance(bundle, dict) else 0
    return bundle if isinstance(bundle, dict) else None


def _entries_of(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    entries = bundle.get("entries", [])
    return [e for e in entries if isinstance(e, dict) and e.get("kind") == kind]


def _tenant_links(bundle: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where it is recorded, {tenant, blob_name, head}) for every tenant bundle linked."""
    links = []
    for entry in _entries_of(bundle, TENANT_BUNDLE):
        links.append((f"entry {entry.get('seq')}", entry.get("data") or {}))
    for entry in _entries_of(bundle, TENANT_BUNDLES):
        data = entry.get("data") or {}
        location = str(data.get("location", ""))
        for item in data.get("bundles") or []:
            tenant = str(item.get("tenant", ""))
            blob_name = item.get("blob_name") or location.replace("{tenant}", tenant)
            links.append((f"entry {entry.get('seq')}", {**item, "blob_name": blob_name}))
    return links


async def _follow_tenant_link(
    service: BlobServiceClient,
    container: str,
    release_id: str,
    where: str,
    link: dict[str, Any],
    report: EvidenceReport,
) -> dict[str, Any] | None:
    tenant, blob_name, head = link.get("tenant", ""), link.get("blob_name", ""), link.get("head")
    where = f"{where} (tenant bundle of {tenant!r})"
    if not head:
        report.problems.append(f"{where}: no bundle was sealed ({link.get('state', '?')})")
        return None
    expected = evidence_blob_name(release_id, tenant)
    if blob_name != expected:
        report.problems.append(f"{where}: links {blob_name!r}, expected {expected!r}")
    linked = await _load_bundle(service, container, blob_name or expected, release_id, report)
    if linked is not None and linked.get("head") != head:
        report.problems.append(
            f"{where}: {blob_name} has head {linked.get('head')}, "
            f"the release bundle recorded {head}"
        )
    return linked


async def _check_backup(
    service: BlobServiceClient,
    default_container: str,
    entry: dict[str, Any],
    seen: set[tuple[str, str]],
    report: EvidenceReport,
) -> None:
    data = entry.get("data") or {}
    container = data.get("container") or default_container
    blob_name, recorded = data.get("blob_name"), data.get("sha256")
    if not blob_name or not recorded:
        report.problems.append(f"backup entry {entry.get('seq')}: names no blob_name and sha256")
        return
    if (container, blob_name) in seen:
        return
    seen.add((container, blob_name))
    try:
        actual = await _stream_sha256(service.get_blob_client(container, blob_name))
    except ResourceNotFoundError:
        report.problems.append(f"backup {container}/{blob_name}: not found")
        return
    report.backups.append(f"{container}/{blob_name}")
    if actual != recorded:
        report.problems.append(
            f"backup {container}/{blob_name}: sha256 is {actual}, the evidence recorded {recorded}"
        )
