"""Business smoke checks against a tenant's Odoo, over HTTP and JSON-RPC like a user would.

Checks: `health` (`/web/health`), `login` (JSON-RPC authenticate as the tenant's smoke
user), `trial_balance` (posted journal items grouped by account, company by company, compared with
the finance snapshot taken before the release) and `cron` (no active scheduled action overdue
beyond a threshold, and on Odoo 18 none failing). A failed check is a result, not an exception: the workflow decides
what a failed smoke test means. Connection errors are retried a few times; a failed
assertion is not.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from governance.inventory import Tenant
from workflows.contracts import (
    Activity,
    CompanyLedger,
    ErrorType,
    FinanceSnapshot,
    SmokeCheckResult,
    SmokeReport,
    SmokeRequest,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SmokeSettings:
    connect_attempts: int = 3
    connect_backoff_seconds: float = 1.0
    timeout_seconds: float = 30.0
    cron_overdue_after: timedelta = timedelta(hours=1)


class SmokeFailed(Exception):
    """An assertion about the tenant failed; the message is the check's detail."""


class Unreachable(Exception):
    """The tenant did not answer after every connection attempt."""


def credential_variables(tenant: str) -> tuple[str, str]:
    """`FINRELEASE_SMOKE_<TENANT>_USER` / `_PASSWORD`, tenant upper-cased, non-alnum -> `_`."""
    alias = re.sub(r"[^A-Z0-9]", "_", tenant.upper())
    return f"FINRELEASE_SMOKE_{alias}_USER", f"FINRELEASE_SMOKE_{alias}_PASSWORD"


class SmokeActivities:
    """The `finrelease-smoke` queue: needs network reach to tenants and their smoke users."""

    def __init__(
        self,
        settings: SmokeSettings | None = None,
        environ: Mapping[str, str] = os.environ,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings or SmokeSettings()
        self.environ = environ
        self.transport = transport

    @activity.defn(name=Activity.RUN_SMOKE_CHECKS)
    async def run_smoke_checks(self, request: SmokeRequest) -> SmokeReport:
        """Run the requested checks in order; `passed` only when every one passed."""
        unknown = [name for name in request.checks if name not in CHECKS]
        if unknown:
            raise ApplicationError(
                f"unknown smoke checks {unknown} for tenant {request.tenant.name}: "
                f"expected some of {sorted(CHECKS)}",
                type=ErrorType.INVALID_RELEASE,
                non_retryable=True,
            )
        # One client per run: the Odoo session cookie belongs to this tenant's login only.
        async with httpx.AsyncClient(
            timeout=self.settings.timeout_seconds, transport=self.transport
        ) as client:
            session = OdooSession(client, request.tenant, self._credentials(request), self.settings)
            results = [await self._run(name, session, request) for name in request.checks]
        passed = all(result.passed for result in results)
        log.info(
            "smoke checks done",
            release_id=request.release_id,
            tenant=request.tenant.name,
            passed=passed,
            failed=[r.name for r in results if not r.passed],
        )
        return SmokeReport(tenant=request.tenant.name, passed=passed, checks=results)

    @activity.defn(name=Activity.CHECK_SMOKE_USER)
    async def check_smoke_user(self, request: SmokeRequest) -> SmokeReport:
        """At preparation, before anything changes: the smoke user can log in and read what
        the checks read — every company of the snapshot and the scheduled actions. A user
        lacking a right would otherwise fail the smoke test after deploying and roll back."""
        return await self.run_smoke_checks(
            SmokeRequest(request.release_id, request.tenant, ["login", "rights"], request.snapshot)
        )

    def _credentials(self, request: SmokeRequest) -> tuple[str, str] | None:
        if not {"login", "trial_balance", "cron", "rights"} & set(request.checks):
            return None
        user_var, password_var = credential_variables(request.tenant.name)
        user, password = self.environ.get(user_var), self.environ.get(password_var)
        if not user or not password:
            # A worker without credentials says nothing about the tenant: not a smoke failure.
            raise ApplicationError(
                f"no smoke user for tenant {request.tenant.name}: set {user_var} and "
                f"{password_var} in the smoke worker's environment",
                type=ErrorType.CONFIGURATION_MISSING,
                non_retryable=True,
            )
        return user, password

    async def _run(
        self, name: str, session: OdooSession, request: SmokeRequest
    ) -> SmokeCheckResult:
        started = time.monotonic()
        try:
            detail = await CHECKS[name](session, request, self.settings)
            passed = True
        except (SmokeFailed, Unreachable) as failure:
            detail, passed = str(failure), False
        return SmokeCheckResult(
            name=name, passed=passed, duration_seconds=time.monotonic() - started, detail=detail
        )


class OdooSession:
    """JSON-RPC calls against one tenant, logging in on first need."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        tenant: Tenant,
        credentials: tuple[str, str] | None,
        settings: SmokeSettings,
    ) -> None:
        self.client = client
        self.tenant = tenant
        self.base = tenant.url.rstrip("/")
        self.credentials = credentials
        self.settings = settings
        self.uid: int | None = None

    async def get(self, path: str) -> httpx.Response:
        return await self._send(lambda: self.client.get(self.base + path), path)

    async def rpc(self, path: str, params: dict[str, Any]) -> Any:
        payload = {"jsonrpc": "2.0", "method": "call", "id": 1, "params": params}
        response = await self._send(lambda: self.client.post(self.base + path, json=payload), path)
        if response.status_code != 200:
            raise SmokeFailed(f"{path} answered HTTP {response.status_code}")
        body = response.json()
        if "error" in body:
            data = body["error"].get("data", {})
            raise SmokeFailed(
                f"{path}: {data.get('name', 'error')}: {data.get('message', body['error'])}"
            )
        return body.get("result")

    async def login(self) -> int:
        if self.uid is None:
            assert self.credentials is not None
            user, password = self.credentials
            params = {"db": self.tenant.database, "login": user, "password": password}
            try:
                result = await self.rpc("/web/session/authenticate", params)
            except SmokeFailed as failure:
                raise SmokeFailed(f"login as {user!r} refused: {failure}") from None
            if not result or not result.get("uid"):
                raise SmokeFailed(f"login as {user!r} returned no user id")
            self.uid = int(result["uid"])
        return self.uid

    async def call_kw(self, model: str, method: str, kwargs: dict[str, Any]) -> Any:
        await self.login()
        params = {"model": model, "method": method, "args": [], "kwargs": kwargs}
        return await self.rpc("/web/dataset/call_kw", params)

    async def _send(
        self, send: Callable[[], Awaitable[httpx.Response]], path: str
    ) -> httpx.Response:
        attempts = self.settings.connect_attempts
        for attempt in range(1, attempts + 1):
            try:
                return await send()
            except httpx.TransportError as error:
                if attempt == attempts:
                    raise Unreachable(
                        f"{self.base}{path} unreachable after {attempts} attempts: "
                        f"{type(error).__name__}"
                    ) from None
                await asyncio.sleep(self.settings.connect_backoff_seconds * attempt)
        raise AssertionError("unreachable")


# ---------------------------------------------------------------- the checks


async def check_health(session: OdooSession, request: SmokeRequest, settings: SmokeSettings) -> str:
    response = await session.get("/web/health")
    if response.status_code != 200:
        raise SmokeFailed(f"/web/health answered HTTP {response.status_code}")
    return "/web/health answered 200"


async def check_login(session: OdooSession, request: SmokeRequest, settings: SmokeSettings) -> str:
    uid = await session.login()
    return f"logged in as user id {uid}"


async def check_trial_balance(
    session: OdooSession, request: SmokeRequest, settings: SmokeSettings
) -> str:
    if request.snapshot is None:
        raise SmokeFailed("no finance snapshot to compare the trial balance with")
    snapshot = request.snapshot
    differences: list[str] = []
    # One company at a time: without `allowed_company_ids` Odoo reads every company of the
    # user at once, and two companies' accounts of one code would fold into one line.
    companies: list[CompanyLedger | None] = [*snapshot.companies] or [None]
    for company in companies:
        kwargs: dict[str, Any] = {
            "domain": [["parent_state", "=", "posted"]],
            "fields": ["debit:sum", "credit:sum", "balance:sum"],
            "groupby": ["account_id"],
            "lazy": False,
        }
        if company is not None:
            kwargs["context"] = {"allowed_company_ids": [company.id]}
        groups = await session.call_kw("account.move.line", "read_group", kwargs)
        differences += trial_balance_differences(snapshot, groups, company)
    if differences:
        raise SmokeFailed(
            f"trial balance differs from the snapshot on {len(differences)} account(s): "
            + "; ".join(differences)
        )
    return f"trial balance matches the snapshot on {len(snapshot.accounts)} accounts"


def trial_balance_differences(
    snapshot: FinanceSnapshot, groups: list[dict[str, Any]], company: CompanyLedger | None = None
) -> list[str]:
    """`<code>: debit <before> -> <now>, ...` for every account of `company` whose sums changed.

    Amounts compare at the company currency's decimal places (2 for a snapshot without
    companies); with several companies each line names its company.
    """
    unit = Decimal(1).scaleb(-(company.decimal_places if company else 2))
    now: dict[str, tuple[Decimal, ...]] = {}
    for group in groups:
        # Odoo's display name of an account is "<code> <name>".
        code = str(group["account_id"][1]).split(" ", 1)[0] if group.get("account_id") else ""
        now[code] = tuple(
            _rounded(group.get(key, 0), unit) for key in ("debit", "credit", "balance")
        )
    before = {
        a.account: tuple(_rounded(v, unit) for v in (a.debit, a.credit, a.balance))
        for a in snapshot.accounts
        if company is None or a.company == company.id
    }
    where = f"{company.name} " if company and len(snapshot.companies) > 1 else ""
    zero = (Decimal(0).quantize(unit),) * 3
    differences = []
    for code in sorted(set(before) | set(now)):
        old, new = before.get(code, zero), now.get(code, zero)
        if old != new:
            changed = [
                f"{label} {a} -> {b}"
                for label, a, b in zip(("debit", "credit", "balance"), old, new, strict=True)
                if a != b
            ]
            differences.append(f"{where}{code}: {', '.join(changed)}")
    return differences


def _rounded(value: Any, unit: Decimal) -> Decimal:
    # Odoo answers floats; str() first so 0.1 stays 0.1 and not its binary expansion.
    return Decimal(str(value or 0)).quantize(unit)


async def check_cron(session: OdooSession, request: SmokeRequest, settings: SmokeSettings) -> str:
    """Active jobs overdue, or (Odoo 18) failing: a failing job still advances `nextcall`."""
    # 18 counts consecutive failures (odoo/addons/base/models/ir_cron.py `failure_count`,
    # reset on success); 17 has no such field and asking for it is an error.
    known = await session.call_kw(
        "ir.cron", "fields_get", {"allfields": ["failure_count"], "attributes": ["type"]}
    )
    fields = ["name", "nextcall", "interval_number", "interval_type"]
    if "failure_count" in known:
        fields += ["failure_count", "first_failure_date"]
    jobs = await session.call_kw(
        "ir.cron", "search_read", {"domain": [["active", "=", True]], "fields": fields}
    )
    now = datetime.now(UTC).replace(tzinfo=None)  # Odoo stores nextcall as naive UTC
    problems = []
    for job in jobs:
        late = now - datetime.strptime(job["nextcall"], "%Y-%m-%d %H:%M:%S")
        if late > settings.cron_overdue_after:
            problems.append(
                f"{job['name']!r} overdue (due {job['nextcall']} UTC, {_duration(late)} late)"
            )
        if job.get("failure_count"):
            problems.append(
                f"{job['name']!r} failing ({job['failure_count']} consecutive failure(s) since "
                f"{job.get('first_failure_date') or 'an unknown time'} UTC)"
            )
    if problems:
        raise SmokeFailed(
            f"{len(problems)} scheduled action problem(s) (overdue means more than "
            f"{_duration(settings.cron_overdue_after)} late): " + "; ".join(problems)
        )
    return f"{len(jobs)} active scheduled actions, none overdue or failing"


async def check_rights(session: OdooSession, request: SmokeRequest, settings: SmokeSettings) -> str:
    """Each right the smoke checks need, named when missing (README: the smoke user)."""
    missing = []
    companies = request.snapshot.companies if request.snapshot else []
    for company in companies:
        try:  # the trial balance is read company by company (allowed_company_ids)
            await session.call_kw(
                "account.move.line",
                "read_group",
                {
                    "domain": [["parent_state", "=", "posted"]],
                    "fields": ["balance:sum"],
                    "groupby": ["account_id"],
                    "lazy": False,
                    "context": {"allowed_company_ids": [company.id]},
                },
            )
        except SmokeFailed as refused:
            missing.append(
                f"journal items of company {company.name} (id {company.id}): give the user "
                f"that company and accounting read access ({refused})"
            )
    try:  # ir.cron is readable by Settings administrators only (base ir.model.access.csv)
        await session.call_kw("ir.cron", "fields_get", {"allfields": ["name"]})
        await session.call_kw("ir.cron", "search_read", {"domain": [], "fields": ["name"]})
    except SmokeFailed as refused:
        missing.append(
            f"scheduled actions (ir.cron): make the user a Settings administrator ({refused})"
        )
    if missing:
        raise SmokeFailed("the smoke user cannot read " + "; ".join(missing))
    return f"the smoke user reads {len(companies)} companies' journal items and ir.cron"


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


CHECKS: dict[str, Callable[[OdooSession, SmokeRequest, SmokeSettings], Awaitable[str]]] = {
    "health": check_health,
    "login": check_login,
    "trial_balance": check_trial_balance,
    "cron": check_cron,
    "rights": check_rights,
}
