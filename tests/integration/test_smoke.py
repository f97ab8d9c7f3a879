"""Smoke checks against the Odoo JSON-RPC double, answered from a real seeded tenant database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import psycopg
import pytest
import pytest_asyncio
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.finance_ledger import finance_snapshot_of
from activities.smoke import SmokeActivities, SmokeSettings, credential_variables
from devstack.doubles.odoo import OdooDouble, OdooTenantDouble
from devstack.odoo_seed import seed_odoo_database
from governance.inventory import Tenant
from workflows.contracts import ErrorType, FinanceSnapshot, SmokeRequest

ALL_CHECKS = ["health", "login", "trial_balance", "cron"]


# The code of account `a` as company of line `l` sees it, per version (see odoo_schema).
CODE = {"17.0": "a.code", "18.0": "a.code_store ->> l.company_id::text"}


@pytest.fixture(params=["17.0", "18.0"])
def odoo_version(request) -> str:
    return request.param


@pytest.fixture
def tenant_db(pg_database, odoo_version):
    """Two companies on each version: on 18 they share one chart of accounts."""
    seed_odoo_database(
        pg_database.dsn, entries=200, seed=7, attachments=0, version=odoo_version, companies=2
    )
    with psycopg.connect(pg_database.dsn) as conn:
        # A live Odoo's scheduler keeps `nextcall` ahead of now; the seed is frozen in 2025.
        conn.execute(
            "UPDATE ir_cron SET nextcall = now() AT TIME ZONE 'UTC' + interval '5 minutes'"
        )
    return pg_database


@pytest_asyncio.fixture
async def odoo(tenant_db) -> AsyncIterator[OdooDouble]:
    tenants = {
        "acme-de": OdooTenantDouble(
            dsn=tenant_db.dsn, login="smoke", password="s3cret", company_ids=(1, 2)
        )
    }
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


async def snapshot_of(dsn: str) -> FinanceSnapshot:
    """The pre-release snapshot, read from SQL by the finance snapshot (not by the double)."""
    return await finance_snapshot_of(dsn, "acme-de")


async def _run(
    smoke: SmokeActivities, tenant: Tenant, snapshot: FinanceSnapshot | None, checks=None
):
    request = SmokeRequest("FIN-1", tenant, checks or ALL_CHECKS, snapshot)
    return await ActivityEnvironment().run(smoke.run_smoke_checks, request)


async def test_untouched_tenant_passes_every_smoke_check(smoke, tenant, tenant_db):
    report = await _run(smoke, tenant, await snapshot_of(tenant_db.dsn))
    assert report.passed, report
    assert [c.name for c in report.checks] == ALL_CHECKS
    assert all(c.passed and c.duration_seconds >= 0 for c in report.checks)


async def test_changed_debit_fails_trial_balance_naming_company_and_account(
    smoke, tenant, tenant_db, odoo_version
):
    snapshot = await snapshot_of(tenant_db.dsn)
    with psycopg.connect(tenant_db.dsn) as conn:
        code = conn.execute(
            "UPDATE account_move_line l SET debit = debit + 10 FROM account_account a"
            " WHERE l.id = (SELECT min(id) FROM account_move_line WHERE parent_state = 'posted'"
            f" AND debit > 0 AND company_id = 2) AND a.id = l.account_id"
            f" RETURNING {CODE[odoo_version]}"
        ).fetchone()[0]
    report = await _run(smoke, tenant, snapshot)
    assert not report.passed
    by_name = {c.name: c for c in report.checks}
    assert by_name["health"].passed and by_name["login"].passed and by_name["cron"].passed
    assert not by_name["trial_balance"].passed
    assert f"FinRelease Japan K.K. {code}: debit" in by_name["trial_balance"].detail
    assert "1 account(s)" in by_name["trial_balance"].detail


async def test_smoke_user_without_every_company_fails_trial_balance(smoke, tenant, tenant_db):
    snapshot = await snapshot_of(tenant_db.dsn)
    tenants = {"acme-de": OdooTenantDouble(tenant_db.dsn, "smoke", "s3cret", company_ids=(1,))}
    async with OdooDouble(tenants) as double:
        one_company = replace(tenant, url=double.tenant_url("acme-de"))
        report = await _run(smoke, one_company, snapshot, ["trial_balance"])
    assert not report.passed
    assert "Access to unauthorized or invalid companies" in report.checks[0].detail


async def test_smoke_user_rights_are_checked_by_name_before_deploying(smoke, tenant, tenant_db):
    snapshot = await snapshot_of(tenant_db.dsn)
    ok = await ActivityEnvironment().run(
        smoke.check_smoke_user, SmokeRequest("FIN-1", tenant, [], snapshot)
    )
    limited = OdooTenantDouble(
        tenant_db.dsn, "smoke", "s3cret", company_ids=(1,), settings_admin=False
    )
    async with OdooDouble({"acme-de": limited}) as double:
        request = SmokeRequest(
            "FIN-1", replace(tenant, url=double.tenant_url("acme-de")), [], snapshot
        )
        refused = await ActivityEnvironment().run(smoke.check_smoke_user, request)
    assert ok.passed, ok
    assert [c.name for c in ok.checks] == ["login", "rights"]
    assert not refused.passed and refused.checks[0].passed
    detail = refused.checks[1].detail
    assert "journal items of company FinRelease Japan K.K. (id 2)" in detail
    assert "FinRelease Demo Company" not in detail
    assert "scheduled actions (ir.cron): make the user a Settings administrator" in detail


async def test_failing_cron_fails_the_cron_check_on_odoo_18(smoke, tenant, tenant_db, odoo_version):
    if odoo_version == "17.0":
        pytest.skip("ir.cron has no failure_count before Odoo 18")
    with psycopg.connect(tenant_db.dsn) as conn:
        conn.execute(
            "UPDATE ir_cron SET failure_count = 3, first_failure_date = now() AT TIME ZONE 'UTC'"
            " - interval '20 minutes' WHERE id = 1"
        )
    report = await _run(smoke, tenant, None, ["cron"])
    assert not report.passed
    assert "'Account: Post draft entries with auto_post enabled' failing (3 consecutive" in (
        report.checks[0].detail
    )
    assert "Mail: Email Queue Manager" not in report.checks[0].detail


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
    report = await _run(smoke, gone, await snapshot_of(tenant_db.dsn), ["health"])
    assert not report.passed
    assert "unreachable after 2 attempts" in report.checks[0].detail


async def test_missing_smoke_credentials_are_a_configuration_error(tenant):
    with pytest.raises(ApplicationError) as caught:
        await _run(SmokeActivities(environ={}), tenant, None, ["login"])
    assert caught.value.type == ErrorType.CONFIGURATION_MISSING
    assert "FINRELEASE_SMOKE_ACME_DE_PASSWORD" in str(caught.value)
