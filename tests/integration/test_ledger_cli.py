"""`finrelease ledger snapshot` prints per-company trial balances that match a hand computation,
and never the DSN."""

from __future__ import annotations

import json

import psycopg
import pytest
from typer.testing import CliRunner

from devstack.odoo_seed import seed_odoo_database
from starter.cli import app
from tests.integration.ledger_by_hand import hand_trial_balance

runner = CliRunner()


@pytest.mark.parametrize("version", ["17.0", "18.0"])
def test_snapshot_json_gives_each_company_its_trial_balance(pg_database, version) -> None:
    seed_odoo_database(pg_database.dsn, entries=400, seed=6, version=version, companies=2)

    result = runner.invoke(app, ["ledger", "snapshot", "--dsn", pg_database.dsn, "--json"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["odoo_version"] == version
    printed = {
        (company["id"], a["code"]): (a["debit"], a["credit"], a["balance"])
        for company in document["companies"]
        for a in company["accounts"]
    }
    assert printed == hand_trial_balance(pg_database.dsn, version)
    euro, yen = document["companies"]
    assert (euro["name"], euro["currency"], yen["currency"]) == (
        "FinRelease Demo Company",
        "EUR",
        "JPY",
    )
    with psycopg.connect(pg_database.dsn) as conn:
        posted = dict(
            conn.execute(
                "SELECT company_id, count(*) FROM account_move WHERE state = 'posted' GROUP BY 1"
            ).fetchall()
        )
    assert (euro["posted_entries"], yen["posted_entries"]) == (posted[1], posted[2])
    assert euro["unbalanced_entries"] == yen["unbalanced_entries"] == []
    assert pg_database.dsn not in result.output


def test_snapshot_text_names_an_unbalanced_entry(pg_database) -> None:
    seed_odoo_database(pg_database.dsn, entries=100, seed=1, version="18.0")
    with psycopg.connect(pg_database.dsn) as conn:
        name = conn.execute(
            "UPDATE account_move_line l SET debit = debit + 1, balance = balance + 1"
            " FROM account_move m WHERE m.id = l.move_id AND l.id = (SELECT min(id)"
            " FROM account_move_line WHERE parent_state = 'posted' AND debit > 0) RETURNING m.name"
        ).fetchone()[0]

    result = runner.invoke(
        app, ["ledger", "snapshot"], env={"FINRELEASE_LEDGER_DSN": pg_database.dsn}
    )

    assert result.exit_code == 0, result.output
    assert f"unbalanced entries: {name}" in result.stdout
    assert "company 1 FinRelease Demo Company (EUR)" in result.stdout


def test_unreachable_database_fails_without_printing_the_dsn(pg_database) -> None:
    dsn = psycopg.conninfo.make_conninfo(
        pg_database.dsn, dbname=f"{pg_database.name}_missing", password="s3cr3t-pw"
    )

    result = runner.invoke(app, ["ledger", "snapshot", "--dsn", dsn])

    assert result.exit_code == 1
    assert "cannot read the ledger" in result.output
    assert "s3cr3t-pw" not in result.output and dsn not in result.output


def test_malformed_dsn_is_refused_without_echoing_it() -> None:
    result = runner.invoke(app, ["ledger", "snapshot", "--dsn", "host=x password='s3cr3t"])

    assert result.exit_code == 2
    assert "not a libpq connection string" in result.output
    assert "s3cr3t" not in result.output
