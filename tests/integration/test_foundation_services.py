"""The real services every other test stands on answer as the fixtures promise."""

from __future__ import annotations

import uuid
from datetime import timedelta

import psycopg
import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.azure_storage import blob_service_from_connection_string


@workflow.defn(sandboxed=False)
class SleepThreeDays:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(timedelta(days=3))
        return "rested"


async def test_time_skipping_skips_a_three_day_sleep(
    time_skipping_env: WorkflowEnvironment, task_queue: str
):
    import time

    async with Worker(time_skipping_env.client, task_queue=task_queue, workflows=[SleepThreeDays]):
        started = time.monotonic()
        result = await time_skipping_env.client.execute_workflow(
            SleepThreeDays.run, id=f"sleep-{uuid.uuid4()}", task_queue=task_queue
        )
        elapsed = time.monotonic() - started
    assert result == "rested"
    # Not a speed target: three days must be skipped, not slept (a generous bound).
    assert elapsed < 30


@workflow.defn(sandboxed=False)
class Echo:
    @workflow.run
    async def run(self, text: str) -> str:
        return text.upper()


RELEASE_ID = SearchAttributeKey.for_keyword("ReleaseId")
TENANTS = SearchAttributeKey.for_keyword_list("Tenants")


@pytest.mark.e2e
async def test_dev_server_round_trip_with_queryable_search_attributes(
    dev_server_env: WorkflowEnvironment, task_queue: str
):
    client: Client = dev_server_env.client
    release = f"FIN-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=task_queue, workflows=[Echo]):
        handle = await client.start_workflow(
            Echo.run,
            "ok",
            id=f"release-{release}",
            task_queue=task_queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(RELEASE_ID, release),
                    SearchAttributePair(TENANTS, ["berlin", "tokyo"]),
                ]
            ),
        )
        assert await handle.result() == "OK"
    found = []
    for _ in range(50):  # visibility is eventually consistent
        found = [
            w async for w in client.list_workflows(f"ReleaseId = '{release}' AND Tenants = 'tokyo'")
        ]
        if found:
            break
        import asyncio

        await asyncio.sleep(0.2)
    assert [w.id for w in found] == [f"release-{release}"]


async def test_azurite_upload_download_and_metadata_round_trip(blob_container):
    async with blob_service_from_connection_string(blob_container.connection_string) as service:
        blob = service.get_blob_client(blob_container.name, "a/b.txt")
        await blob.upload_blob(b"journal", metadata={"sha256": "abc"})
        downloaded = await (await blob.download_blob()).readall()
        properties = await blob.get_blob_properties()
    assert downloaded == b"journal"
    assert properties.metadata == {"sha256": "abc"}


def _databases(admin_dsn: str) -> set[str]:
    with psycopg.connect(admin_dsn) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


_seen: list[str] = []


@pytest.mark.parametrize("attempt", [1, 2])
def test_each_test_gets_its_own_empty_database(pg_database, attempt):
    with psycopg.connect(pg_database.dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        conn.execute("CREATE TABLE marker (id int)")
    assert tables == (0,)
    assert pg_database.name not in _seen
    _seen.append(pg_database.name)
    if attempt == 2:
        # the first test's database is gone once that test finished
        assert _seen[0] not in _databases(pg_database.admin_dsn)
