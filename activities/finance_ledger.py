"""What the finance checks read from an Odoo database, and how migrations are applied to it.

Queries use Odoo's own tables and columns (`account_move`, `account_move_line`,
`account_account`, `account_journal`), so they run unchanged on a real Odoo database.
Amounts are exact decimals rendered scale-independently (`10.50` and `10.5` hash alike).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from workflows.contracts import AccountBalance, FinanceSnapshot, MigrationScript

LEDGER_TABLE = "finrelease_migration"
REPORT_LIMIT = 50  # entries/gaps named in a snapshot; the rest are summarised as a count
ENTRIES_NAMED = 10  # entries named per changed account in a rehearsal violation

TRIAL_BALANCE = """
SELECT a.code, sum(l.debit), sum(l.credit), sum(l.balance)
FROM account_move_line l JOIN account_account a ON a.id = l.account_id
WHERE l.parent_state = 'posted' GROUP BY a.code ORDER BY a.code
"""
UNBALANCED = """
SELECT m.name FROM account_move m JOIN account_move_line l ON l.move_id = m.id
WHERE m.state = 'posted' GROUP BY m.id, m.name
HAVING sum(l.debit) <> sum(l.credit) ORDER BY m.id
"""
# Odoo's rule (account_move.py: 17 `_compute_made_sequence_hole`, 18
# `_compute_made_sequence_gap`): a numbered move makes a gap when no move of its journal and
# prefix, whatever its state, holds the number before it. A cancelled or reset-to-draft
# invoice keeps its number, so it is no gap.
NUMBERING_GAPS = """
SELECT j.code, prev.name, m.name
FROM account_move m JOIN account_journal j ON j.id = m.journal_id
LEFT JOIN LATERAL (
    SELECT p.name FROM account_move p
    WHERE p.journal_id = m.journal_id AND p.sequence_prefix = m.sequence_prefix
      AND p.sequence_number < m.sequence_number AND p.name <> '/'
    ORDER BY p.sequence_number DESC LIMIT 1
) prev ON true
WHERE m.state = 'posted' AND m.name <> '/' AND m.sequence_number > 1
  AND NOT EXISTS (
    SELECT 1 FROM account_move o
    WHERE o.journal_id = m.journal_id AND o.sequence_prefix = m.sequence_prefix
      AND o.sequence_number = m.sequence_number - 1)
ORDER BY j.code, m.sequence_prefix, m.sequence_number
"""
ENTRY_AMOUNTS = """
SELECT m.name, sum(l.debit), sum(l.credit) FROM account_move_line l
JOIN account_move m ON m.id = l.move_id JOIN account_account a ON a.id = l.account_id
WHERE l.parent_state = 'posted' AND a.code = %s GROUP BY m.id, m.name
"""
USER_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2
"""
ENTRIES_AFTER = """
SELECT m.id, m.name, m.ref, j.code, m.date, m.state, m.move_type, m.create_date,
       coalesce(json_agg(json_build_object(
           'id', l.id, 'account', a.code, 'name', l.name, 'debit', l.debit::text,
           'credit', l.credit::text, 'balance', l.balance::text) ORDER BY l.id)
           FILTER (WHERE l.id IS NOT NULL), '[]')
FROM account_move m JOIN account_journal j ON j.id = m.journal_id
LEFT JOIN account_move_line l ON l.move_id = m.id
LEFT JOIN account_account a ON a.id = l.account_id
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
    """Trial balance of posted lines per account with a stable sha256, plus ledger invariants."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        # One consistent view for every query below.
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        rows = await (await conn.execute(TRIAL_BALANCE)).fetchall()
        accounts = [
            AccountBalance(
                account=code, debit=canonical(d), credit=canonical(c), balance=canonical(b)
            )
            for code, d, c, b in rows
        ]
        posted = await fetch_one(conn, "SELECT count(*) FROM account_move WHERE state = 'posted'")
        unbalanced = [r[0] for r in await (await conn.execute(UNBALANCED)).fetchall()]
        gaps = [
            f"{j}: {a} -> {b}" for j, a, b in await (await conn.execute(NUMBERING_GAPS)).fetchall()
        ]
        max_move_id = await fetch_one(conn, "SELECT coalesce(max(id), 0) FROM account_move")
    text = "".join(f"{a.account}|{a.debit}|{a.credit}|{a.balance}\n" for a in accounts)
    return FinanceSnapshot(
        tenant=tenant,
        trial_balance_sha256=hashlib.sha256(text.encode()).hexdigest(),
        accounts=accounts,
        total_debit=canonical(sum((Decimal(a.debit) for a in accounts), Decimal(0))),
        total_credit=canonical(sum((Decimal(a.credit) for a in accounts), Decimal(0))),
        posted_entries=int(posted),
        unbalanced_entries=capped(unbalanced),
        numbering_gaps=capped(gaps),
        max_move_id=int(max_move_id),
    )


async def invariant_violations(
    before_dsn: str, after_dsn: str, before: FinanceSnapshot, after: FinanceSnapshot
) -> list[str]:
    """Each broken invariant, naming the account and the entries that changed it."""
    violations: list[str] = []
    old = {a.account: a for a in before.accounts}
    new = {a.account: a for a in after.accounts}
    zero = AccountBalance(account="", debit="0", credit="0", balance="0")
    for code in sorted(set(old) | set(new)):
        a, b = old.get(code, zero), new.get(code, zero)
        if (a.debit, a.credit, a.balance) == (b.debit, b.credit, b.balance):
            continue
        entries = await _changed_entries(before_dsn, after_dsn, code)
        violations.append(
            f"trial balance changed for account {code}: debit {a.debit} -> {b.debit}, "
            f"credit {a.credit} -> {b.credit}; entries: {', '.join(entries) or 'none found'}"
        )
    for name in sorted(set(after.unbalanced_entries) - set(before.unbalanced_entries)):
        violations.append(f"entry {name} no longer balances")
    for gap in sorted(set(after.numbering_gaps) - set(before.numbering_gaps)):
        violations.append(f"new numbering gap {gap}")
    return violations


async def _changed_entries(before_dsn: str, after_dsn: str, code: str) -> list[str]:
    sums = []
    for dsn in (before_dsn, after_dsn):
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            rows = await (await conn.execute(ENTRY_AMOUNTS, (code,))).fetchall()
        sums.append({name: (Decimal(d), Decimal(c)) for name, d, c in rows})
    old, new = sums
    changed = sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))
    return capped(changed, ENTRIES_NAMED)


async def entries_jsonl(conn: psycopg.AsyncConnection[Any], after_id: int) -> AsyncIterator[bytes]:
    """Each entry above `after_id` with its lines, one JSON object a line, in ~1 MiB chunks."""
    buffer = bytearray()
    async with conn.cursor(name="entries_since_backup") as cursor:  # server-side: not all in RAM
        await cursor.execute(ENTRIES_AFTER, (after_id,))
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
