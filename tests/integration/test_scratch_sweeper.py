"""The db worker's sweep of scratch databases left by vanished attempts, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt

import psycopg
import pytest

from activities.postgres import PostgresActivities
from tests.conftest import drop_database
from tests.integration.conftest import SCRATCH_PREFIX, scratch_databases
from workers.sweeper import ScratchSweeper


def test_sweeper_finds_every_server_alias_and_its_intervals_in_the_environment():
    environ = {
        "FINRELEASE_PG_MAIN_DSN": "host=a",
        "FINRELEASE_PG_EU_WEST_DSN": "host=b",
        "FINRELEASE_PGX_DSN": "not a server",
        "FINRELEASE_SCRATCH_SWEEP_HOURS": "1",
    }
    sweeper = ScratchSweeper.from_environment(object(), environ)  # type: ignore[arg-type]
    assert sweeper.aliases == ("eu_west", "main")
    assert sweeper.every == dt.timedelta(hours=1)
    assert sweeper.older_than == dt.timedelta(hours=24)


@pytest.mark.parametrize("hours", ["six", "0", "-1"])
def test_sweep_interval_that_is_not_a_positive_number_is_refused_naming_the_variable(hours):
    environ = {"FINRELEASE_PG_MAIN_DSN": "host=a", "FINRELEASE_SCRATCH_SWEEP_HOURS": hours}
    with pytest.raises(ValueError) as refused:
        ScratchSweeper.from_environment(object(), environ)  # type: ignore[arg-type]
    assert str(refused.value) == (
        f"FINRELEASE_SCRATCH_SWEEP_HOURS must be a positive number of hours, not {hours!r}"
    )


async def test_sweep_drops_old_scratch_databases_and_survives_an_unknown_server(
    postgres: PostgresActivities, pg_admin_dsn: str
):
    now = int(dt.datetime.now(dt.UTC).timestamp())
    old = f"{SCRATCH_PREFIX}_relgone_acme_v_{now - 3 * 86400}"
    fresh = f"{SCRATCH_PREFIX}_relnow_acme_v_{now}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        for name in (old, fresh):
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        # "nowhere" has no DSN: its failure is logged and the sweep goes on to "main"
        sweeper = ScratchSweeper(postgres, ("nowhere", "main"), older_than=dt.timedelta(days=1))
        stopping = asyncio.Event()
        running = asyncio.create_task(sweeper.run(stopping))
        for _ in range(100):
            if old not in scratch_databases(pg_admin_dsn):
                break
            await asyncio.sleep(0.05)
        stopping.set()
        await asyncio.wait_for(running, 5)  # stops at once, not after `every`
        remaining = scratch_databases(pg_admin_dsn)
    finally:
        for name in (old, fresh):
            drop_database(pg_admin_dsn, name)
    assert old not in remaining
    assert fresh in remaining
