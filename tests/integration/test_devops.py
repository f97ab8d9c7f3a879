"""Azure DevOps work item activities against the REST double, through the production client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.devops import DevOpsActivities, DevOpsSettings
from activities.http_retry import RetryPolicy
from devstack.doubles.devops import AzureDevOpsDouble
from workflows.contracts import ErrorType, WorkItemCheck, WorkItemReport

PAT = "test-pat-not-a-secret"
APPROVED_FIELDS = {
    "System.Title": "Fix tax tags for DE",
    "System.WorkItemType": "Change Request",
    "System.State": "Approved",
    "Custom.BusinessJustification": "Wrong tax report since the 2026 rate change",
    "Microsoft.VSTS.Common.Risk": "2 - Medium",
}


@pytest_asyncio.fixture
async def devops() -> AsyncIterator[AzureDevOpsDouble]:
    async with AzureDevOpsDouble(pat=PAT) as double:
        double.add_work_item(4711, APPROVED_FIELDS, rev=3)
        yield double


@pytest_asyncio.fixture
async def activities(devops: AzureDevOpsDouble) -> AsyncIterator[DevOpsActivities]:
    async with httpx.AsyncClient() as client:
        yield _activities(devops, PAT, client)


def _activities(devops: AzureDevOpsDouble, pat: str, client: httpx.AsyncClient) -> DevOpsActivities:
    settings = DevOpsSettings(
        org_url=devops.org_url,
        project=devops.project,
        pat=pat,
        retry=RetryPolicy(attempts=3, backoff_seconds=0.01),
    )
    return DevOpsActivities(settings, client)


async def _validate(activities: DevOpsActivities, risk: str = "medium", work_item: int = 4711):
    check = WorkItemCheck(release_id="FIN-1", work_item=work_item, risk=risk)
    return await ActivityEnvironment().run(activities.validate_work_item, check)


async def test_approved_change_request_is_accepted(activities: DevOpsActivities):
    info = await _validate(activities, risk="high")
    assert info.id == 4711
    assert info.state == "Approved"
    assert info.risk == "medium"
    assert info.rev == 3
    assert info.justification.startswith("Wrong tax report")
    assert info.url.endswith("/_workitems/edit/4711")


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("System.State", "Proposed", "System.State"),
        ("Custom.BusinessJustification", "  ", "Custom.BusinessJustification"),
        ("Microsoft.VSTS.Common.Risk", "1 - High", "Microsoft.VSTS.Common.Risk"),
        ("System.WorkItemType", "Bug", "System.WorkItemType"),
    ],
)
async def test_work_item_that_cannot_authorise_the_release_is_rejected_naming_the_field(
    activities: DevOpsActivities, devops: AzureDevOpsDouble, field: str, value: str, named: str
):
    devops.work_items[4711].fields[field] = value
    with pytest.raises(ApplicationError) as caught:
        await _validate(activities, risk="medium")
    assert caught.value.type == ErrorType.WORK_ITEM_INVALID
    assert caught.value.non_retryable
    assert named in str(caught.value)


async def test_release_risk_lower_than_work_item_risk_is_rejected(activities: DevOpsActivities):
    with pytest.raises(ApplicationError) as caught:
        await _validate(activities, risk="low")
    assert caught.value.type == ErrorType.WORK_ITEM_INVALID
    assert "Microsoft.VSTS.Common.Risk" in str(caught.value)
    assert "'medium'" in str(caught.value)


async def test_throttled_request_is_retried_after_retry_after(
    activities: DevOpsActivities, devops: AzureDevOpsDouble
):
    devops.fail_next(429, retry_after="1")
    info = await _validate(activities)
    assert info.id == 4711
    assert [method for method, _ in devops.requests] == ["GET", "GET"]


async def test_server_errors_beyond_the_retry_budget_stay_retryable_for_temporal(
    activities: DevOpsActivities, devops: AzureDevOpsDouble
):
    devops.fail_next(503, times=3)
    with pytest.raises(ApplicationError) as caught:
        await _validate(activities)
    assert not caught.value.non_retryable
    assert "503" in str(caught.value)
    assert len(devops.requests) == 3


async def test_refused_pat_says_what_to_fix_and_is_not_retried(devops: AzureDevOpsDouble):
    async with httpx.AsyncClient() as client:
        activities = _activities(devops, "expired-pat", client)
        with pytest.raises(ApplicationError) as caught:
            await _validate(activities)
    assert caught.value.type == ErrorType.WORK_ITEM_ACCESS
    assert caught.value.non_retryable
    assert "AZURE_DEVOPS_PAT" in str(caught.value)
    assert "expired-pat" not in str(caught.value)
    assert len(devops.requests) == 1


async def test_unknown_work_item_is_not_found_naming_the_id(activities: DevOpsActivities):
    with pytest.raises(ApplicationError) as caught:
        await _validate(activities, work_item=999)
    assert caught.value.type == ErrorType.NOT_FOUND
    assert "/workitems/999" in str(caught.value)


def _report(outcome: str = "Completed") -> WorkItemReport:
    return WorkItemReport(
        release_id="FIN-1",
        work_item=4711,
        outcome=outcome,
        approvers=["bob@example.com", "carol@example.com"],
        tenants={"acme": "deployed", "globex": "deployed"},
        backups=["http://blob/backups/acme.dump"],
        evidence_url="http://blob/evidence/FIN-1.json",
    )


async def test_report_comments_and_closes_the_work_item(
    activities: DevOpsActivities, devops: AzureDevOpsDouble
):
    result = await ActivityEnvironment().run(activities.report_to_work_item, _report())
    item = devops.work_items[4711]
    assert result.state == "Closed"
    assert item.fields["System.State"] == "Closed"
    assert [c["id"] for c in item.comments] == [result.comment_id]
    text = item.comments[0]["text"]
    for expected in (
        "FIN-1",
        "Completed",
        "carol@example.com",
        "globex",
        "acme.dump",
        "FIN-1.json",
    ):
        assert expected in text
    assert item.history[0]["operations"][0] == {"op": "test", "path": "/rev", "value": 3}


async def test_concurrent_edit_is_re_read_and_the_state_change_retried(
    activities: DevOpsActivities, devops: AzureDevOpsDouble
):
    devops.edit_concurrently_before_next_patch()
    result = await ActivityEnvironment().run(activities.report_to_work_item, _report())
    item = devops.work_items[4711]
    assert result.state == "Closed"
    assert [method for method, _ in devops.requests].count("PATCH") == 2
    assert item.history[-1]["operations"][0]["value"] == 4  # the rev after the other edit


async def test_retried_report_posts_one_comment_only(
    activities: DevOpsActivities, devops: AzureDevOpsDouble
):
    first = await ActivityEnvironment().run(activities.report_to_work_item, _report())
    second = await ActivityEnvironment().run(activities.report_to_work_item, _report())
    assert first == second
    assert len(devops.work_items[4711].comments) == 1


async def test_outcome_without_target_state_leaves_the_state(
    activities: DevOpsActivities, devops: AzureDevOpsDouble
):
    result = await ActivityEnvironment().run(activities.report_to_work_item, _report("RolledBack"))
    assert result.state == "Approved"
    assert devops.work_items[4711].history == []


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    from datetime import UTC, datetime

    from activities.http_retry import retry_after_seconds

    now = datetime(2026, 11, 21, 20, 0, 0, tzinfo=UTC)
    seconds = httpx.Response(429, headers={"Retry-After": "7"})
    dated = httpx.Response(429, headers={"Retry-After": "Sat, 21 Nov 2026 20:00:30 GMT"})
    assert retry_after_seconds(seconds, now) == 7.0
    assert retry_after_seconds(dated, now) == 30.0
    assert retry_after_seconds(httpx.Response(429), now) is None


def test_missing_devops_configuration_names_the_variables():
    with pytest.raises(ApplicationError) as caught:
        DevOpsSettings.from_environment({"AZURE_DEVOPS_ORG_URL": "https://dev.azure.com/contoso"})
    assert caught.value.type == ErrorType.CONFIGURATION_MISSING
    assert "AZURE_DEVOPS_PROJECT, AZURE_DEVOPS_PAT" in str(caught.value)
