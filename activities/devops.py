"""Azure DevOps work items: the change request a release must point to, and its final report.

REST API 7.1 with httpx and a PAT (basic auth, empty user name). Throttling (429) and
outages (5xx) are retried honouring `Retry-After`; a refused PAT, a missing project or
work item are not retried and say what to fix. State changes carry a JSON Patch `test`
on `/rev`, so a concurrent edit is detected, re-read and retried instead of overwritten.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.http_retry import RetriesExhausted, RetryPolicy, send_with_retries
from workflows.contracts import (
    Activity,
    ErrorType,
    WorkItemCheck,
    WorkItemInfo,
    WorkItemReport,
    WorkItemReportResult,
)

log = structlog.get_logger(__name__)

API_VERSION = "7.1"
COMMENTS_API_VERSION = "7.1-preview.4"  # the comments API is still a preview in 7.1
RISK_ORDER = ("low", "medium", "high", "emergency")
CONFLICT_STATUS = (409, 412)


def _default_risk_mapping() -> dict[str, str]:
    # Microsoft.VSTS.Common.Risk's picklist, plus our own class names as they are.
    mapping = {"1 - High": "high", "2 - Medium": "medium", "3 - Low": "low"}
    mapping.update({risk: risk for risk in RISK_ORDER})
    return mapping


@dataclass(frozen=True)
class DevOpsSettings:
    """Where the work items live and which of them a release may point to."""

    org_url: str
    project: str
    pat: str = field(repr=False)
    accepted_types: tuple[str, ...] = ("Change Request",)
    approved_states: tuple[str, ...] = ("Approved",)
    justification_field: str = "Custom.BusinessJustification"
    risk_field: str = "Microsoft.VSTS.Common.Risk"
    risk_mapping: Mapping[str, str] = field(default_factory=_default_risk_mapping)
    # Outcome -> state to move the work item to; an outcome not listed leaves the state alone.
    target_states: Mapping[str, str] = field(default_factory=lambda: {"Completed": "Closed"})
    conflict_attempts: int = 5
    retry: RetryPolicy = RetryPolicy()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> DevOpsSettings:
        """`AZURE_DEVOPS_ORG_URL`, `AZURE_DEVOPS_PROJECT`, `AZURE_DEVOPS_PAT` (all required)."""
        names = ("AZURE_DEVOPS_ORG_URL", "AZURE_DEVOPS_PROJECT", "AZURE_DEVOPS_PAT")
        missing = [name for name in names if not environ.get(name)]
        if missing:
            raise ApplicationError(
                f"Azure DevOps is not configured: set {', '.join(missing)} in the azure worker's "
                "environment",
                type=ErrorType.CONFIGURATION_MISSING,
                non_retryable=True,
            )
        optional: dict[str, Any] = {}
        if environ.get("FINRELEASE_DEVOPS_ACCEPTED_TYPES"):
            optional["accepted_types"] = _csv(environ["FINRELEASE_DEVOPS_ACCEPTED_TYPES"])
        if environ.get("FINRELEASE_DEVOPS_APPROVED_STATES"):
            optional["approved_states"] = _csv(environ["FINRELEASE_DEVOPS_APPROVED_STATES"])
        if environ.get("FINRELEASE_DEVOPS_JUSTIFICATION_FIELD"):
            optional["justification_field"] = environ["FINRELEASE_DEVOPS_JUSTIFICATION_FIELD"]
        if environ.get("FINRELEASE_DEVOPS_RISK_FIELD"):
            optional["risk_field"] = environ["FINRELEASE_DEVOPS_RISK_FIELD"]
        return cls(
            org_url=environ["AZURE_DEVOPS_ORG_URL"].rstrip("/"),
            project=environ["AZURE_DEVOPS_PROJECT"],
            pat=environ["AZURE_DEVOPS_PAT"],
            **optional,
        )


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


class DevOpsActivities:
    """The work item activities of the `finrelease-azure` queue; holds one httpx client."""

    def __init__(self, settings: DevOpsSettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.client = client or httpx.AsyncClient(timeout=30.0)
        self._auth = httpx.BasicAuth("", settings.pat)

    @activity.defn(name=Activity.VALIDATE_WORK_ITEM)
    async def validate_work_item(self, check: WorkItemCheck) -> WorkItemInfo:
        """The work item exists, has an accepted type, an approved state, a justification,
        and a risk class not higher than the release's."""
        item = await self._read(check.work_item)
        info = self._info(item)
        problems = self._problems(info, check.risk)
        if problems:
            raise ApplicationError(
                f"work item {check.work_item} cannot authorise release {check.release_id}: "
                + "; ".join(problems),
                type=ErrorType.WORK_ITEM_INVALID,
                non_retryable=True,
            )
        log.info(
            "work item valid", release_id=check.release_id, work_item=info.id, state=info.state
        )
        return info

    @activity.defn(name=Activity.REPORT_TO_WORK_ITEM)
    async def report_to_work_item(self, report: WorkItemReport) -> WorkItemReportResult:
        """Comment the outcome on the work item (once per release and outcome) and move it to
        the state configured for that outcome."""
        comment_id = await self._comment_once(report)
        state = await self._move_to(
            report.work_item, self.settings.target_states.get(report.outcome)
        )
        log.info(
            "work item reported",
            release_id=report.release_id,
            work_item=report.work_item,
            outcome=report.outcome,
            state=state,
        )
        return WorkItemReportResult(comment_id=comment_id, state=state)

    # ------------------------------------------------------------ validation

    def _info(self, item: dict[str, Any]) -> WorkItemInfo:
        fields = item.get("fields", {})
        raw_risk = str(fields.get(self.settings.risk_field, "") or "")
        return WorkItemInfo(
            id=int(item["id"]),
            title=str(fields.get("System.Title", "")),
            work_item_type=str(fields.get("System.WorkItemType", "")),
            state=str(fields.get("System.State", "")),
            risk=self.settings.risk_mapping.get(raw_risk, raw_risk),
            justification=str(fields.get(self.settings.justification_field, "") or "").strip(),
            url=str(item.get("_links", {}).get("html", {}).get("href") or item.get("url", "")),
            rev=int(item.get("rev", 0)),
        )

    def _problems(self, info: WorkItemInfo, release_risk: str) -> list[str]:
        settings = self.settings
        problems = []
        if info.work_item_type not in settings.accepted_types:
            problems.append(
                f"System.WorkItemType is {info.work_item_type!r}, expected one of "
                f"{list(settings.accepted_types)}"
            )
        if info.state not in settings.approved_states:
            problems.append(
                f"System.State is {info.state!r}, expected one of {list(settings.approved_states)}"
            )
        if not info.justification:
            problems.append(f"{settings.justification_field} (business justification) is empty")
        if info.risk not in RISK_ORDER:
            problems.append(
                f"{settings.risk_field} is {info.risk!r}, which maps to none of {list(RISK_ORDER)}"
            )
        elif release_risk in RISK_ORDER and RISK_ORDER.index(release_risk) < RISK_ORDER.index(
            info.risk
        ):
            problems.append(
                f"{settings.risk_field} is {info.risk!r}, higher than the release's risk "
                f"{release_risk!r}: raise the release's risk class"
            )
        return problems

    # ------------------------------------------------------------ report

    async def _comment_once(self, report: WorkItemReport) -> int:
        # A retried activity must not post the report twice: the marker finds the first one.
        marker = f"finrelease:{report.release_id}:{report.outcome}"
        existing = await self._request(
            "GET", self._comments_url(report.work_item), api=COMMENTS_API_VERSION
        )
        for comment in existing.get("comments", []):
            if marker in comment.get("text", ""):
                return int(comment["id"])
        created = await self._request(
            "POST",
            self._comments_url(report.work_item),
            api=COMMENTS_API_VERSION,
            json={"text": report_comment(report, marker)},
        )
        return int(created["id"])

    async def _move_to(self, work_item: int, target: str | None) -> str:
        for _ in range(self.settings.conflict_attempts):
            item = await self._read(work_item)
            state = str(item.get("fields", {}).get("System.State", ""))
            if not target or state == target:
                return state
            patch = [
                {"op": "test", "path": "/rev", "value": item["rev"]},
                {"op": "add", "path": "/fields/System.State", "value": target},
            ]
            try:
                updated = await self._request(
                    "PATCH",
                    self._item_url(work_item),
                    json=patch,
                    content_type="application/json-patch+json",
                )
            except _Conflict:
                log.info("work item changed concurrently, re-reading", work_item=work_item)
                continue
            return str(updated.get("fields", {}).get("System.State", target))
        raise ApplicationError(
            f"work item {work_item} kept changing under us ({self.settings.conflict_attempts} "
            f"attempts to set System.State to {target!r})"
        )

    # ------------------------------------------------------------ HTTP

    def _item_url(self, work_item: int) -> str:
        return f"{self.settings.org_url}/{self.settings.project}/_apis/wit/workitems/{work_item}"

    def _comments_url(self, work_item: int) -> str:
        # Same resource as _item_url; Azure DevOps spells this route with a capital I.
        base = f"{self.settings.org_url}/{self.settings.project}/_apis/wit"
        return f"{base}/workItems/{work_item}/comments"

    async def _read(self, work_item: int) -> dict[str, Any]:
        return await self._request("GET", self._item_url(work_item), work_item=work_item)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        api: str = API_VERSION,
        json: Any = None,
        content_type: str = "application/json",
        work_item: int | None = None,
    ) -> dict[str, Any]:
        async def send() -> httpx.Response:
            return await self.client.request(
                method,
                url,
                params={"api-version": api},
                json=json,
                auth=self._auth,
                headers={"Content-Type": content_type, "Accept": "application/json"},
            )

        try:
            response = await send_with_retries(send, self.settings.retry, f"Azure DevOps {method}")
        except RetriesExhausted as error:
            # Retryable: Temporal tries the activity again later.
            raise ApplicationError(f"Azure DevOps did not answer: {error}") from None
        if response.status_code in CONFLICT_STATUS:
            raise _Conflict()
        self._raise_for_access(response, url)
        if response.is_error:
            raise ApplicationError(
                f"Azure DevOps answered {response.status_code} to {method} {url}: "
                f"{_message(response)}",
                non_retryable=response.status_code < 500,
            )
        return dict(response.json())

    def _raise_for_access(self, response: httpx.Response, url: str) -> None:
        settings = self.settings
        status = response.status_code
        if status == 401:
            message = (
                f"Azure DevOps at {settings.org_url} refused the PAT (401): check that "
                "AZURE_DEVOPS_PAT is valid, not expired, and belongs to this organisation"
            )
        elif status == 403:
            message = (
                f"the PAT may not use work items in project {settings.project!r} (403): give it "
                "the 'Work Items (Read & write)' scope and access to the project"
            )
        elif status == 404:
            raise ApplicationError(
                f"not found (404) at {url}: check the work item id in release.yaml and "
                f"AZURE_DEVOPS_PROJECT={settings.project!r} / AZURE_DEVOPS_ORG_URL: "
                f"{_message(response)}",
                type=ErrorType.NOT_FOUND,
                non_retryable=True,
            )
        else:
            return
        raise ApplicationError(message, type=ErrorType.WORK_ITEM_ACCESS, non_retryable=True)


class _Conflict(Exception):
    """The `test` on `/rev` failed: someone saved the work item in between."""


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", ""))[:300]
    except ValueError:
        return response.text[:300]


def report_comment(report: WorkItemReport, marker: str) -> str:
    """The HTML comment summarising a release for the people following the work item."""
    e = html.escape
    tenants = "".join(
        f"<li>{e(name)}: {e(outcome)}</li>" for name, outcome in sorted(report.tenants.items())
    )
    backups = "".join(f"<li>{e(url)}</li>" for url in report.backups)
    return (
        f"<p><b>Release {e(report.release_id)}: {e(report.outcome)}</b></p>"
        f"<p>Approved by: {e(', '.join(report.approvers) or 'nobody')}</p>"
        f"<p>Tenants:</p><ul>{tenants or '<li>none</li>'}</ul>"
        f"<p>Backups:</p><ul>{backups or '<li>none</li>'}</ul>"
        f'<p>Evidence: <a href="{e(report.evidence_url)}">{e(report.evidence_url)}</a></p>'
        f"<p><small>{e(marker)}</small></p>"
    )
