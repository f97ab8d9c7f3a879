"""The tables of Odoo 17 and 18 that finrelease reads, with Odoo's own names and types.

Mirrors the field definitions in odoo/odoo (paths read for this module):
- addons/account/models/account_account.py: on 18 `code` is computed from the
  company-dependent `code_store` (jsonb keyed by the root company id) and accounts belong
  to companies through `company_ids` (relation `account_account_res_company_rel`); bank and
  cash accounts cannot be shared. On 17 `code` and `company_id` are plain columns.
- addons/account/models/account_move.py: `state` draft/posted/cancel, `sequence_prefix`,
  `sequence_number`, `posted_before`, `inalterable_hash`, `secure_sequence_number`;
  `_get_unbalanced_moves` joins res_company and res_currency for `decimal_places`.
- addons/account/models/account_move_line.py: copied fields `company_id`, `journal_id`,
  `date`, `parent_state`; `display_type` with `line_section`/`line_note` lines that carry
  no account and no amount (checks `check_credit_debit`, `check_accountable_required_fields`,
  `check_non_accountable_fields_null`).
- odoo/addons/base/models/ir_cron.py: 18 adds `failure_count` and `first_failure_date`.
- odoo/addons/base/models/ir_module.py: `ir_module_module.latest_version` ("18.0.1.3").
Translated names (`account_account.name`, `account_journal.name`) are jsonb since Odoo 16.
"""

from __future__ import annotations

VERSIONS = ("17.0", "18.0")

COMMON = """
CREATE TABLE ir_module_module (
    id serial NOT NULL,
    name varchar NOT NULL,
    state varchar(16),
    latest_version varchar
);
CREATE TABLE res_currency (
    id serial NOT NULL,
    name varchar(3) NOT NULL,
    symbol varchar NOT NULL,
    rounding numeric,
    decimal_places integer,
    active boolean
);
CREATE TABLE res_company (
    id serial NOT NULL,
    name varchar NOT NULL,
    parent_id integer,
    parent_path varchar,
    currency_id integer NOT NULL,
    create_date timestamp without time zone
);
CREATE TABLE account_journal (
    id serial NOT NULL,
    code varchar(5) NOT NULL,
    name jsonb NOT NULL,
    type varchar NOT NULL,
    company_id integer NOT NULL,
    restrict_mode_hash_table boolean
);
CREATE TABLE account_move (
    id serial NOT NULL,
    name varchar,
    ref varchar,
    journal_id integer NOT NULL,
    company_id integer,
    currency_id integer NOT NULL,
    date date NOT NULL,
    state varchar NOT NULL,
    move_type varchar NOT NULL,
    sequence_prefix varchar,
    sequence_number integer,
    posted_before boolean,
    inalterable_hash varchar,
    secure_sequence_number integer,
    create_date timestamp without time zone
);
CREATE TABLE account_move_line (
    id serial NOT NULL,
    move_id integer NOT NULL,
    account_id integer,
    company_id integer,
    journal_id integer,
    currency_id integer NOT NULL,
    name varchar,
    display_type varchar NOT NULL,  -- required=True in account_move_line.py
    date date,
    parent_state varchar,
    debit numeric DEFAULT 0,
    credit numeric DEFAULT 0,
    balance numeric DEFAULT 0,
    amount_currency numeric DEFAULT 0,
    create_date timestamp without time zone
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

ACCOUNTS_17 = """
CREATE TABLE account_account (
    id serial NOT NULL,
    code varchar(64) NOT NULL,
    name jsonb NOT NULL,
    account_type varchar NOT NULL,
    company_id integer NOT NULL,
    reconcile boolean DEFAULT false
);
CREATE TABLE ir_cron (
    id serial NOT NULL,
    name varchar NOT NULL,
    active boolean DEFAULT true,
    nextcall timestamp without time zone NOT NULL,
    lastcall timestamp without time zone,
    interval_number integer,
    interval_type varchar
);
"""

ACCOUNTS_18 = """
CREATE TABLE account_account (
    id serial NOT NULL,
    code_store jsonb,
    name jsonb NOT NULL,
    account_type varchar NOT NULL,
    reconcile boolean DEFAULT false
);
CREATE TABLE account_account_res_company_rel (
    account_account_id integer NOT NULL,
    res_company_id integer NOT NULL
);
CREATE TABLE ir_cron (
    id serial NOT NULL,
    name varchar NOT NULL,
    active boolean DEFAULT true,
    nextcall timestamp without time zone NOT NULL,
    lastcall timestamp without time zone,
    interval_number integer,
    interval_type varchar,
    failure_count integer DEFAULT 0,
    first_failure_date timestamp without time zone
);
"""

# Built after the load: cheaper than maintaining them row by row during COPY.
CONSTRAINTS = """
ALTER TABLE ir_module_module ADD PRIMARY KEY (id);
ALTER TABLE ir_module_module ADD CONSTRAINT ir_module_module_name_uniq UNIQUE (name);
ALTER TABLE res_currency ADD PRIMARY KEY (id);
ALTER TABLE res_company ADD PRIMARY KEY (id);
ALTER TABLE account_account ADD PRIMARY KEY (id);
ALTER TABLE account_journal ADD PRIMARY KEY (id);
ALTER TABLE account_move ADD PRIMARY KEY (id);
ALTER TABLE account_move_line ADD PRIMARY KEY (id);
ALTER TABLE ir_cron ADD PRIMARY KEY (id);
ALTER TABLE ir_attachment ADD PRIMARY KEY (id);
ALTER TABLE res_company ADD CONSTRAINT res_company_currency_id_fkey
    FOREIGN KEY (currency_id) REFERENCES res_currency(id);
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
    CHECK (display_type IN ('line_section', 'line_note') OR credit * debit = 0);
ALTER TABLE account_move_line ADD CONSTRAINT account_move_line_check_accountable_required_fields
    CHECK (COALESCE(display_type IN ('line_section', 'line_note'), 'f') OR account_id IS NOT NULL);
ALTER TABLE account_move_line ADD CONSTRAINT account_move_line_check_non_accountable_fields_null
    CHECK (display_type NOT IN ('line_section', 'line_note')
           OR (amount_currency = 0 AND debit = 0 AND credit = 0 AND account_id IS NULL));
CREATE INDEX account_move_line_move_id_index ON account_move_line (move_id);
CREATE INDEX account_move_sequence_index
    ON account_move (journal_id, sequence_prefix, sequence_number);
CREATE UNIQUE INDEX account_move_unique_name ON account_move (name, journal_id)
    WHERE (state = 'posted' AND name != '/');
"""

CONSTRAINTS_17 = """
ALTER TABLE account_account ADD CONSTRAINT account_account_company_id_fkey
    FOREIGN KEY (company_id) REFERENCES res_company(id);
ALTER TABLE account_account ADD CONSTRAINT account_account_code_company_uniq
    UNIQUE (code, company_id);
"""

CONSTRAINTS_18 = """
ALTER TABLE account_account_res_company_rel ADD PRIMARY KEY (account_account_id, res_company_id);
ALTER TABLE account_account_res_company_rel ADD CONSTRAINT account_rel_account_fkey
    FOREIGN KEY (account_account_id) REFERENCES account_account(id) ON DELETE CASCADE;
ALTER TABLE account_account_res_company_rel ADD CONSTRAINT account_rel_company_fkey
    FOREIGN KEY (res_company_id) REFERENCES res_company(id) ON DELETE CASCADE;
"""

SEQUENCED = (
    "ir_module_module",
    "res_currency",
    "res_company",
    "account_account",
    "account_journal",
    "account_move",
    "account_move_line",
    "ir_cron",
    "ir_attachment",
)


def schema(version: str) -> str:
    """The CREATE TABLE statements of an Odoo `version` ("17.0" or "18.0") tenant."""
    _check(version)
    return COMMON + (ACCOUNTS_18 if version == "18.0" else ACCOUNTS_17)


def constraints(version: str) -> str:
    _check(version)
    return CONSTRAINTS + (CONSTRAINTS_18 if version == "18.0" else CONSTRAINTS_17)


def _check(version: str) -> None:
    if version not in VERSIONS:
        raise ValueError(f"version: expected one of {VERSIONS}, got {version!r}")
