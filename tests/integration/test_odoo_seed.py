"""The seeder builds an Odoo-shaped ledger whose entries balance and number without gaps."""

from __future__ import annotations

import zlib

import psycopg

from devstack.odoo_seed import attachment_files, seed_odoo_database


def test_seeded_entries_balance_and_are_numbered_without_gaps(pg_database) -> None:
    summary = seed_odoo_database(pg_database.dsn, entries=2_000, seed=7)

    with psycopg.connect(pg_database.dsn) as conn:
        moves, max_id = conn.execute("SELECT count(*), max(id) FROM account_move").fetchone()
        lines = conn.execute("SELECT count(*) FROM account_move_line").fetchone()[0]
        unbalanced = conn.execute(
            "SELECT count(*) FROM (SELECT move_id FROM account_move_line "
            "GROUP BY move_id HAVING sum(debit) <> sum(credit)) u"
        ).fetchone()[0]
        gaps = conn.execute(
            "SELECT count(*) FROM (SELECT sequence_number - lag(sequence_number) OVER "
            "(PARTITION BY journal_id, sequence_prefix ORDER BY sequence_number) AS step "
            "FROM account_move WHERE state = 'posted') s WHERE step <> 1"
        ).fetchone()[0]
        drafts = conn.execute("SELECT count(*) FROM account_move WHERE state = 'draft'").fetchone()[
            0
        ]
    assert (moves, max_id, lines) == (summary.entries, summary.max_move_id, summary.lines)
    assert unbalanced == 0
    assert gaps == 0
    assert 0 < drafts < moves // 10


def test_seeded_constraints_reject_a_line_with_both_debit_and_credit(pg_database) -> None:
    seed_odoo_database(pg_database.dsn, entries=10)

    with psycopg.connect(pg_database.dsn) as conn:
        try:
            conn.execute(
                "INSERT INTO account_move_line (move_id, account_id, debit, credit) "
                "VALUES (1, 1, 5, 5)"
            )
        except psycopg.errors.CheckViolation:
            conn.rollback()
        else:
            raise AssertionError("check_credit_debit did not reject debit and credit on one line")
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
