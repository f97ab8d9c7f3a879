"""The db worker's housekeeping: scratch databases that a vanished attempt left behind.

Verification and rehearsal restore into scratch databases that are dropped when the step
ends, and a retried step drops its predecessor's leftovers first. A release terminated in
the middle of such a step leaves its scratch database behind. So every
`FINRELEASE_SCRATCH_SWEEP_HOURS` (default 6) the db worker drops the scratch databases
older than `FINRELEASE_SCRATCH_MAX_AGE_HOURS` (default 24: far beyond the longest step's
3-hour limit, so nothing in use is touched) on every server alias it has a DSN for. Several
db workers may sweep at once: dropping is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)

DSN_VARIABLE = re.compile(r"^FINRELEASE_PG_([A-Z0-9_]+)_DSN$")


def aliases_in(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The server aliases with a `FINRELEASE_PG_<ALIAS>_DSN` set, lower case, sorted."""
    found = (DSN_VARIABLE.match(key) for key, value in environ.items() if value)
    return tuple(sorted(m.group(1).lower() for m in found if m))


class Sweeps(Protocol):
    async def sweep_scratch_databases(self, db_server: str, older_than: timedelta) -> list[str]: ...


@dataclass(frozen=True)
class ScratchSweeper:
    target: Sweeps
    aliases: tuple[str, ...]
    every: timedelta = timedelta(hours=6)
    older_than: timedelta = timedelta(hours=24)

    @classmethod
    def from_environment(cls, target: Sweeps, environ: Mapping[str, str]) -> ScratchSweeper:
        """Every alias with a `FINRELEASE_PG_<ALIAS>_DSN`; intervals from the environment."""
        every = _hours(environ, "FINRELEASE_SCRATCH_SWEEP_HOURS", 6)
        older = _hours(environ, "FINRELEASE_SCRATCH_MAX_AGE_HOURS", 24)
        return cls(target, aliases_in(environ), every, older)

    async def sweep_once(self) -> list[str]:
        """Drop what is old enough on every alias; a failing server never stops the others."""
        dropped: list[str] = []
        for alias in self.aliases:
            try:
                dropped += await self.target.sweep_scratch_databases(alias, self.older_than)
            except Exception as error:  # noqa: BLE001 - housekeeping must not stop the worker
                log.warning("scratch sweep failed", db_server=alias, error=str(error))
        return dropped

    async def run(self, stopping: asyncio.Event) -> None:
        """Sweep now, then every `every`, until `stopping` is set."""
        while not stopping.is_set():
            await self.sweep_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.every.total_seconds())


def _hours(environ: Mapping[str, str], variable: str, default: float) -> timedelta:
    text = environ.get(variable) or str(default)
    try:
        hours = float(text)
    except ValueError:
        hours = 0.0
    if not hours > 0:
        raise ValueError(f"{variable} must be a positive number of hours, not {text!r}")
    return timedelta(hours=hours)
