"""What a release's migrations may weigh: they travel in the start request and, once per
tenant, in the release's history (workflows/validation.py)."""

from __future__ import annotations

import hashlib

from workflows.contracts import MigrationScript
from workflows.validation import MIGRATIONS_IN_HISTORY_MAX_BYTES, size_problems


def _script(kib: int) -> MigrationScript:
    sql = "-- padding\n" * (kib * 1024 // 11)
    return MigrationScript("migrations/big.sql", sql, hashlib.sha256(sql.encode()).hexdigest())


def test_a_migration_over_a_mebibyte_is_refused_whatever_the_tenants():
    (problem,) = size_problems([_script(1100)], 1)
    assert problem.startswith("migrations: 1,100 KiB of SQL, at most 1,024 KiB")


def test_migrations_that_would_swell_the_history_past_its_budget_are_refused():
    (problem,) = size_problems([_script(300), _script(200)], 20)
    assert "500 KiB of SQL go to each of 20 tenants, 9.8 MiB in the release's history" in problem
    assert "split the release" in problem


def test_a_few_kibibytes_for_two_thousand_tenants_travel():
    assert size_problems([_script(4)], 2000) == []
    assert 4 * 1024 * 2000 <= MIGRATIONS_IN_HISTORY_MAX_BYTES
