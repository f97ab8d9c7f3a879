"""Evidence published write-once to Azurite, then verified end to end like an auditor would."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from azure.storage.blob.aio import BlobServiceClient
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.azure_storage import blob_service_from_connection_string
from activities.evidence import EvidenceActivities, evidence_blob_name, verify_published_evidence
from governance.evidence import EvidenceChain, canonical_json
from workflows.contracts import TENANT_BUNDLES, ErrorType, EvidencePublication

AT = "2026-11-21T20:00:00+00:00"


@pytest_asyncio.fixture
async def service(blob_container) -> AsyncIterator[BlobServiceClient]:
    async with blob_service_from_connection_string(blob_container.connection_string) as client:
        yield client


async def _publish(service, container: str, bundle: dict, tenant: str = "", outcome="Completed"):
    activities = EvidenceActivities(service, container)
    publication = EvidencePublication("FIN-1", bundle, outcome, tenant)
    return await ActivityEnvironment().run(activities.publish_evidence, publication)


def _release_bundle(extra: str = "") -> dict:
    chain = EvidenceChain("FIN-1")
    chain.append("spec", "alice@example.com", {"risk": "high", "note": extra}, AT)
    chain.append("outcome", "finrelease", {"outcome": "Completed"}, AT)
    return chain.bundle()


async def test_evidence_is_published_once_with_its_hash_and_tags(service, blob_container):
    bundle = _release_bundle()
    published = await _publish(service, blob_container.name, bundle)
    content = canonical_json(bundle).encode()
    assert published.blob_name == "FIN-1.json"
    assert published.sha256 == hashlib.sha256(content).hexdigest()
    assert published.head == bundle["head"]
    blob = service.get_blob_client(blob_container.name, "FIN-1.json")
    assert await (await blob.download_blob()).readall() == content
    assert (await blob.get_blob_properties()).metadata["sha256"] == published.sha256
    assert await blob.get_blob_tags() == {"release": "FIN-1", "outcome": "Completed"}


async def test_identical_republish_is_a_no_op_returning_the_same_result(service, blob_container):
    first = await _publish(service, blob_container.name, _release_bundle())
    blob = service.get_blob_client(blob_container.name, "FIN-1.json")
    etag = (await blob.get_blob_properties()).etag
    second = await _publish(service, blob_container.name, _release_bundle())
    assert second == first
    assert (await blob.get_blob_properties()).etag == etag


async def test_republish_with_different_content_is_refused(service, blob_container):
    await _publish(service, blob_container.name, _release_bundle())
    with pytest.raises(ApplicationError) as caught:
        await _publish(service, blob_container.name, _release_bundle(extra="rewritten"))
    assert caught.value.type == ErrorType.EVIDENCE_CONFLICT
    assert caught.value.non_retryable
    assert "FIN-1.json" in str(caught.value)


async def _publish_release_with_backups(service, container: str) -> dict[str, bytes]:
    """Two tenants, each with a backup blob and its own bundle, linked from the release bundle."""
    backups = {}
    links: list[dict[str, str]] = []
    release = EvidenceChain("FIN-1")
    release.append("spec", "alice@example.com", {"tenants": ["acme", "globex"]}, AT)
    for tenant in ("acme", "globex"):
        dump = os.urandom(300_000)  # spans several download chunks when streamed
        blob_name = f"{tenant}/FIN-1.dump"
        await service.get_blob_client(container, blob_name).upload_blob(dump)
        backups[blob_name] = dump
        tenant_chain = EvidenceChain("FIN-1")
        tenant_chain.append(
            "backup",
            "finrelease",
            {
                "blob_name": blob_name,
                "sha256": hashlib.sha256(dump).hexdigest(),
                "bytes": len(dump),
            },
            AT,
        )
        tenant_chain.append(
            "tenant_rollout", "finrelease", {"tenant": tenant, "smoke": "passed"}, AT
        )
        published = await _publish(service, container, tenant_chain.bundle(), tenant=tenant)
        assert published.blob_name == evidence_blob_name("FIN-1", tenant) == f"FIN-1/{tenant}.json"
        links.append({"tenant": tenant, "head": published.head, "state": "deployed"})
    release.append(
        TENANT_BUNDLES, "finrelease", {"location": "FIN-1/{tenant}.json", "bundles": links}, AT
    )
    release.append("outcome", "finrelease", {"outcome": "Completed"}, AT)
    await _publish(service, container, release.bundle())
    return backups


async def test_verify_passes_then_fails_after_one_byte_of_a_backup_changes(service, blob_container):
    container = blob_container.name
    backups = await _publish_release_with_backups(service, container)
    report = await verify_published_evidence(
        service, "FIN-1", container=container, backup_container=container
    )
    assert report.ok, report.problems
    assert report.bundles == ["FIN-1.json", "FIN-1/acme.json", "FIN-1/globex.json"]
    assert sorted(report.backups) == sorted(f"{container}/{name}" for name in backups)

    tampered = bytearray(backups["globex/FIN-1.dump"])
    tampered[150_000] ^= 0x01
    await service.get_blob_client(container, "globex/FIN-1.dump").upload_blob(
        bytes(tampered), overwrite=True
    )
    report = await verify_published_evidence(
        service, "FIN-1", container=container, backup_container=container
    )
    assert not report.ok
    assert len(report.problems) == 1
    assert "globex/FIN-1.dump" in report.problems[0]


async def test_verify_reports_a_tenant_bundle_whose_head_does_not_match_its_link(
    service, blob_container
):
    container = blob_container.name
    tenant_chain = EvidenceChain("FIN-1")
    tenant_chain.append("tenant_rollout", "finrelease", {"tenant": "acme"}, AT)
    await _publish(service, container, tenant_chain.bundle(), tenant="acme")
    release = EvidenceChain("FIN-1")
    release.append(
        "tenant_bundle",
        "finrelease",
        {"tenant": "acme", "blob_name": "FIN-1/acme.json", "head": "0" * 64},
        AT,
    )
    await _publish(service, container, release.bundle())
    report = await verify_published_evidence(
        service, "FIN-1", container=container, backup_container=container
    )
    assert not report.ok
    assert any("FIN-1/acme.json has head" in problem for problem in report.problems)


async def test_verify_of_an_unknown_release_says_not_found(service, blob_container):
    report = await verify_published_evidence(service, "FIN-404", container=blob_container.name)
    assert report.problems == [f"{blob_container.name}/FIN-404.json: not found"]


async def test_verify_reports_a_linked_tenant_that_sealed_no_bundle(service, blob_container):
    container = blob_container.name
    release = EvidenceChain("FIN-1")
    links = [{"tenant": "acme", "head": "", "state": "error"}]
    release.append(
        TENANT_BUNDLES, "finrelease", {"location": "FIN-1/{tenant}.json", "bundles": links}, AT
    )
    await _publish(service, container, release.bundle())
    report = await verify_published_evidence(
        service, "FIN-1", container=container, backup_container=container
    )
    assert report.problems == ["entry 0 (tenant bundle of 'acme'): no bundle was sealed (error)"]
