"""The trial balance computed by hand from raw journal items, to check readers against."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import psycopg

# SQL for the code of account `a` as the company of line `l` sees it (root company = itself).
ACCOUNT_CODE = {"17.0": "a.code", "18.0": "a.code_store ->> l.company_id::text"}


def hand_trial_balance(dsn: str, version: str) -> dict[tuple[int, str], tuple[str, str, str]]:
    """Posted lines summed in Python from raw rows: (company, code) -> (debit, credit, balance)."""
    with psycopg.connect(dsn) as conn:
        if version == "17.0":
            codes = {
                (company, account): code
                for account, code, company in conn.execute(
                    "SELECT id, code, company_id FROM account_account"
                )
            }
        else:  # code_store is {"<company id>": code}
            codes = {
                (int(company), account): code
                for account, store in conn.execute("SELECT id, code_store FROM account_account")
                for company, code in store.items()
            }
        places = dict(
            conn.execute(
                "SELECT c.id, cur.decimal_places FROM res_company c "
                "JOIN res_currency cur ON cur.id = c.currency_id"
            ).fetchall()
        )
        lines = conn.execute(
            "SELECT company_id, account_id, debit, credit, balance, parent_state "
            "FROM account_move_line"
        ).fetchall()
    sums: dict[tuple[int, str], list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
    for company, account, debit, credit, balance, state in lines:
        if state != "posted" or account is None:
            continue
        total = sums[(company, codes[(company, account)])]
        for i, value in enumerate((debit, credit, balance)):
            total[i] += value
    unit = {c: Decimal(1).scaleb(-p) for c, p in places.items()}
    return {
        key: tuple(format(v.quantize(unit[key[0]]), "f") for v in values)  # type: ignore[misc]
        for key, values in sums.items()
    }
