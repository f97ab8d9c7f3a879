"""An Odoo-shaped tenant database (17.0 or 18.0): the accounting core finrelease reads.

Creates the tables of `devstack.odoo_schema` (Odoo's names and types for that version), then
bulk-loads balanced journal entries with COPY. Tables are created in the loading transaction
so COPY can use FREEZE, and keys/indexes are built after the load: a ~1 GB database seeds in
minutes. What a real ledger holds and a naive reading gets wrong is seeded on purpose:
cancelled and reset-to-draft vendor bills keeping their numbers, note and section lines
without an account, a hash-protected sales journal, and (with `companies=2`) a second
company in a 0-decimal currency — on 18 sharing the chart through `company_ids`, as Odoo 18
allows for every account but bank and cash.

    python -m devstack.odoo_seed --dsn postgresql://... --entries 100000 --version 18.0
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg

from devstack.odoo_schema import SEQUENCED, constraints, schema

# (code, name, type): a small French/IFRS-flavoured chart of accounts.
ACCOUNTS = [
    ("101200", "Bank", "asset_cash"),
    ("101300", "Cash", "asset_cash"),
    ("121000", "Account Receivable", "asset_receivable"),
    ("131000", "Tax Paid", "asset_current"),
    ("211000", "Account Payable", "liability_payable"),
    ("251000", "Tax Received", "liability_current"),
    ("400000", "Product Sales", "income"),
    ("410000", "Service Revenue", "income"),
    ("450000", "Other Income", "income_other"),
    ("600000", "Expenses", "expense"),
    ("610000", "Rent", "expense"),
    ("620000", "Travel and Accommodation", "expense"),
    ("630000", "Salaries", "expense"),
    ("640000", "Software Subscriptions", "expense"),
    ("650000", "Depreciation", "expense_depreciation"),
    ("700000", "Equity", "equity"),
]
RECONCILED = ("asset_receivable", "liability_payable")
RECEIVABLE, TAX_PAID, PAYABLE, TAX_RECEIVED = 3, 4, 5, 6  # ids (1-based positions above)
BANK, CASH, INCOME, EXPENSES = 1, 2, (7, 8, 9), (10, 11, 12, 13, 14, 15)

# (code, name, type, move_type, prefix)
JOURNALS = [
    ("INV", "Customer Invoices", "sale", "out_invoice", "INV"),
    ("BILL", "Vendor Bills", "purchase", "in_invoice", "BILL"),
    ("BNK1", "Bank", "bank", "entry", "BNK1"),
    ("CSH1", "Cash", "cash", "entry", "CSH1"),
    ("MISC", "Miscellaneous Operations", "general", "entry", "MISC"),
]

PARTNERS = [
    "Azure Interior",
    "Deco Addict",
    "Gemini Furniture",
    "Lumber Inc",
    "Ready Mat",
    "Wood Corner",
    "Acme Logistics GmbH",
    "Nordlicht Handel AG",
    "Brasserie du Port SARL",
    "Kowalski i Synowie",
    "Hoffmann Elektrotechnik",
    "Vestergaard ApS",
    "Rossi Costruzioni",
    "Pacific Freight Ltd",
    "Clinique Saint-Michel",
    "Bäckerei Sonnenschein",
]
GOODS = [
    "office chair",
    "standing desk",
    "conference table",
    "consulting hours",
    "cloud hosting",
    "annual maintenance",
    "training day",
    "shipping fees",
    "spare parts",
    "LED panels",
    "cabling work",
    "support contract",
    "licence renewal",
    "printer toner",
    "travel expenses",
]


# (id, name, symbol, rounding, decimal_places): the second has no minor unit, like JPY.
CURRENCIES = [(1, "EUR", "€", "0.01", 2), (2, "JPY", "¥", "1", 0)]
# (id, name, currency id)
COMPANIES = [(1, "FinRelease Demo Company", 1), (2, "FinRelease Japan K.K.", 2)]
# (name, state): `latest_version` is "<series>.<module version>", as Odoo records it.
MODULES = [
    ("base", "installed"),
    ("account", "installed"),
    ("mail", "installed"),
    ("sale_management", "uninstalled"),
]
CANCELLED, RESET_TO_DRAFT = 0.02, 0.02  # shares of vendor bills, on top of 2% never-posted
SECOND_COMPANY_SHARE = 0.3
HASHED_JOURNAL = 0  # the sales journal is hash-protected (restrict_mode_hash_table)


@dataclass
class SeedSummary:
    entries: int
    lines: int
    accounts: int
    journals: int
    max_move_id: int
    version: str = "17.0"
    companies: int = 1


class Chart:
    """Account ids per (company, chart position), shaped as the version stores them.

    17: one account row per company and code. 18: one row per code shared by every company
    (`code_store` maps each company to its code), except bank and cash accounts, which
    Odoo 18 refuses to share (`_check_company_consistency` in account_account.py).
    """

    def __init__(self, version: str, companies: int) -> None:
        self.version, self.companies = version, companies

    def account(self, company: int, position: int) -> int:
        size = len(ACCOUNTS)
        if self.version == "17.0":
            return position + size * (company - 1)
        if company > 1 and ACCOUNTS[position - 1][2] == "asset_cash":
            return size + 2 * (company - 2) + position
        return position

    def rows(self) -> list[str]:
        rows = []
        for company in range(1, self.companies + 1):
            for position, (code, name, kind) in enumerate(ACCOUNTS, 1):
                account_id = self.account(company, position)
                label = json.dumps({"en_US": name})
                reconcile = "t" if kind in RECONCILED else "f"
                if self.version == "17.0":
                    rows.append(f"{account_id}\t{code}\t{label}\t{kind}\t{company}\t{reconcile}\n")
                elif account_id == position and company > 1:
                    continue  # shared: written once, for every company, below
                else:
                    owners = self.owners(account_id)
                    code_store = json.dumps({str(c): code for c in owners})
                    rows.append(f"{account_id}\t{code_store}\t{label}\t{kind}\t{reconcile}\n")
        return rows

    def owners(self, account_id: int) -> list[int]:
        return [
            c
            for c in range(1, self.companies + 1)
            if account_id in {self.account(c, p) for p in range(1, len(ACCOUNTS) + 1)}
        ]

    def company_rel_rows(self) -> list[str]:
        ids = sorted(
            {
                self.account(c, p)
                for c in range(1, self.companies + 1)
                for p in range(1, len(ACCOUNTS) + 1)
            }
        )
        return [f"{a}\t{c}\n" for a in ids for c in self.owners(a)]


def seed_odoo_database(
    dsn: str,
    *,
    entries: int,
    seed: int = 0,
    attachments: int = 10,
    filestore_prefix: str = "",
    version: str = "17.0",
    companies: int = 1,
) -> SeedSummary:
    """Create Odoo `version`'s accounting core in the (empty) database at `dsn` and fill it.

    `entries` journal entries, every one balanced: about 2% drafts never posted (named "/"),
    2% of vendor bills cancelled and 2% reset to draft (both keep their number, as in Odoo),
    the rest posted, numbered without gaps per journal and year. `companies` (1 or 2): the
    second, in a 0-decimal currency, gets about 30% of the entries. `attachments`
    `ir_attachment` rows whose `store_fname` is `<filestore_prefix>/<sha1[:2]>/<sha1>`
    (Odoo's relative form when the prefix is empty) and whose content is
    `attachment_files(seed, attachments)`. Deterministic for a given `seed`.
    """
    if companies not in (1, 2):
        raise ValueError(f"companies: expected 1 or 2, got {companies}")
    ddl, keys = schema(version), constraints(version)
    rng = random.Random(seed)
    now = dt.datetime(2025, 1, 1, 12, 0, 0)
    chart = Chart(version, companies)
    with psycopg.connect(dsn) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(ddl)
        _copy(
            conn,
            "ir_module_module",
            ["id", "name", "state", "latest_version"],
            [
                f"{i}\t{name}\t{state}\t{version}.1.3\n"
                for i, (name, state) in enumerate(MODULES, 1)
            ],
        )
        _copy(
            conn,
            "res_currency",
            ["id", "name", "symbol", "rounding", "decimal_places", "active"],
            [f"{i}\t{n}\t{s}\t{r}\t{p}\tt\n" for i, n, s, r, p in CURRENCIES],
        )
        _copy(
            conn,
            "res_company",
            ["id", "name", "parent_path", "currency_id", "create_date"],
            [f"{i}\t{n}\t{i}/\t{cur}\t{now}\n" for i, n, cur in COMPANIES[:companies]],
        )
        if version == "17.0":
            columns = ["id", "code", "name", "account_type", "company_id", "reconcile"]
        else:
            columns = ["id", "code_store", "name", "account_type", "reconcile"]
        _copy(conn, "account_account", columns, chart.rows())
        if version == "18.0":
            _copy(
                conn,
                "account_account_res_company_rel",
                ["account_account_id", "res_company_id"],
                chart.company_rel_rows(),
            )
        _copy(
            conn,
            "account_journal",
            ["id", "code", "name", "type", "company_id", "restrict_mode_hash_table"],
            [
                f"{_journal_id(c, j)}\t{code}\t{json.dumps({'en_US': name})}\t{kind}\t{c}\t"
                f"{'t' if j == HASHED_JOURNAL else 'f'}\n"
                for c in range(1, companies + 1)
                for j, (code, name, kind, _, _) in enumerate(JOURNALS)
            ],
        )
        # Cron jobs are scheduled from the real clock (like a live Odoo), so a freshly
        # seeded tenant passes the `cron` smoke check; the entries keep their fixed dates.
        next_run = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).replace(
            tzinfo=None, microsecond=0
        )
        _copy(
            conn,
            "ir_cron",
            ["id", "name", "active", "nextcall", "interval_number", "interval_type"],
            [
                f"1\tAccount: Post draft entries with auto_post enabled\tt\t{next_run}\t1\tdays\n",
                f"2\tMail: Email Queue Manager\tt\t{next_run}\t1\tminutes\n",
                f"3\tCurrency: rate update\tf\t{next_run}\t1\tdays\n",
            ],
        )
        lines = _copy_entries(conn, rng, entries, now, chart)
        _copy(
            conn,
            "ir_attachment",
            [
                "id",
                "name",
                "store_fname",
                "file_size",
                "checksum",
                "mimetype",
                "res_model",
                "res_id",
            ],
            _attachment_rows(seed, attachments, entries, filestore_prefix),
        )
        conn.execute(keys)
        for table in SEQUENCED:
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
            )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")
    return SeedSummary(
        entries=entries,
        lines=lines,
        accounts=len(chart.rows()),
        journals=len(JOURNALS) * companies,
        max_move_id=entries,
        version=version,
        companies=companies,
    )


def _journal_id(company: int, journal: int) -> int:
    return journal + 1 + len(JOURNALS) * (company - 1)


def attachment_files(seed: int, attachments: int) -> Iterator[tuple[str, bytes]]:
    """(`<sha1[:2]>/<sha1>`, content) of each seeded attachment, as Odoo lays out its filestore."""
    rng = random.Random(f"attachments-{seed}")
    for index in range(attachments):
        content = b"%PDF-1.4\n% finrelease seed attachment " + str(index).encode() + b"\n"
        content += rng.randbytes(rng.randint(512, 8192))
        checksum = hashlib.sha1(content).hexdigest()
        yield f"{checksum[:2]}/{checksum}", content


def _attachment_rows(seed: int, attachments: int, entries: int, prefix: str) -> Iterator[str]:
    for index, (relative, content) in enumerate(attachment_files(seed, attachments), 1):
        store_fname = f"{prefix.strip('/')}/{relative}" if prefix.strip("/") else relative
        res_id = (index * 7919) % max(entries, 1) + 1
        yield (
            f"{index}\tinvoice-{index:05d}.pdf\t{store_fname}\t{len(content)}\t"
            f"{relative.split('/')[1]}\tapplication/pdf\taccount.move\t{res_id}\n"
        )


def _copy(
    conn: psycopg.Connection, table: str, columns: list[str], rows: Iterator[str] | list[str]
) -> None:
    """COPY text-format rows (already tab-separated, newline-terminated) in ~1 MB writes."""
    with conn.cursor().copy(
        f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FREEZE)"
    ) as copy:
        buffer: list[str] = []
        size = 0
        for row in rows:
            buffer.append(row)
            size += len(row)
            if size > 1 << 20:
                copy.write("".join(buffer))
                buffer, size = [], 0
        if buffer:
            copy.write("".join(buffer))


MOVE_COLUMNS = [
    "id",
    "name",
    "ref",
    "journal_id",
    "company_id",
    "currency_id",
    "date",
    "state",
    "move_type",
    "sequence_prefix",
    "sequence_number",
    "posted_before",
    "inalterable_hash",
    "secure_sequence_number",
    "create_date",
]
LINE_COLUMNS = [
    "id",
    "move_id",
    "account_id",
    "company_id",
    "journal_id",
    "currency_id",
    "name",
    "display_type",
    "date",
    "parent_state",
    "debit",
    "credit",
    "balance",
    "amount_currency",
    "create_date",
]


def _copy_entries(
    conn: psycopg.Connection, rng: random.Random, entries: int, now: dt.datetime, chart: Chart
) -> int:
    """Moves first, then their lines (two COPYs, generated twice from the same seed)."""
    state = rng.getstate()
    moves = (move for move, _ in _entries(rng, entries, now, chart))
    _copy(conn, "account_move", MOVE_COLUMNS, moves)
    rng.setstate(state)
    counter = [0]

    def lines() -> Iterator[str]:
        for _, move_lines in _entries(rng, entries, now, chart):
            counter[0] += len(move_lines)
            yield from move_lines

    _copy(conn, "account_move_line", LINE_COLUMNS, lines())
    return counter[0]


def _entries(
    rng: random.Random, entries: int, now: dt.datetime, chart: Chart
) -> Iterator[tuple[str, list[str]]]:
    """(move row, line rows) per entry; dates ascend with ids across two years."""
    # Random hex references keep the text from compressing to nothing (a real ledger doesn't).
    noise = rng.randbytes(1 << 20).hex()
    start = dt.date(2024, 1, 1).toordinal()
    span = 730
    sequence: dict[tuple[int, int], int] = {}
    chain: dict[int, tuple[str, int]] = {}  # journal id -> (last inalterable hash, its number)
    line_id = 0
    created = str(now)
    for move_id in range(1, entries + 1):
        date = dt.date.fromordinal(start + (move_id - 1) * span // max(entries, 1))
        journal = rng.randrange(len(JOURNALS))
        company = 2 if chart.companies > 1 and rng.random() < SECOND_COMPANY_SHARE else 1
        currency, _, _, _, places = CURRENCIES[COMPANIES[company - 1][2] - 1]
        code, _, _, move_type, prefix = JOURNALS[journal]
        journal_id = _journal_id(company, journal)
        roll = rng.random()
        offset = (move_id * 24) % (len(noise) - 12)
        ref = noise[offset : offset + 12]
        sequence_prefix = f"{prefix}/{date.year}/"
        posted_before, digest, secure = "f", "\\N", "\\N"
        if roll < 0.02:  # a draft never posted has no number yet
            number, name, state = 0, "/", "draft"
        else:
            key = (journal_id, date.year)
            number = sequence[key] = sequence.get(key, 0) + 1
            name = f"{sequence_prefix}{number:05d}"
            state, posted_before = "posted", "t"
            if journal == 1 and roll < 0.02 + CANCELLED:
                state = "cancel"  # button_cancel keeps the name (account_move.py)
            elif journal == 1 and roll < 0.02 + CANCELLED + RESET_TO_DRAFT:
                state = "draft"  # button_draft keeps name and number; posted_before stays
        partner = PARTNERS[rng.randrange(len(PARTNERS))]
        label = f"{partner} - {GOODS[rng.randrange(len(GOODS))]} - ref {ref}"
        legs = _legs(rng, journal)
        if state == "posted" and journal == HASHED_JOURNAL:
            previous, count = chain.get(journal_id, ("", 0))
            text = f"{previous}|{name}|{date}|" + "|".join(f"{a}:{d}:{c}" for a, d, c in legs)
            digest, secure = hashlib.sha256(text.encode()).hexdigest(), str(count + 1)
            chain[journal_id] = (digest, count + 1)
        move = (
            f"{move_id}\t{name}\t{ref.upper()}\t{journal_id}\t{company}\t{currency}\t{date}\t"
            f"{state}\t{move_type}\t{sequence_prefix}\t{number}\t{posted_before}\t{digest}\t"
            f"{secure}\t{created}\n"
        )
        rows = []
        for position, debit, credit in legs:
            line_id += 1
            account = chart.account(company, position)
            kind = _display_type(position)
            rows.append(
                f"{line_id}\t{move_id}\t{account}\t{company}\t{journal_id}\t{currency}\t{label}\t"
                f"{kind}\t{date}\t{state}\t{_money(debit, places)}\t{_money(credit, places)}\t"
                f"{_money(debit - credit, places)}\t{_money(debit - credit, places)}\t{created}\n"
            )
        if journal in (0, 1) and rng.random() < 0.1:  # invoice layout lines: no account, no amount
            for kind in ("line_section", "line_note"):
                line_id += 1
                rows.append(
                    f"{line_id}\t{move_id}\t\\N\t{company}\t{journal_id}\t{currency}\t"
                    f"{kind.split('_')[1]}: {partner}\t{kind}\t{date}\t{state}\t0\t0\t0\t0\t"
                    f"{created}\n"
                )
        yield move, rows


def _display_type(position: int) -> str:
    if position in (RECEIVABLE, PAYABLE):
        return "payment_term"
    if position in (TAX_PAID, TAX_RECEIVED):
        return "tax"
    return "product"


def _legs(rng: random.Random, journal: int) -> list[tuple[int, int, int]]:
    """(chart position, debit, credit) legs in the currency's minor unit that sum to zero."""
    net = rng.randint(1_000, 2_500_000)
    tax = net * 20 // 100
    if journal == 0:  # customer invoice: receivable against income and tax
        return [
            (RECEIVABLE, net + tax, 0),
            (INCOME[rng.randrange(3)], 0, net),
            (TAX_RECEIVED, 0, tax),
        ]
    if journal == 1:  # vendor bill: expense and tax against payable
        return [(EXPENSES[rng.randrange(6)], net, 0), (TAX_PAID, tax, 0), (PAYABLE, 0, net + tax)]
    if journal == 2:  # bank: customer payment
        return [(BANK, net, 0), (RECEIVABLE, 0, net)]
    if journal == 3:  # cash: petty expense
        return [(EXPENSES[rng.randrange(6)], net // 10, 0), (CASH, 0, net // 10)]
    return [(EXPENSES[5], net, 0), (PAYABLE, 0, net)]  # miscellaneous: accrual


def _money(units: int, places: int = 2) -> str:
    """`units` of the minor unit as decimal text with `places` decimals."""
    if places == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    units = abs(units)
    return f"{sign}{units // 10**places}.{units % 10**places:0{places}d}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Seed an empty PostgreSQL database with Odoo's accounting core."
    )
    parser.add_argument(
        "--dsn", required=True, help="libpq connection string of the empty database"
    )
    parser.add_argument("--entries", type=int, required=True, help="journal entries to create")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--attachments", type=int, default=10)
    parser.add_argument("--filestore-prefix", default="")
    parser.add_argument("--version", default="17.0", choices=["17.0", "18.0"])
    parser.add_argument("--companies", type=int, default=1, choices=[1, 2])
    args = parser.parse_args(argv)
    summary = seed_odoo_database(
        args.dsn,
        entries=args.entries,
        seed=args.seed,
        attachments=args.attachments,
        filestore_prefix=args.filestore_prefix,
        version=args.version,
        companies=args.companies,
    )
    print(
        f"seeded Odoo {summary.version}, {summary.companies} companies: {summary.entries} entries, {summary.lines} lines, {summary.accounts} accounts, "
        f"{summary.journals} journals; max account_move.id {summary.max_move_id}"
    )


if __name__ == "__main__":
    main()
