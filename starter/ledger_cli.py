"""`finrelease ledger snapshot`: an Odoo tenant's ledger per company, for operators and auditors.

Reads the database directly (read-only queries in one REPEATABLE READ view) with the same
code the release uses for its finance snapshot (`activities.finance_ledger`). The DSN comes
from `--dsn` or `FINRELEASE_LEDGER_DSN` and is never printed, not even in an error.

JSON contract (`--json`), amounts as decimal strings in company currency:

    {"odoo_version": "18.0", "trial_balance_sha256": "...", "max_move_id": 123,
     "companies": [{"id", "name", "currency", "decimal_places",
                    "accounts": [{"code", "debit", "credit", "balance"}],
                    "posted_entries", "balance_total", "unbalanced_entries": [names],
                    "numbering_gap_count", "numbering_gaps": [...],
                    "mismatched_line_count", "mismatched_lines": [...],
                    "hashed_entries", "hash_chain_sha256"}]}
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

import typer

from starter.client_helpers import FAILED, INVALID, CliError, run_async

ledger_app = typer.Typer(no_args_is_help=True, help="Read an Odoo tenant's ledger.")

Dsn = Annotated[
    str,
    typer.Option(
        "--dsn",
        envvar="FINRELEASE_LEDGER_DSN",
        help="libpq connection string of the tenant database (or $FINRELEASE_LEDGER_DSN)",
        show_default=False,
    ),
]


@ledger_app.command("snapshot")
def snapshot(
    dsn: Dsn,
    json_output: Annotated[bool, typer.Option("--json", help="the JSON contract")] = False,
) -> None:
    """Per company: trial balance per account code, posted and unbalanced entries, gaps."""
    try:
        document = run_async(ledger_document(dsn))
    except CliError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(error.code) from None
    if json_output:
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    for line in ledger_lines(document):
        typer.echo(line)


async def ledger_document(dsn: str) -> dict[str, Any]:
    """The JSON contract above, read from the database at `dsn`."""
    import psycopg
    from temporalio.exceptions import ApplicationError

    from activities.finance_ledger import finance_snapshot_of, pg_error

    try:
        secrets = [v for k, v in psycopg.conninfo.conninfo_to_dict(dsn).items() if k == "password"]
    except psycopg.ProgrammingError:
        # psycopg's message quotes the string: say what is wrong without echoing it.
        raise CliError("--dsn is not a libpq connection string or URI", INVALID) from None
    try:
        snap = await finance_snapshot_of(dsn, tenant="")
    except ApplicationError as error:
        raise CliError(str(error), INVALID) from None
    except psycopg.Error as error:
        message = pg_error(error)
        for secret in [dsn, *secrets]:
            if secret:
                message = message.replace(str(secret), "***")
        raise CliError(f"cannot read the ledger at --dsn: {message}", FAILED) from None
    companies = []
    for ledger in snap.companies:
        entry = asdict(ledger)
        entry["accounts"] = [
            {"code": a.account, "debit": a.debit, "credit": a.credit, "balance": a.balance}
            for a in snap.accounts
            if a.company == ledger.id
        ]
        companies.append(entry)
    return {
        "odoo_version": snap.odoo_version,
        "trial_balance_sha256": snap.trial_balance_sha256,
        "max_move_id": snap.max_move_id,
        "companies": companies,
    }


def ledger_lines(document: dict[str, Any]) -> list[str]:
    """The document for a reader: one block per company."""
    lines = [f"Odoo {document['odoo_version']}, trial balance {document['trial_balance_sha256']}"]
    for company in document["companies"]:
        lines += [
            "",
            f"company {company['id']} {company['name']} ({company['currency']})",
            f"  {'account':<12} {'debit':>18} {'credit':>18} {'balance':>18}",
        ]
        for a in company["accounts"]:
            lines.append(f"  {a['code']:<12} {a['debit']:>18} {a['credit']:>18} {a['balance']:>18}")
        lines += [
            f"  posted entries {company['posted_entries']}, "
            f"sum of balances {company['balance_total']}",
            f"  unbalanced entries: {', '.join(company['unbalanced_entries']) or 'none'}",
            f"  numbering gaps: {company['numbering_gap_count']}",
            *(f"    {gap}" for gap in company["numbering_gaps"]),
            f"  journal items disagreeing with their entry: {company['mismatched_line_count']}",
            *(f"    {line}" for line in company["mismatched_lines"]),
            f"  hash-protected entries: {company['hashed_entries']}",
        ]
    return lines
