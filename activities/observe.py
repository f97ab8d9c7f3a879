"""Observability gate: the environment must look healthy before the first wave starts.

Two sources: synthetic checks (URLs from configuration, each must answer 2xx within a
timeout; `{tenant}` in a URL expands to every tenant of the release) and Azure Monitor's
fired alerts of the environment's scope (`Microsoft.AlertsManagement/alerts`, bearer token
from azure-identity). A fired alert at or above the configured severity blocks the gate,
and so does an alerts query that cannot be answered: a gate that cannot see must not pass.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from temporalio import activity

from activities.http_retry import RetriesExhausted, RetryPolicy, send_with_retries
from workflows.contracts import Activity, ObservabilityCheck, ObservabilityResult

log = structlog.get_logger(__name__)

ALERTS_API_VERSION = "2019-05-05-preview"
MANAGEMENT_SCOPE = "https://management.azure.com/.default"
SEVERITIES = ("Sev0", "Sev1", "Sev2", "Sev3", "Sev4")  # Sev0 is the most severe

TokenProvider = Callable[[], Awaitable[str]]


@dataclass(frozen=True)
class ObservabilitySettings:
    synthetic_checks: Mapping[str, str] = field(default_factory=dict)  # name -> URL
    synthetic_timeout_seconds: float = 10.0
    subscription_id: str = ""  # empty: no Azure Monitor query (e.g. a local demo without alerts)
    resource_group: str = ""  # narrows the alerts to the environment's resource group
    management_url: str = "https://management.azure.com"
    block_at_severity: str = "Sev1"  # this severity and every more severe one blocks
    retry: RetryPolicy = RetryPolicy(attempts=3)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> ObservabilitySettings:
        """`FINRELEASE_SYNTHETIC_CHECKS` (`name=url,...`), `FINRELEASE_ALERTS_SUBSCRIPTION`,
        `FINRELEASE_ALERTS_RESOURCE_GROUP`, `FINRELEASE_ALERTS_MIN_SEVERITY`."""
        checks = {}
        for item in environ.get("FINRELEASE_SYNTHETIC_CHECKS", "").split(","):
            name, _, url = item.strip().partition("=")
            if name and url:
                checks[name] = url
        return cls(
            synthetic_checks=checks,
            subscription_id=environ.get("FINRELEASE_ALERTS_SUBSCRIPTION", ""),
            resource_group=environ.get("FINRELEASE_ALERTS_RESOURCE_GROUP", ""),
            management_url=environ.get("FINRELEASE_MANAGEMENT_URL", cls.management_url),
            block_at_severity=environ.get("FINRELEASE_ALERTS_MIN_SEVERITY", "Sev1"),
        )


def azure_identity_token_provider() -> TokenProvider:
    """Bearer tokens for Azure Resource Manager from DefaultAzureCredential (workload identity)."""
    from azure.identity.aio import DefaultAzureCredential

    credential = DefaultAzureCredential()

    async def token() -> str:
        return (await credential.get_token(MANAGEMENT_SCOPE)).token

    return token


class ObservabilityActivities:
    def __init__(
        self,
        settings: ObservabilitySettings,
        client: httpx.AsyncClient | None = None,
        token_provider: TokenProvider | None = None,
    ) -> None:
        if settings.block_at_severity not in SEVERITIES:
            raise ValueError(f"block_at_severity must be one of {SEVERITIES}")
        self.settings = settings
        self.client = client or httpx.AsyncClient(timeout=30.0)
        self.token_provider = token_provider

    @activity.defn(name=Activity.CHECK_OBSERVABILITY)
    async def check_observability(self, check: ObservabilityCheck) -> ObservabilityResult:
        """Healthy when every synthetic check answers 2xx and no blocking alert is fired."""
        problems = await self._synthetic_problems(check.tenants)
        problems += await self._alert_problems()
        log.info(
            "observability gate",
            release_id=check.release_id,
            healthy=not problems,
            problems=problems,
        )
        return ObservabilityResult(healthy=not problems, problems=problems)

    async def _synthetic_problems(self, tenants: list[str]) -> list[str]:
        problems = []
        for name, url in self._expanded_checks(tenants):
            try:
                response = await self.client.get(
                    url, timeout=self.settings.synthetic_timeout_seconds
                )
            except httpx.TimeoutException:
                problems.append(
                    f"synthetic check {name!r} did not answer within "
                    f"{self.settings.synthetic_timeout_seconds:g}s"
                )
                continue
            except httpx.TransportError as error:
                problems.append(f"synthetic check {name!r} unreachable: {type(error).__name__}")
                continue
            if not response.is_success:
                problems.append(f"synthetic check {name!r} answered HTTP {response.status_code}")
        return problems

    def _expanded_checks(self, tenants: list[str]) -> list[tuple[str, str]]:
        checks = []
        for name, url in self.settings.synthetic_checks.items():
            if "{tenant}" in url:
                checks += [(f"{name}[{t}]", url.replace("{tenant}", t)) for t in tenants]
            else:
                checks.append((name, url))
        return checks

    async def _alert_problems(self) -> list[str]:
        settings = self.settings
        if not settings.subscription_id:
            return []
        if self.token_provider is None:
            self.token_provider = azure_identity_token_provider()
        try:
            alerts = await self._fired_alerts()
        except (RetriesExhausted, AlertsQueryFailed) as error:
            return [f"Azure Monitor alerts could not be read: {error}"]
        limit = SEVERITIES.index(settings.block_at_severity)
        problems = []
        for alert in alerts:
            essentials = alert.get("properties", {}).get("essentials", {})
            severity = essentials.get("severity", "")
            if severity in SEVERITIES and SEVERITIES.index(severity) <= limit:
                target = essentials.get("targetResource", "")
                name = alert.get("name", "?")
                problems.append(f"Azure Monitor alert {name!r} ({severity}) is fired on {target}")
        return problems

    async def _fired_alerts(self) -> list[dict[str, Any]]:
        settings = self.settings
        assert self.token_provider is not None
        token = await self.token_provider()
        url: str | None = (
            f"{settings.management_url.rstrip('/')}/subscriptions/{settings.subscription_id}"
            "/providers/Microsoft.AlertsManagement/alerts"
        )
        params: dict[str, str] | None = {
            "api-version": ALERTS_API_VERSION,
            "alertState": "New",
            "monitorCondition": "Fired",
        }
        if settings.resource_group and params is not None:
            params["targetResourceGroup"] = settings.resource_group
        alerts: list[dict[str, Any]] = []
        while url:
            body = await self._alerts_page(url, params, token)
            alerts += body.get("value", [])
            url, params = body.get("nextLink"), None  # nextLink carries its own query
        return alerts

    async def _alerts_page(
        self, url: str, params: dict[str, str] | None, token: str
    ) -> dict[str, Any]:
        async def send() -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"}
            return await self.client.get(url, params=params, headers=headers)

        response = await send_with_retries(send, self.settings.retry, "Azure Monitor alerts")
        if not response.is_success:
            raise AlertsQueryFailed(f"HTTP {response.status_code}: {response.text[:200]}")
        return dict(response.json())


class AlertsQueryFailed(Exception):
    pass
