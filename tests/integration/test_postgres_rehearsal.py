"""Rehearsals guard the ledger's invariants; migrations apply once, all or nothing."""

from __future__ import annotations

import hashlib

import psycopg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from devstack.odoo_seed import seed_odoo_database
from tests.integration.conftest import scratch_databases, tenant_on
from tests.integration.ledger_by_hand import ACCOUNT_CODE
from workflows.contracts import (
    ErrorType,
    MigrationRequest,
    MigrationScript,
    RehearsalRequest,
    TenantTask,
)

HARMLESS = """
ALTER TABLE account_move ADD COLUMN finrelease_note varchar;
CREATE INDEX ON account_move (date);
"""
FIRST_POSTED_DEBIT = """
SELECT min(id) FROM account_move_line WHERE debit > 0 AND parent_state = 'posted'
"""
CHANGES_A_DEBIT = f"""
UPDATE account_move_line SET debit = debit + 1, balance = balance + 1
WHERE id = ({FIRST_POSTED_DEBIT});
"""


def script(name: str, sql: str) -> MigrationScript:
    return MigrationScript(name=name, sql=sql, sha256=hashlib.sha256(sql.encode()).hexdigest())


@pytest.fixture(params=["17.0", "18.0"])
def odoo_version(request) -> str:
    return request.param


@pytest.fixture
async def backed_up(postgres, pg_database, odoo_version):
    """A seeded tenant database (Odoo 17 or 18) and its backup."""
    seed_odoo_database(pg_database.dsn, entries=300, seed=11, version=odoo_version)
    task = TenantTask(release_id="rel-rehearse", tenant=tenant_on(pg_database.name))
    return task, await ActivityEnvironment().run(postgres.backup_database, task)


async def test_rehearsal_passes_a_migration_that_leaves_the_ledger_alone(
    postgres, backed_up, pg_database
):
    task, backup = backed_up
    request = RehearsalRequest(
        release_id=task.release_id,
        tenant=task.tenant,
        backup=backup,
        migrations=[script("001_note.sql", HARMLESS)],
    )

    result = await ActivityEnvironment().run(postgres.rehearse_migration, request)

    assert result.passed, result.violations
    assert result.violations == []
    assert result.before.trial_balance_sha256 == result.after.trial_balance_sha256
    assert result.before.posted_entries == result.after.posted_entries > 0
    assert result.duration_seconds >= 0
    assert scratch_databases(pg_database.admin_dsn) == []


async def test_rehearsal_fails_a_migration_that_changes_a_debit_naming_account_and_entry(
    postgres, backed_up, pg_database, odoo_version
):
    task, backup = backed_up
    with psycopg.connect(pg_database.dsn) as conn:
        code, entry = conn.execute(
            f"""
            SELECT {ACCOUNT_CODE[odoo_version]}, m.name FROM account_move_line l
            JOIN account_account a ON a.id = l.account_id JOIN account_move m ON m.id = l.move_id
            WHERE l.id = ({FIRST_POSTED_DEBIT})
            """
        ).fetchone()
    request = RehearsalRequest(
        release_id=task.release_id,
        tenant=task.tenant,
        backup=backup,
        migrations=[script("002_bad.sql", CHANGES_A_DEBIT)],
    )

    result = await ActivityEnvironment().run(postgres.rehearse_migration, request)

    assert not result.passed
    assert result.before.trial_balance_sha256 != result.after.trial_balance_sha256
    balance_change = [
        v for v in result.violations if v.startswith(f"trial balance changed for account {code}")
    ]
    assert balance_change and entry in balance_change[0]
    assert f"entry {entry} no longer balances" in result.violations
    with psycopg.connect(pg_database.dsn) as conn:  # the tenant database itself was never touched
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_tables WHERE tablename = 'finrelease_migration'"
            ).fetchone()[0]
            == 0
        )
    assert scratch_databases(pg_database.admin_dsn) == []


async def test_rehearsal_reports_a_failing_script_and_cleans_up(postgres, backed_up, pg_database):
    task, backup = backed_up
    request = RehearsalRequest(
        release_id=task.release_id,
        tenant=task.tenant,
        backup=backup,
        migrations=[script("003_typo.sql", "ALTER TABLE account_mvoe ADD COLUMN x int")],
    )

    result = await ActivityEnvironment().run(postgres.rehearse_migration, request)

    assert not result.passed
    assert result.violations[0].startswith("migration failed: script 003_typo.sql")
    assert scratch_databases(pg_database.admin_dsn) == []


async def test_finance_snapshot_reports_unbalanced_entries_and_numbering_gaps(
    postgres, pg_database, odoo_version
):
    seed_odoo_database(pg_database.dsn, entries=200, seed=5, version=odoo_version)
    with psycopg.connect(pg_database.dsn) as conn:
        unbalanced = conn.execute(
            """
            UPDATE account_move_line SET credit = credit + 5, balance = balance - 5
            WHERE id = (SELECT min(id) FROM account_move_line
                        WHERE credit > 0 AND parent_state = 'posted')
            RETURNING move_id
            """
        ).fetchone()[0]
        name = conn.execute(
            "SELECT name FROM account_move WHERE id = %s", (unbalanced,)
        ).fetchone()[0]
        removed, before, journal = conn.execute(
            """
            SELECT m.name, p.name, j.code FROM account_move m
            JOIN account_journal j ON j.id = m.journal_id
            JOIN account_move p ON p.journal_id = m.journal_id
             AND p.sequence_prefix = m.sequence_prefix
             AND p.sequence_number = m.sequence_number - 1 AND p.state = 'posted'
            WHERE m.state = 'posted' AND m.sequence_number = 5 ORDER BY m.id LIMIT 1
            """
        ).fetchone()
        after = conn.execute(
            "SELECT n.name FROM account_move m JOIN account_move n ON n.journal_id = m.journal_id "
            "AND n.sequence_prefix = m.sequence_prefix AND n.sequence_number = 6 WHERE m.name = %s",
            (removed,),
        ).fetchone()[0]
        conn.execute("DELETE FROM account_move WHERE name = %s", (removed,))

    snapshot = await ActivityEnvironment().run(
        postgres.finance_snapshot, TenantTask(release_id="r", tenant=tenant_on(pg_database.name))
    )

    assert snapshot.unbalanced_entries == [name]
    assert snapshot.numbering_gaps == [f"{journal}: {before} -> {after}"]
    assert snapshot.max_move_id == 200
    assert sum(float(a.balance) for a in snapshot.accounts) == pytest.approx(-5)


async def test_failing_migration_leaves_the_tenant_database_untouched(postgres, pg_database):
    seed_odoo_database(pg_database.dsn, entries=50)
    scripts = [
        script("001_note.sql", HARMLESS),
        script("002_broken.sql", "UPDATE account_move SET nope = 1"),
    ]
    tenant = tenant_on(pg_database.name)

    with pytest.raises(ApplicationError, match="script 002_broken.sql") as failure:
        await ActivityEnvironment().run(
            postgres.migrate_database,
            MigrationRequest(release_id="rel-x", tenant=tenant, migrations=scripts),
        )

    assert failure.value.type == ErrorType.MIGRATION_FAILED and failure.value.non_retryable
    with psycopg.connect(pg_database.dsn) as conn:
        columns = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'account_move' "
            "AND column_name = 'finrelease_note'"
        ).fetchone()[0]
        ledger = conn.execute("SELECT to_regclass('finrelease_migration')").fetchone()[0]
    assert (columns, ledger) == (0, None)


async def test_ledger_prevents_applying_a_script_twice(postgres, pg_database):
    seed_odoo_database(pg_database.dsn, entries=20)
    tenant = tenant_on(pg_database.name)
    note = script("001_note.sql", HARMLESS)
    counter = script("002_counter.sql", "UPDATE ir_cron SET interval_number = interval_number + 1;")

    first = await ActivityEnvironment().run(
        postgres.migrate_database,
        MigrationRequest(release_id="rel-a", tenant=tenant, migrations=[note, counter]),
    )
    second = await ActivityEnvironment().run(
        postgres.migrate_database,
        MigrationRequest(release_id="rel-b", tenant=tenant, migrations=[note, counter]),
    )

    assert (first.applied, first.skipped) == (["001_note.sql", "002_counter.sql"], [])
    assert (second.applied, second.skipped) == ([], ["001_note.sql", "002_counter.sql"])
    with psycopg.connect(pg_database.dsn) as conn:
        assert conn.execute("SELECT max(interval_number) FROM ir_cron").fetchone()[0] == 2
        ledger = conn.execute(
            "SELECT release_id, script_name FROM finrelease_migration ORDER BY id"
        ).fetchall()
    assert ledger == [("rel-a", "001_note.sql"), ("rel-a", "002_counter.sql")]


async def test_script_whose_content_differs_from_its_pin_is_refused(postgres, pg_database):
    tampered = MigrationScript(name="001.sql", sql="DROP TABLE account_move", sha256="0" * 64)
    with pytest.raises(ApplicationError, match="001.sql has sha256") as failure:
        await ActivityEnvironment().run(
            postgres.migrate_database,
            MigrationRequest(
                release_id="r", tenant=tenant_on(pg_database.name), migrations=[tampered]
            ),
        )
    assert failure.value.type == ErrorType.MIGRATION_FAILED
