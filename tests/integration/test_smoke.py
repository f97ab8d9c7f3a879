"""Smoke checks against the Odoo JSON-RPC double, answered from a real seeded tenant database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import psycopg
import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.smoke import SmokeActivities, SmokeSettings, credential_variables
from devstack.doubles.odoo import OdooDouble, OdooTenantDouble
from devstack.odoo_seed import seed_odoo_database
from governance.inventory import Tenant
from workflows.contracts import AccountBalance, ErrorType, FinanceSnapshot, SmokeRequest

ALL_CHECKS = ["health", "login", "trial_balance", "cron"]


@pytest.fixture
def tenant_db(pg_database):
    seed_odoo_database(pg_database.dsn, entries=200, seed=7, attachments=0)
    with psycopg.connect(pg_database.dsn) as conn:
        # A live Odoo's scheduler keeps `nextcall` ahead of now; the seed is frozen in 2025.
        conn.execute(
            "UPDATE ir_cron SET nextcall = now() AT TIME ZONE 'UTC' + interval '5 minutes'"
        )
    return pg_database


@pytest_asyncio.fixture
async def odoo(tenant_db) -> AsyncIterator[OdooDouble]:
    tenants = {"acme-de": OdooTenantDouble(dsn=tenant_db.dsn, login="smoke", password="s3cret")}
    async with OdooDouble(tenants) as double:
        yield double


@pytest.fixture
def tenant(odoo: OdooDouble, tenant_db) -> Tenant:
    return Tenant(
        name="acme-de",
        tier="shared",
        namespace="odoo-acme",
        deployments={"web": "odoo-web"},
        db_server="main",
        database=tenant_db.name,
        filestore="acme-de/",
        url=odoo.tenant_url("acme-de"),
        timezone="Europe/Berlin",
        calendar="de",
    )


@pytest.fixture
def smoke() -> SmokeActivities:
    user_var, password_var = credential_variables("acme-de")
    assert (user_var, password_var) == (
        "FINRELEASE_SMOKE_ACME_DE_USER",
        "FINRELEASE_SMOKE_ACME_DE_PASSWORD",
    )
    settings = SmokeSettings(connect_attempts=2, connect_backoff_seconds=0.01)
    return SmokeActivities(settings, environ={user_var: "smoke", password_var: "s3cret"})


def snapshot_of(dsn: str) -> FinanceSnapshot:
    """The pre-release trial balance, straight from SQL (independent of the double)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT a.code, sum(l.debit), sum(l.credit), sum(l.balance) FROM account_move_line l"
            " JOIN account_account a ON a.id = l.account_id WHERE l.parent_state = 'posted'"
            " GROUP BY a.code ORDER BY a.code"
        ).fetchall()
    accounts = [AccountBalance(code, str(d), str(c), str(b)) for code, d, c, b in rows]
    total = str(sum(r[1] for r in rows))
    return FinanceSnapshot("acme-de", "", accounts, total, total, 0, [], [], 0)


async def _run(
    smoke: SmokeActivities, tenant: Tenant, snapshot: FinanceSnapshot | None, checks=None
):
    request = SmokeRequest("FIN-1", tenant, checks or ALL_CHECKS, snapshot)
    return await ActivityEnvironment().run(smoke.run_smoke_checks, request)


async def test_untouched_tenant_passes_every_smoke_check(smoke, tenant, tenant_db):
    report = await _run(smoke, tenant, snapshot_of(tenant_db.dsn))
    assert report.passed, report
    assert [c.name for c in report.checks] == ALL_CHECKS
    assert all(c.passed and c.duration_seconds >= 0 for c in report.checks)


async def test_changed_debit_fails_trial_balance_naming_the_account(smoke, tenant, tenant_db):
    snapshot = snapshot_of(tenant_db.dsn)
    with psycopg.connect(tenant_db.dsn) as conn:
        code = conn.execute(
            "UPDATE account_move_line l SET debit = debit + 10 FROM account_account a"
            " WHERE l.id = (SELECT min(id) FROM account_move_line WHERE parent_state = 'posted'"
            " AND debit > 0) AND a.id = l.account_id RETURNING a.code"
        ).fetchone()[0]
    report = await _run(smoke, tenant, snapshot)
    assert not report.passed
    by_name = {c.name: c for c in report.checks}
    assert by_name["health"].passed and by_name["login"].passed and by_name["cron"].passed
    assert not by_name["trial_balance"].passed
    assert f"{code}: debit" in by_name["trial_balance"].detail
    assert "1 account(s)" in by_name["trial_balance"].detail


async def test_overdue_cron_fails_the_cron_check_naming_the_job(smoke, tenant, tenant_db):
    with psycopg.connect(tenant_db.dsn) as conn:
        conn.execute(
            "UPDATE ir_cron SET nextcall = now() AT TIME ZONE 'UTC' - interval '3 hours'"
            " WHERE id = 2"
        )
    report = await _run(smoke, tenant, None, ["cron"])
    assert not report.passed
    assert "Mail: Email Queue Manager" in report.checks[0].detail
    assert "Account: Post draft" not in report.checks[0].detail


async def test_wrong_password_fails_login(tenant, tenant_db):
    user_var, password_var = credential_variables("acme-de")
    smoke = SmokeActivities(environ={user_var: "smoke", password_var: "wrong"})
    report = await _run(smoke, tenant, None, ["health", "login"])
    assert not report.passed
    assert report.checks[0].passed
    assert "AccessDenied" in report.checks[1].detail
    assert "wrong" not in report.checks[1].detail


async def test_unreachable_tenant_fails_checks_without_raising(smoke, tenant, tenant_db):
    from devstack.ports import free_port

    gone = replace(tenant, url=f"http://127.0.0.1:{free_port()}/acme-de")
    report = await _run(smoke, gone, snapshot_of(tenant_db.dsn), ["health"])
    assert not report.passed
    assert "unreachable after 2 attempts" in report.checks[0].detail


async def test_missing_smoke_credentials_are_a_configuration_error(tenant):
    with pytest.raises(ApplicationError) as caught:
        await _run(SmokeActivities(environ={}), tenant, None, ["login"])
    assert caught.value.type == ErrorType.CONFIGURATION_MISSING
    assert "FINRELEASE_SMOKE_ACME_DE_PASSWORD" in str(caught.value)
