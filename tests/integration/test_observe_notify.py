"""Observability gate against the Azure Monitor double; notifications into a webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from temporalio.testing import ActivityEnvironment

from activities.http_retry import RetryPolicy
from activities.notify import NotifyActivities, NotifySettings
from activities.observe import ObservabilityActivities, ObservabilitySettings
from devstack.doubles.monitor import AzureMonitorDouble
from devstack.doubles.webhooks import WebhookReceiver
from devstack.ports import free_port
from workflows.contracts import Notification, ObservabilityCheck

CHECK = ObservabilityCheck(release_id="FIN-1", tenants=["acme", "globex"])


@pytest_asyncio.fixture
async def monitor() -> AsyncIterator[AzureMonitorDouble]:
    async with AzureMonitorDouble(token="arm-token", subscription="sub-1") as double:
        yield double


async def _gate(monitor: AzureMonitorDouble, **overrides):
    settings = ObservabilitySettings(
        synthetic_checks={
            "login-page": monitor.synthetic_url("login"),
            "tenant": monitor.synthetic_url("tenant-{tenant}"),
        },
        subscription_id="sub-1",
        management_url=monitor.url,
        retry=RetryPolicy(attempts=2, backoff_seconds=0.01),
        **overrides,
    )

    async def token() -> str:
        return "arm-token"

    async with httpx.AsyncClient() as client:
        activities = ObservabilityActivities(settings, client, token_provider=token)
        return await ActivityEnvironment().run(activities.check_observability, CHECK)


async def test_gate_passes_when_checks_answer_and_no_alert_fires(monitor: AzureMonitorDouble):
    monitor.fire("old disk alert", "Sev1", state="Closed", condition="Resolved")
    result = await _gate(monitor)
    assert result.healthy, result.problems
    assert monitor.alert_queries[0]["alertState"] == "New"
    assert monitor.alert_queries[0]["monitorCondition"] == "Fired"


async def test_fired_sev1_alert_blocks_the_gate_naming_it(monitor: AzureMonitorDouble):
    monitor.fire("odoo-db CPU above 95%", "Sev1")
    monitor.fire("cert expires in 20 days", "Sev3")
    result = await _gate(monitor)
    assert not result.healthy
    assert len(result.problems) == 1
    assert "odoo-db CPU above 95%" in result.problems[0]
    assert "Sev1" in result.problems[0]


async def test_failing_synthetic_check_blocks_the_gate_naming_it(monitor: AzureMonitorDouble):
    monitor.set_synthetic("tenant-globex", 503)
    result = await _gate(monitor)
    assert not result.healthy
    assert result.problems == ["synthetic check 'tenant[globex]' answered HTTP 503"]


async def test_unreadable_alerts_block_the_gate(monitor: AzureMonitorDouble):
    result = await _gate(monitor, block_at_severity="Sev2")
    assert result.healthy
    monitor.token = "rotated"
    result = await _gate(monitor)
    assert not result.healthy
    assert "Azure Monitor alerts could not be read: HTTP 401" in result.problems[0]


NOTE = Notification(
    release_id="FIN-1",
    kind="approval_requested",
    phase="AwaitingApproval",
    message="Release FIN-1 (high) needs approvals",
    needed_from=["finance", "release_manager"],
    link="http://127.0.0.1:8233/namespaces/default/workflows/release-FIN-1",
)


async def test_notify_delivers_teams_and_slack_payloads():
    async with WebhookReceiver() as hooks, httpx.AsyncClient() as client:
        settings = NotifySettings(
            teams_webhooks=[hooks.hook_url("teams")], slack_webhooks=[hooks.hook_url("slack")]
        )
        result = await ActivityEnvironment().run(NotifyActivities(settings, client).notify, NOTE)
    assert (result.delivered, result.failed) == (2, 0)
    [teams] = hooks.received["teams"]
    card = teams["attachments"][0]["content"]
    assert teams["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
    texts = " ".join(block["text"] for block in card["body"])
    assert "FIN-1" in texts and "finance, release_manager" in texts
    assert card["actions"][0]["url"] == NOTE.link
    [slack] = hooks.received["slack"]
    assert "FIN-1" in slack["text"] and "release_manager" in slack["text"]
    assert NOTE.link in slack["blocks"][0]["text"]["text"]


async def test_dead_webhook_does_not_raise_and_others_still_deliver():
    retry = RetryPolicy(attempts=2, backoff_seconds=0.01)
    dead_port = free_port()
    async with WebhookReceiver() as hooks, httpx.AsyncClient() as client:
        hooks.fail("teams")
        settings = NotifySettings(
            teams_webhooks=[hooks.hook_url("teams"), f"http://127.0.0.1:{dead_port}/hook"],
            slack_webhooks=[hooks.hook_url("slack")],
            retry=retry,
        )
        result = await ActivityEnvironment().run(NotifyActivities(settings, client).notify, NOTE)
    assert (result.delivered, result.failed) == (1, 2)
    assert hooks.attempts["teams"] == 2
    assert len(hooks.received["slack"]) == 1
