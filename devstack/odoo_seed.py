"""An Odoo-shaped tenant database: the accounting core that finrelease's checks read.

Creates the tables, columns and constraints of Odoo's `res_company`, `account_account`,
`account_journal`, `account_move`, `account_move_line`, `ir_cron` and `ir_attachment`
(the subset the finance checks query, with Odoo's names and types), then bulk-loads
balanced journal entries with COPY. Tables are created in the loading transaction so
COPY can use FREEZE, and keys/indexes are built after the load: a ~1 GB database seeds
in minutes.

    python -m devstack.odoo_seed --dsn postgresql://... --entries 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg

SCHEMA = """
CREATE TABLE res_company (
    id serial NOT NULL,
    name varchar NOT NULL,
    currency_id integer,
    create_date timestamp without time zone
);
CREATE TABLE account_account (
    id serial NOT NULL,
    code varchar(64) NOT NULL,
    name varchar NOT NULL,
    account_type varchar NOT NULL,
    company_id integer NOT NULL,
    reconcile boolean DEFAULT false
);
CREATE TABLE account_journal (
    id serial NOT NULL,
    code varchar(5) NOT NULL,
    name varchar NOT NULL,
    type varchar NOT NULL,
    company_id integer NOT NULL
);
CREATE TABLE account_move (
    id serial NOT NULL,
    name varchar,
    ref varchar,
    journal_id integer NOT NULL,
    company_id integer,
    date date NOT NULL,
    state varchar NOT NULL,
    move_type varchar NOT NULL,
    sequence_prefix varchar,
    sequence_number integer,
    create_date timestamp without time zone
);
CREATE TABLE account_move_line (
    id serial NOT NULL,
    move_id integer NOT NULL,
    account_id integer,
    company_id integer,
    journal_id integer,
    name varchar,
    date date,
    parent_state varchar,
    debit numeric DEFAULT 0,
    credit numeric DEFAULT 0,
    balance numeric DEFAULT 0,
    create_date timestamp without time zone
);
CREATE TABLE ir_cron (
    id serial NOT NULL,
    name varchar NOT NULL,
    active boolean DEFAULT true,
    nextcall timestamp without time zone NOT NULL,
    interval_number integer,
    interval_type varchar
);
CREATE TABLE ir_attachment (
    id serial NOT NULL,
    name varchar NOT NULL,
    store_fname varchar,
    file_size integer,
    checksum varchar(40),
    mimetype varchar,
    res_model varchar,
    res_id integer
);
"""

# Built after the load: cheaper than maintaining them row by row during COPY.
CONSTRAINTS = """
ALTER TABLE res_company ADD PRIMARY KEY (id);
ALTER TABLE account_account ADD PRIMARY KEY (id);
ALTER TABLE account_journal ADD PRIMARY KEY (id);
ALTER TABLE account_move ADD PRIMARY KEY (id);
ALTER TABLE account_move_line ADD PRIMARY KEY (id);
ALTER TABLE ir_cron ADD PRIMARY KEY (id);
ALTER TABLE ir_attachment ADD PRIMARY KEY (id);
ALTER TABLE account_account ADD CONSTRAINT account_account_company_id_fkey
    FOREIGN KEY (company_id) REFERENCES res_company(id);
ALTER TABLE account_account ADD CONSTRAINT account_account_code_company_uniq
    UNIQUE (code, company_id);
ALTER TABLE account_journal ADD CONSTRAINT account_journal_company_id_fkey
    FOREIGN KEY (company_id) REFERENCES res_company(id);
ALTER TABLE account_journal ADD CONSTRAINT account_journal_code_company_uniq
    UNIQUE (company_id, code);
ALTER TABLE account_move ADD CONSTRAINT account_move_journal_id_fkey
    FOREIGN KEY (journal_id) REFERENCES account_journal(id);
ALTER TABLE account_move_line ADD CONSTRAINT account_move_line_move_id_fkey
    FOREIGN KEY (move_id) REFERENCES account_move(id) ON DELETE CASCADE;
ALTER TABLE account_move_line ADD CONSTRAINT account_move_line_account_id_fkey
    FOREIGN KEY (account_id) REFERENCES account_account(id);
ALTER TABLE account_move_line ADD CONSTRAINT account_move_line_check_credit_debit
    CHECK (credit * debit = 0);
CREATE INDEX account_move_line_move_id_index ON account_move_line (move_id);
CREATE INDEX account_move_sequence_index
    ON account_move (journal_id, sequence_prefix, sequence_number);
"""

SEQUENCED = (
    "res_company",
    "account_account",
    "account_journal",
    "account_move",
    "account_move_line",
    "ir_cron",
    "ir_attachment",
)

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


@dataclass
class SeedSummary:
    entries: int
    lines: int
    accounts: int
    journals: int
    max_move_id: int


def seed_odoo_database(
    dsn: str, *, entries: int, seed: int = 0, attachments: int = 10, filestore_prefix: str = ""
) -> SeedSummary:
    """Create Odoo's accounting core in the (empty) database at `dsn` and fill it.

    `entries` journal entries (about 2% drafts, the rest posted, gap-free numbering per
    journal and year), every one balanced; `attachments` `ir_attachment` rows whose
    `store_fname` is `<filestore_prefix>/<sha1[:2]>/<sha1>` (Odoo's relative form when the
    prefix is empty) and whose content is `attachment_files(seed, attachments)`.
    Deterministic for a given `seed`.
    """
    rng = random.Random(seed)
    now = dt.datetime(2025, 1, 1, 12, 0, 0)
    with psycopg.connect(dsn) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute(SCHEMA)
        _copy(
            conn,
            "res_company",
            ["id", "name", "currency_id", "create_date"],
            [f"1\tFinRelease Demo Company\t1\t{now}\n"],
        )
        _copy(
            conn,
            "account_account",
            ["id", "code", "name", "account_type", "company_id", "reconcile"],
            [
                f"{i}\t{code}\t{name}\t{kind}\t1\t{'t' if kind in RECONCILED else 'f'}\n"
                for i, (code, name, kind) in enumerate(ACCOUNTS, 1)
            ],
        )
        _copy(
            conn,
            "account_journal",
            ["id", "code", "name", "type", "company_id"],
            [
                f"{i}\t{code}\t{name}\t{kind}\t1\n"
                for i, (code, name, kind, _, _) in enumerate(JOURNALS, 1)
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
        lines = _copy_entries(conn, rng, entries, now)
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
        conn.execute(CONSTRAINTS)
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
        accounts=len(ACCOUNTS),
        journals=len(JOURNALS),
        max_move_id=entries,
    )


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
    "date",
    "state",
    "move_type",
    "sequence_prefix",
    "sequence_number",
    "create_date",
]
LINE_COLUMNS = [
    "id",
    "move_id",
    "account_id",
    "company_id",
    "journal_id",
    "name",
    "date",
    "parent_state",
    "debit",
    "credit",
    "balance",
    "create_date",
]


def _copy_entries(
    conn: psycopg.Connection, rng: random.Random, entries: int, now: dt.datetime
) -> int:
    """Moves first, then their lines (two COPYs, generated twice from the same seed)."""
    state = rng.getstate()
    _copy(conn, "account_move", MOVE_COLUMNS, (move for move, _ in _entries(rng, entries, now)))
    rng.setstate(state)
    counter = [0]

    def lines() -> Iterator[str]:
        for _, move_lines in _entries(rng, entries, now):
            counter[0] += len(move_lines)
            yield from move_lines

    _copy(conn, "account_move_line", LINE_COLUMNS, lines())
    return counter[0]


def _entries(rng: random.Random, entries: int, now: dt.datetime) -> Iterator[tuple[str, list[str]]]:
    """(move row, line rows) per entry; dates ascend with ids across two years."""
    # Random hex references keep the text from compressing to nothing (a real ledger doesn't).
    noise = rng.randbytes(1 << 20).hex()
    start = dt.date(2024, 1, 1).toordinal()
    span = 730
    sequence: dict[tuple[int, int], int] = {}
    line_id = 0
    created = str(now)
    for move_id in range(1, entries + 1):
        date = dt.date.fromordinal(start + (move_id - 1) * span // max(entries, 1))
        journal = rng.randrange(len(JOURNALS))
        code, _, _, move_type, prefix = JOURNALS[journal]
        journal_id = journal + 1
        posted = rng.random() >= 0.02
        offset = (move_id * 24) % (len(noise) - 12)
        ref = noise[offset : offset + 12]
        if posted:
            key = (journal_id, date.year)
            number = sequence[key] = sequence.get(key, 0) + 1
            sequence_prefix = f"{prefix}/{date.year}/"
            name = f"{sequence_prefix}{number:05d}"
            state = "posted"
        else:
            sequence_prefix, number, name, state = f"{prefix}/{date.year}/", 0, "/", "draft"
        partner = PARTNERS[rng.randrange(len(PARTNERS))]
        label = f"{partner} - {GOODS[rng.randrange(len(GOODS))]} - ref {ref}"
        move = (
            f"{move_id}\t{name}\t{ref.upper()}\t{journal_id}\t1\t{date}\t{state}\t{move_type}\t"
            f"{sequence_prefix}\t{number}\t{created}\n"
        )
        rows = []
        for account, debit, credit in _legs(rng, journal):
            line_id += 1
            rows.append(
                f"{line_id}\t{move_id}\t{account}\t1\t{journal_id}\t{label}\t{date}\t{state}\t"
                f"{_money(debit)}\t{_money(credit)}\t{_money(debit - credit)}\t{created}\n"
            )
        yield move, rows


def _legs(rng: random.Random, journal: int) -> list[tuple[int, int, int]]:
    """(account id, debit cents, credit cents) legs that sum to zero."""
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


def _money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


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
    args = parser.parse_args(argv)
    summary = seed_odoo_database(
        args.dsn,
        entries=args.entries,
        seed=args.seed,
        attachments=args.attachments,
        filestore_prefix=args.filestore_prefix,
    )
    print(
        f"seeded {summary.entries} entries, {summary.lines} lines, {summary.accounts} accounts, "
        f"{summary.journals} journals; max account_move.id {summary.max_move_id}"
    )


if __name__ == "__main__":
    main()
