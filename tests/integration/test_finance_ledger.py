"""The finance snapshot reads Odoo 17 and 18 ledgers per company, as Odoo computes them."""

from __future__ import annotations

import json
from decimal import Decimal

import psycopg
import pytest
from temporalio.exceptions import ApplicationError

from activities.finance_ledger import finance_snapshot_of, invariant_violations
from devstack.odoo_seed import seed_odoo_database
from tests.integration.ledger_by_hand import hand_trial_balance
from workflows.contracts import ErrorType

VERSIONS = pytest.mark.parametrize("version", ["17.0", "18.0"])


@VERSIONS
async def test_trial_balance_per_company_matches_a_hand_computation(pg_database, version):
    seed_odoo_database(pg_database.dsn, entries=600, seed=4, version=version, companies=2)

    snapshot = await finance_snapshot_of(pg_database.dsn, "acme")

    got = {(a.company, a.account): (a.debit, a.credit, a.balance) for a in snapshot.accounts}
    assert got == hand_trial_balance(pg_database.dsn, version)
    assert snapshot.odoo_version == version
    euro, yen = snapshot.companies
    assert (euro.currency, euro.decimal_places, yen.currency, yen.decimal_places) == (
        "EUR",
        2,
        "JPY",
        0,
    )
    assert (euro.balance_total, yen.balance_total) == ("0.00", "0")
    assert all("." not in a.debit for a in snapshot.accounts if a.company == yen.id)
    # One chart on 18, yet each company keeps its own trial balance of the same codes.
    assert {"121000", "400000"} <= {a.account for a in snapshot.accounts if a.company == yen.id}
    assert euro.posted_entries + yen.posted_entries == snapshot.posted_entries > 0
    assert euro.unbalanced_entries == yen.unbalanced_entries == []
    assert euro.mismatched_line_count == yen.mismatched_line_count == 0
    assert euro.hashed_entries > 0 and len(euro.hash_chain_sha256) == 64


@VERSIONS
async def test_cancelled_and_reset_bills_are_no_gaps_and_every_real_gap_is_named(
    pg_database, version
):
    seed_odoo_database(pg_database.dsn, entries=1_500, seed=9, version=version)
    with psycopg.connect(pg_database.dsn) as conn:
        kept = conn.execute(
            "SELECT count(*) FROM account_move WHERE state IN ('cancel', 'draft') AND name <> '/'"
        ).fetchone()[0]
        # Delete every other posted customer invoice of 2024 from the 4th on: 60+ gaps.
        deleted = conn.execute(
            "DELETE FROM account_move WHERE sequence_prefix = 'INV/2024/' AND state = 'posted'"
            " AND sequence_number >= 4 AND sequence_number % 2 = 0 RETURNING sequence_number"
        ).fetchall()
        first = min(n for (n,) in deleted)
    assert kept > 0

    snapshot = await finance_snapshot_of(pg_database.dsn, "acme")

    (ledger,) = snapshot.companies
    assert ledger.numbering_gap_count == len(deleted) > 50
    assert len(ledger.numbering_gaps) == len(deleted)  # none hidden behind "... and N more"
    assert ledger.numbering_gaps[0] == (
        f"INV: INV/2024/{first - 1:05d} -> INV/2024/{first + 1:05d}"
    )
    assert not any(g.startswith("BILL") for g in ledger.numbering_gaps)


@VERSIONS
async def test_unbalanced_entries_use_odoo_rounding_in_company_currency(pg_database, version):
    seed_odoo_database(pg_database.dsn, entries=300, seed=2, version=version, companies=2)
    with psycopg.connect(pg_database.dsn) as conn:
        yen_entries = conn.execute(
            "SELECT m.id, m.name FROM account_move m WHERE m.company_id = 2 AND m.state = 'posted'"
            " ORDER BY m.id LIMIT 2"
        ).fetchall()
        for (move, _), drift in zip(yen_entries, ("0.4", "1"), strict=True):
            conn.execute(
                "UPDATE account_move_line SET debit = debit + %s, balance = balance + %s"
                " WHERE id = (SELECT min(id) FROM account_move_line WHERE move_id = %s"
                " AND debit > 0)",
                (Decimal(drift), Decimal(drift), move),
            )

    snapshot = await finance_snapshot_of(pg_database.dsn, "acme")

    # 0.4 yen rounds away at 0 decimals, as in Odoo's _get_unbalanced_moves; 1 yen does not.
    assert snapshot.companies[1].unbalanced_entries == [yen_entries[1][1]]
    assert snapshot.companies[0].unbalanced_entries == []


@VERSIONS
async def test_copied_fields_and_inalterable_hashes_are_guarded(pg_database, version):
    seed_odoo_database(pg_database.dsn, entries=300, seed=3, version=version)
    before = await finance_snapshot_of(pg_database.dsn, "acme")
    with psycopg.connect(pg_database.dsn) as conn:
        entry, line = conn.execute(
            "UPDATE account_move_line l SET date = l.date + 1 FROM account_move m"
            " WHERE m.id = l.move_id AND l.id = (SELECT min(id) FROM account_move_line)"
            " RETURNING m.name, l.id"
        ).fetchone()
        conn.execute(
            "UPDATE account_move SET inalterable_hash = md5(inalterable_hash)"
            " WHERE id = (SELECT min(id) FROM account_move WHERE inalterable_hash IS NOT NULL)"
        )

    after = await finance_snapshot_of(pg_database.dsn, "acme")
    violations = await invariant_violations(pg_database.dsn, pg_database.dsn, before, after)

    assert after.companies[0].mismatched_lines == [f"{entry} line {line}: date"]
    assert any(f"{entry} line {line}: date" in v for v in violations), violations
    assert any(v.startswith("inalterability hashes changed") for v in violations), violations
    assert before.trial_balance_sha256 == after.trial_balance_sha256


async def test_a_database_of_another_odoo_series_is_refused(pg_database):
    seed_odoo_database(pg_database.dsn, entries=10)
    with psycopg.connect(pg_database.dsn) as conn:
        conn.execute("UPDATE ir_module_module SET latest_version = '16.0.1.3' WHERE name = 'base'")

    with pytest.raises(ApplicationError, match="base module version '16.0.1.3'") as refused:
        await finance_snapshot_of(pg_database.dsn, "acme")

    assert refused.value.type == ErrorType.UNSUPPORTED_ODOO and refused.value.non_retryable
    assert json.dumps(str(refused.value)).find(pg_database.dsn) == -1
