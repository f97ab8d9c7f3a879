"""The seeder builds Odoo 17- and 18-shaped ledgers whose entries balance and number without
gaps (in Odoo's sense: a cancelled or reset-to-draft bill keeps its number)."""

from __future__ import annotations

import zlib

import psycopg
import pytest

from devstack.odoo_seed import attachment_files, seed_odoo_database

VERSIONS = pytest.mark.parametrize("version", ["17.0", "18.0"])


@VERSIONS
def test_seeded_entries_balance_and_are_numbered_without_gaps(pg_database, version) -> None:
    summary = seed_odoo_database(pg_database.dsn, entries=2_000, seed=7, version=version)

    with psycopg.connect(pg_database.dsn) as conn:
        moves, max_id = conn.execute("SELECT count(*), max(id) FROM account_move").fetchone()
        lines = conn.execute("SELECT count(*) FROM account_move_line").fetchone()[0]
        unbalanced = conn.execute(
            "SELECT count(*) FROM (SELECT move_id FROM account_move_line "
            "GROUP BY move_id HAVING sum(debit) <> sum(credit)) u"
        ).fetchone()[0]
        # Every numbered move, whatever its state, holds its number (Odoo's gap rule).
        gaps = conn.execute(
            "SELECT count(*) FROM (SELECT sequence_number - lag(sequence_number) OVER "
            "(PARTITION BY journal_id, sequence_prefix ORDER BY sequence_number) AS step "
            "FROM account_move WHERE name <> '/') s WHERE step <> 1"
        ).fetchone()[0]
        states = dict(
            conn.execute(
                "SELECT state || (name = '/')::text, count(*) FROM account_move GROUP BY 1"
            ).fetchall()
        )
        layout = conn.execute(
            "SELECT count(*) FROM account_move_line WHERE display_type IN "
            "('line_note', 'line_section') AND account_id IS NULL AND debit = 0 AND credit = 0"
        ).fetchone()[0]
        version_of_base = conn.execute(
            "SELECT latest_version FROM ir_module_module WHERE name = 'base'"
        ).fetchone()[0]
    assert (moves, max_id, lines) == (summary.entries, summary.max_move_id, summary.lines)
    assert unbalanced == 0
    assert gaps == 0
    assert 0 < states["drafttrue"] < moves // 10  # never posted, no number
    assert states["cancelfalse"] > 0 and states["draftfalse"] > 0  # numbered, not posted
    assert layout > 0
    assert version_of_base.startswith(version)


def test_odoo_18_shares_the_chart_between_companies_except_bank_and_cash(pg_database) -> None:
    seed_odoo_database(pg_database.dsn, entries=300, seed=1, version="18.0", companies=2)

    with psycopg.connect(pg_database.dsn) as conn:
        columns = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'account_account'"
            )
        }
        owners = dict(
            conn.execute(
                "SELECT a.code_store->>'1', array_agg(r.res_company_id ORDER BY r.res_company_id)"
                " FROM account_account a JOIN account_account_res_company_rel r"
                " ON r.account_account_id = a.id WHERE a.code_store ? '1' GROUP BY 1"
            ).fetchall()
        )
        yen = conn.execute(
            "SELECT cur.name, cur.decimal_places, bool_and(l.debit = round(l.debit)) "
            "FROM account_move_line l JOIN res_company c ON c.id = l.company_id "
            "JOIN res_currency cur ON cur.id = c.currency_id WHERE c.id = 2 GROUP BY 1, 2"
        ).fetchone()
    assert "code" not in columns and "company_id" not in columns
    assert columns["code_store"] == "jsonb"
    assert owners["121000"] == [1, 2]  # receivable shared
    assert owners["101200"] == [1]  # each company its own bank account
    assert yen == ("JPY", 0, True)


def test_odoo_17_gives_each_company_its_own_accounts(pg_database) -> None:
    seed_odoo_database(pg_database.dsn, entries=100, seed=1, version="17.0", companies=2)

    with psycopg.connect(pg_database.dsn) as conn:
        per_company = conn.execute(
            "SELECT company_id, count(*) FROM account_account GROUP BY 1 ORDER BY 1"
        ).fetchall()
        foreign = conn.execute(
            "SELECT count(*) FROM account_move_line l JOIN account_account a "
            "ON a.id = l.account_id WHERE a.company_id <> l.company_id"
        ).fetchone()[0]
    assert per_company == [(1, 16), (2, 16)]
    assert foreign == 0


@VERSIONS
def test_seeded_constraints_reject_a_line_with_both_debit_and_credit(pg_database, version) -> None:
    seed_odoo_database(pg_database.dsn, entries=10, version=version)

    with psycopg.connect(pg_database.dsn) as conn:
        with pytest.raises(psycopg.errors.CheckViolation, match="check_credit_debit"):
            conn.execute(
                "INSERT INTO account_move_line (move_id, account_id, currency_id, display_type,"
                " debit, credit) VALUES (1, 1, 1, 'product', 5, 5)"
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.CheckViolation, match="accountable_required"):
            conn.execute(
                "INSERT INTO account_move_line (move_id, currency_id, display_type, debit) "
                "VALUES (1, 1, 'product', 5)"
            )
        conn.rollback()
        next_id = conn.execute("SELECT nextval('account_move_id_seq')").fetchone()[0]
    assert next_id == 11


def test_seed_is_deterministic_and_its_text_does_not_compress_to_nothing(
    pg_admin_dsn, pg_database
) -> None:
    seed_odoo_database(
        pg_database.dsn, entries=500, seed=3, attachments=4, filestore_prefix="acme/"
    )

    with psycopg.connect(pg_database.dsn) as conn:
        labels = "\n".join(
            r[0] for r in conn.execute("SELECT name FROM account_move_line ORDER BY id")
        )
        stored = [r[0] for r in conn.execute("SELECT store_fname FROM ir_attachment ORDER BY id")]
    assert len(zlib.compress(labels.encode(), 1)) > len(labels) // 10
    assert stored == [f"acme/{name}" for name, _ in attachment_files(3, 4)]
