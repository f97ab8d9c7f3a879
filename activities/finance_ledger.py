"""What the finance checks read from an Odoo database, and how migrations are applied to it.

The ledger queries (`activities.odoo_ledger`) use Odoo 17's or 18's own tables and columns,
per company, so they run unchanged on a real Odoo database. Amounts are exact decimals in
company currency at its decimal places.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from activities.odoo_ledger import (
    BALANCE_TOTALS,
    COMPANIES,
    COPIED_FIELDS,
    ENTRY_AMOUNTS,
    HASH_CHAINS,
    MISMATCHED_LINES,
    NUMBERING_GAPS,
    POSTED,
    TRIAL_BALANCE,
    UNBALANCED,
    odoo_version,
    query,
)
from workflows.contracts import AccountBalance, CompanyLedger, FinanceSnapshot, MigrationScript

LEDGER_TABLE = "finrelease_migration"
REPORT_LIMIT = 50  # entries named in a message; the rest are summarised as a count
ENTRIES_NAMED = 10  # entries named per changed account in a rehearsal violation
GAPS_LISTED = 1000  # gaps named per company; all are counted

USER_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2
"""
ENTRIES_AFTER = """
SELECT m.id, m.name, m.ref, j.code, m.date, m.state, m.move_type, m.create_date,
       coalesce(json_agg(json_build_object(
           'id', l.id, 'account', {code}, 'name', l.name, 'debit', l.debit::text,
           'credit', l.credit::text, 'balance', l.balance::text) ORDER BY l.id)
           FILTER (WHERE l.id IS NOT NULL), '[]')
FROM account_move m JOIN account_journal j ON j.id = m.journal_id
LEFT JOIN account_move_line l ON l.move_id = m.id
LEFT JOIN account_account a ON a.id = l.account_id
LEFT JOIN res_company c ON c.id = l.company_id
WHERE m.id > %s GROUP BY m.id, j.code ORDER BY m.id
"""
LEDGER_DDL = f"""
CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
    id serial PRIMARY KEY,
    release_id varchar NOT NULL,
    script_name varchar NOT NULL,
    sha256 varchar(64) NOT NULL UNIQUE,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def fetch_one(conn: psycopg.AsyncConnection[Any], query: Any, params: Any = None) -> Any:
    """The first column of the first row (None when there is no row)."""
    row = await (await conn.execute(query, params)).fetchone()
    return row[0] if row else None


def canonical(value: Decimal | int | None) -> str:
    """Exact, scale-independent decimal text."""
    number = Decimal(value or 0)
    return "0" if number == 0 else format(number.normalize(), "f")


def capped(items: list[str], limit: int = REPORT_LIMIT) -> list[str]:
    if len(items) <= limit:
        return items
    return [*items[:limit], f"... and {len(items) - limit} more"]


async def row_counts_and_max_move(conn: psycopg.AsyncConnection[Any]) -> tuple[dict[str, int], int]:
    """Exact row count of every user table (what pg_dump dumps) and the highest account_move.id."""
    counts: dict[str, int] = {}
    for schema, table in await (await conn.execute(USER_TABLES)).fetchall():
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        counts[table if schema == "public" else f"{schema}.{table}"] = int(
            await fetch_one(conn, query)
        )
    if "account_move" not in counts:
        return counts, 0
    return counts, int(await fetch_one(conn, "SELECT coalesce(max(id), 0) FROM account_move"))


async def finance_snapshot_of(dsn: str, tenant: str) -> FinanceSnapshot:
    """Per company: trial balance of posted lines per account code with a stable sha256,
    plus the ledger invariants (`odoo_ledger` says how Odoo computes each)."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        # One consistent view for every query below.
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        version = await odoo_version(conn)

        async def rows(template: str) -> list[Any]:
            return await (await conn.execute(query(template, version))).fetchall()

        companies = await rows(COMPANIES)
        places = {cid: int(dp) for cid, _, _, dp in companies}
        accounts = [
            AccountBalance(
                account=str(code),
                debit=amount(d, places[cid]),
                credit=amount(c, places[cid]),
                balance=amount(b, places[cid]),
                company=cid,
            )
            for cid, code, d, c, b in await rows(TRIAL_BALANCE)
        ]
        totals = dict(await rows(BALANCE_TOTALS))
        posted = dict(await rows(POSTED))
        unbalanced = _by_company(await rows(UNBALANCED), lambda r: r[1])
        gaps = _by_company(await rows(NUMBERING_GAPS), lambda r: f"{r[1]}: {r[2]} -> {r[3]}")
        mismatched = _by_company(
            await rows(MISMATCHED_LINES), lambda r: f"{r[1]} line {r[2]}: {r[3]}"
        )
        chains = {cid: (int(n), digest) for cid, n, digest in await rows(HASH_CHAINS)}
        max_move_id = await fetch_one(conn, "SELECT coalesce(max(id), 0) FROM account_move")
    ledgers = [
        CompanyLedger(
            id=cid,
            name=name,
            currency=currency,
            decimal_places=places[cid],
            posted_entries=int(posted.get(cid, 0)),
            balance_total=amount(totals.get(cid), places[cid]),
            unbalanced_entries=unbalanced.get(cid, []),
            numbering_gap_count=len(gaps.get(cid, [])),
            numbering_gaps=gaps.get(cid, [])[:GAPS_LISTED],
            mismatched_line_count=len(mismatched.get(cid, [])),
            mismatched_lines=mismatched.get(cid, [])[:ENTRIES_NAMED],
            hashed_entries=chains.get(cid, (0, ""))[0],
            hash_chain_sha256=chains.get(cid, (0, ""))[1],
        )
        for cid, name, currency, _ in companies
    ]
    text = "".join(f"{a.company}|{a.account}|{a.debit}|{a.credit}|{a.balance}\n" for a in accounts)
    return FinanceSnapshot(
        tenant=tenant,
        trial_balance_sha256=hashlib.sha256(text.encode()).hexdigest(),
        accounts=accounts,
        total_debit=canonical(sum((Decimal(a.debit) for a in accounts), Decimal(0))),
        total_credit=canonical(sum((Decimal(a.credit) for a in accounts), Decimal(0))),
        posted_entries=sum(ledger.posted_entries for ledger in ledgers),
        unbalanced_entries=[n for ledger in ledgers for n in ledger.unbalanced_entries],
        numbering_gaps=[g for ledger in ledgers for g in ledger.numbering_gaps],
        max_move_id=int(max_move_id),
        odoo_version=version,
        companies=ledgers,
    )


def amount(value: Decimal | int | None, places: int) -> str:
    """Decimal text at the currency's decimal places (`12.50`, `1200` for 0 places)."""
    return format(Decimal(value or 0).quantize(Decimal(1).scaleb(-places)), "f")


def _by_company(rows: list[Any], text: Callable[[Any], str]) -> dict[int, list[str]]:
    grouped: dict[int, list[str]] = {}
    for row in rows:
        grouped.setdefault(row[0], []).append(text(row))
    return grouped


async def invariant_violations(
    before_dsn: str, after_dsn: str, before: FinanceSnapshot, after: FinanceSnapshot
) -> list[str]:
    """Each broken invariant, naming the company, the account and the entries that changed it."""
    violations: list[str] = []
    names = {c.id: c.name for c in [*before.companies, *after.companies]}

    def where(company: int) -> str:
        return f" of {names.get(company, company)}" if len(names) > 1 else ""

    old = {(a.company, a.account): a for a in before.accounts}
    new = {(a.company, a.account): a for a in after.accounts}
    zero = AccountBalance(account="", debit="0", credit="0", balance="0")
    for company, code in sorted(set(old) | set(new)):
        a, b = old.get((company, code), zero), new.get((company, code), zero)
        if Decimal(a.debit) == Decimal(b.debit) and Decimal(a.credit) == Decimal(b.credit):
            if Decimal(a.balance) == Decimal(b.balance):
                continue
        entries = await _changed_entries(before_dsn, after_dsn, after.odoo_version, company, code)
        violations.append(
            f"trial balance changed for account {code}{where(company)}: debit {a.debit} -> "
            f"{b.debit}, credit {a.credit} -> {b.credit}; entries: {', '.join(entries) or 'none found'}"
        )
    previous = {c.id: c for c in before.companies}
    for ledger in after.companies:
        was = previous.get(ledger.id)
        if was is None:
            violations.append(f"company {ledger.name} (id {ledger.id}) appeared")
            continue
        violations += _company_violations(was, ledger, where(ledger.id))
    return violations


def _company_violations(before: CompanyLedger, after: CompanyLedger, where: str) -> list[str]:
    found = [
        f"entry {name}{where} no longer balances"
        for name in sorted(set(after.unbalanced_entries) - set(before.unbalanced_entries))
    ]
    if Decimal(after.balance_total) != 0 and after.balance_total != before.balance_total:
        found.append(f"posted balances{where} sum to {after.balance_total} {after.currency}, not 0")
    complete = before.numbering_gap_count == len(before.numbering_gaps)
    new_gaps = sorted(set(after.numbering_gaps) - set(before.numbering_gaps)) if complete else []
    found += [f"new numbering gap {gap}{where}" for gap in new_gaps]
    if after.numbering_gap_count > before.numbering_gap_count and not new_gaps:
        found.append(
            f"numbering gaps{where}: {before.numbering_gap_count} -> {after.numbering_gap_count}"
        )
    if after.mismatched_line_count > before.mismatched_line_count:
        found.append(
            f"{after.mismatched_line_count - before.mismatched_line_count} more journal items"
            f"{where} disagree with their entry ({', '.join(COPIED_FIELDS)}): "
            + "; ".join(after.mismatched_lines)
        )
    if (before.hashed_entries, before.hash_chain_sha256) != (
        after.hashed_entries,
        after.hash_chain_sha256,
    ):
        found.append(
            f"inalterability hashes{where} changed: {before.hashed_entries} hashed entries -> "
            f"{after.hashed_entries}, chain sha256 {before.hash_chain_sha256[:12]} -> "
            f"{after.hash_chain_sha256[:12]}"
        )
    return found


async def _changed_entries(
    before_dsn: str, after_dsn: str, version: str, company: int, code: str
) -> list[str]:
    sums = []
    for dsn in (before_dsn, after_dsn):
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            cursor = await conn.execute(query(ENTRY_AMOUNTS, version), (company, code))
            rows = await cursor.fetchall()
        sums.append({name: (Decimal(d), Decimal(c)) for name, d, c in rows})
    old, new = sums
    changed = sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))
    return capped(changed, ENTRIES_NAMED)


async def entries_jsonl(conn: psycopg.AsyncConnection[Any], after_id: int) -> AsyncIterator[bytes]:
    """Each entry above `after_id` with its lines, one JSON object a line, in ~1 MiB chunks."""
    buffer = bytearray()
    entries_after = query(ENTRIES_AFTER, await odoo_version(conn))
    async with conn.cursor(name="entries_since_backup") as cursor:  # server-side: not all in RAM
        await cursor.execute(entries_after, (after_id,))
        async for id_, name, ref, journal, date, state, move_type, created, lines in cursor:
            entry = {
                "id": id_,
                "name": name,
                "ref": ref,
                "journal": journal,
                "date": str(date),
                "state": state,
                "move_type": move_type,
                "create_date": str(created),
                "lines": lines,
            }
            buffer += json.dumps(entry, separators=(",", ":")).encode() + b"\n"
            if len(buffer) >= 1 << 20:
                yield bytes(buffer)
                buffer.clear()
    if buffer:
        yield bytes(buffer)


async def apply_in_one_transaction(
    conn: psycopg.AsyncConnection[Any], release_id: str, scripts: list[MigrationScript]
) -> tuple[list[str], list[str]]:
    """Apply the scripts missing from the ledger and record them: all or nothing.

    Returns (applied, skipped) script names. A failing script raises the psycopg error with
    the script's name in front; the transaction is rolled back.
    """
    applied: list[str] = []
    skipped: list[str] = []
    async with conn.transaction():
        await conn.execute(LEDGER_DDL)
        # Serialises two releases migrating one tenant: the second sees the first's rows.
        await conn.execute(f"LOCK TABLE {LEDGER_TABLE} IN EXCLUSIVE MODE")
        for script in scripts:
            seen = f"SELECT 1 FROM {LEDGER_TABLE} WHERE sha256 = %s"
            if await fetch_one(conn, seen, (script.sha256,)):
                skipped.append(script.name)
                continue
            try:
                await conn.execute(script.sql.encode())  # no parameters: several statements allowed
            except psycopg.Error as error:
                raise type(error)(f"script {script.name}: {pg_error(error)}") from error
            await conn.execute(
                f"INSERT INTO {LEDGER_TABLE} (release_id, script_name, sha256) VALUES (%s, %s, %s)",
                (release_id, script.name, script.sha256),
            )
            applied.append(script.name)
    return applied, skipped


def pg_error(error: psycopg.Error) -> str:
    """PostgreSQL's primary message (no DSN, no query text)."""
    primary = error.diag.message_primary if error.diag else None
    return (primary or str(error)).strip()
