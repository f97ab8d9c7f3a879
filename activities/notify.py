"""Notifications to people: Microsoft Teams and Slack incoming webhooks.

A notification must never fail a release: each webhook is tried a bounded number of
times, then given up and logged, and the result only counts deliveries. Webhook URLs are
secrets (anyone holding one can post), so they are never logged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from temporalio import activity

from activities.http_retry import RetriesExhausted, RetryPolicy, send_with_retries
from workflows.contracts import Activity, Notification, NotificationResult

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class NotifySettings:
    teams_webhooks: Sequence[str] = ()
    slack_webhooks: Sequence[str] = ()
    retry: RetryPolicy = RetryPolicy(attempts=3, backoff_seconds=1.0, max_wait_seconds=10.0)
    timeout_seconds: float = 10.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> NotifySettings:
        """`FINRELEASE_TEAMS_WEBHOOKS` and `FINRELEASE_SLACK_WEBHOOKS`, comma-separated URLs."""

        def urls(name: str) -> tuple[str, ...]:
            return tuple(u.strip() for u in environ.get(name, "").split(",") if u.strip())

        return cls(urls("FINRELEASE_TEAMS_WEBHOOKS"), urls("FINRELEASE_SLACK_WEBHOOKS"))


class NotifyActivities:
    def __init__(self, settings: NotifySettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.client = client or httpx.AsyncClient(timeout=settings.timeout_seconds)

    @activity.defn(name=Activity.NOTIFY)
    async def notify(self, notification: Notification) -> NotificationResult:
        """Post to every configured webhook; never raises."""
        targets = [
            ("teams", url, teams_payload(notification)) for url in self.settings.teams_webhooks
        ]
        targets += [
            ("slack", url, slack_payload(notification)) for url in self.settings.slack_webhooks
        ]
        delivered = failed = 0
        for index, (kind, url, payload) in enumerate(targets):
            if await self._post(url, payload, f"{kind} webhook #{index}", notification):
                delivered += 1
            else:
                failed += 1
        return NotificationResult(delivered=delivered, failed=failed)

    async def _post(self, url: str, payload: dict[str, Any], label: str, n: Notification) -> bool:
        async def send() -> httpx.Response:
            return await self.client.post(url, json=payload)

        try:
            response = await send_with_retries(send, self.settings.retry, label)
        except RetriesExhausted as error:
            log.warning(
                "notification given up", release_id=n.release_id, kind=n.kind, error=str(error)
            )
            return False
        except Exception as error:  # never let a notification fail a release
            log.warning(
                "notification given up",
                release_id=n.release_id,
                kind=n.kind,
                webhook=label,
                error=type(error).__name__,
            )
            return False
        if not response.is_success:
            log.warning(
                "notification refused",
                release_id=n.release_id,
                kind=n.kind,
                webhook=label,
                status=response.status_code,
            )
            return False
        return True


def _title(n: Notification) -> str:
    return f"Release {n.release_id}: {n.kind.replace('_', ' ')} ({n.phase})"


def _needed(n: Notification) -> str:
    return f"Needed from: {', '.join(n.needed_from)}" if n.needed_from else ""


def teams_payload(n: Notification) -> dict[str, Any]:
    """A Teams incoming-webhook message carrying an Adaptive Card."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": _title(n),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        },
        {"type": "TextBlock", "text": n.message, "wrap": True},
    ]
    if n.needed_from:
        body.append({"type": "TextBlock", "text": _needed(n), "wrap": True})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if n.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open release", "url": n.link}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def slack_payload(n: Notification) -> dict[str, Any]:
    """A Slack incoming-webhook message: a plain-text fallback plus Block Kit blocks."""
    lines = [f"*{_title(n)}*", n.message]
    if n.needed_from:
        lines.append(_needed(n))
    if n.link:
        lines.append(f"<{n.link}|Open release>")
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
