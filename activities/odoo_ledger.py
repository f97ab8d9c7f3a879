"""An Odoo 17 or 18 ledger read per company, the way Odoo itself computes it.

Written against odoo/odoo (the paths read for this module):
- odoo/addons/base/models/ir_module.py: the series is the head of `base`'s `latest_version`.
- addons/account/models/account_account.py: on 18 `code` is `code_store ->> <root company id>`
  (`_field_to_sql`, root = head of `res_company.parent_path`); on 17 a plain column.
- addons/account/models/account_move.py: `_get_unbalanced_moves` — per entry,
  `ROUND(SUM(line.balance), currency.decimal_places) != 0` in the company's currency;
  17 `_compute_made_sequence_hole` / 18 `_compute_made_sequence_gap` — a numbered entry
  makes a gap when no entry of its journal and prefix, in any state, holds the number before.
- addons/account/models/account_move_line.py: `company_id`, `journal_id`, `date` and
  `parent_state` are stored copies of the entry's fields; section and note lines carry no
  account and are not part of any balance.
"""

from __future__ import annotations

from typing import Any

import psycopg
from temporalio.exceptions import ApplicationError

from workflows.contracts import ErrorType

SUPPORTED = ("17.0", "18.0")

VERSION = """
SELECT latest_version FROM ir_module_module WHERE name = 'base' AND state = 'installed'
"""
COMPANIES = """
SELECT c.id, c.name, cur.name, cur.decimal_places FROM res_company c
JOIN res_currency cur ON cur.id = c.currency_id ORDER BY c.id
"""
# Joins giving `cur.decimal_places` of the line's company; lines without account drop out.
_LINES = """
FROM account_move_line l JOIN account_account a ON a.id = l.account_id
JOIN res_company c ON c.id = l.company_id JOIN res_currency cur ON cur.id = c.currency_id
"""
TRIAL_BALANCE = (
    "SELECT l.company_id, {code}, round(sum(l.debit), cur.decimal_places),"
    " round(sum(l.credit), cur.decimal_places), round(sum(l.balance), cur.decimal_places)"
    + _LINES
    + " WHERE l.parent_state = 'posted' GROUP BY l.company_id, 2, cur.decimal_places ORDER BY 1, 2"
)
BALANCE_TOTALS = (
    "SELECT l.company_id, round(sum(l.balance), cur.decimal_places)"
    + _LINES
    + " WHERE l.parent_state = 'posted' GROUP BY l.company_id, cur.decimal_places"
)
POSTED = "SELECT company_id, count(*) FROM account_move WHERE state = 'posted' GROUP BY 1"
UNBALANCED = """
SELECT move.company_id, move.name FROM account_move_line line
JOIN account_move move ON move.id = line.move_id
JOIN res_company company ON company.id = move.company_id
JOIN res_currency currency ON currency.id = company.currency_id
WHERE move.state = 'posted'
GROUP BY move.id, move.company_id, move.name, currency.decimal_places
HAVING ROUND(SUM(line.balance), currency.decimal_places) != 0 ORDER BY move.id
"""
NUMBERING_GAPS = """
SELECT m.company_id, j.code, prev.name, m.name
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
ORDER BY m.company_id, j.code, m.sequence_prefix, m.sequence_number
"""
COPIED_FIELDS = ("parent_state", "company_id", "date", "journal_id")
_DIFFERS = {
    "parent_state": "l.parent_state IS DISTINCT FROM m.state",
    "company_id": "l.company_id IS DISTINCT FROM m.company_id",
    "date": "l.date IS DISTINCT FROM m.date",
    "journal_id": "l.journal_id IS DISTINCT FROM m.journal_id",
}
MISMATCHED_LINES = (
    "SELECT m.company_id, m.name, l.id, concat_ws(', ', "
    + ", ".join(f"CASE WHEN {test} THEN '{name}' END" for name, test in _DIFFERS.items())
    + ") FROM account_move_line l JOIN account_move m ON m.id = l.move_id WHERE "
    + " OR ".join(_DIFFERS.values())
    + " ORDER BY l.id"
)
# Odoo chains `inalterable_hash` per hash-protected journal in `secure_sequence_number` order.
HASH_CHAINS = """
SELECT m.company_id, count(*), encode(sha256(convert_to(string_agg(
    m.name || ':' || m.inalterable_hash, E'\\n'
    ORDER BY m.journal_id, m.secure_sequence_number, m.id), 'UTF8')), 'hex')
FROM account_move m JOIN account_journal j ON j.id = m.journal_id
WHERE j.restrict_mode_hash_table AND m.inalterable_hash IS NOT NULL GROUP BY 1
"""
ENTRY_AMOUNTS = (
    "SELECT m.name, sum(l.debit), sum(l.credit)"
    + _LINES
    + " JOIN account_move m ON m.id = l.move_id"
    " WHERE l.parent_state = 'posted' AND l.company_id = %s AND {code} = %s GROUP BY m.id, m.name"
)


async def odoo_version(conn: psycopg.AsyncConnection[Any]) -> str:
    """ "17.0" or "18.0", from the installed `base` module; anything else is refused."""
    try:
        row = await (await conn.execute(VERSION)).fetchone()
    except psycopg.errors.UndefinedTable:
        row = None
    series = ".".join(str(row[0]).split(".")[:2]) if row and row[0] else None
    if series not in SUPPORTED:
        found = f"base module version {row[0]!r}" if row and row[0] else "no installed base module"
        raise ApplicationError(
            f"not a supported Odoo database: {found} in ir_module_module; "
            f"finrelease reads Odoo {' and '.join(SUPPORTED)}",
            type=ErrorType.UNSUPPORTED_ODOO,
            non_retryable=True,
        )
    return series


def account_code(version: str) -> str:
    """SQL for the code of account `a` as the company of line `l`'s root sees it."""
    if version == "17.0":
        return "a.code"
    return "a.code_store ->> split_part(c.parent_path, '/', 1)"


def query(template: str, version: str) -> bytes:
    return template.format(code=account_code(version)).encode()
