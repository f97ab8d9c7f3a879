"""Which tenants of a wave may start now, which wait for their window, which cannot fit.

Pure: the workflow passes `workflow.now()` (possibly shifted, see `simulated_start`).
A deployment may start inside an allowed stretch (a deployment window minus freezes); a
tenant whose rehearsed migration is longer than what is left of the stretch waits for a
stretch long enough, and is blocked when none comes within `MAX_STRETCHES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from governance.calendar import FreezeCalendar
from governance.inventory import Tenant

MAX_STRETCHES = 60  # about two months of weekly windows


@dataclass
class Deferral:
    next_allowed: datetime
    reasons: list[str]


@dataclass
class WindowCheck:
    allowed: list[str] = field(default_factory=list)
    deferred: dict[str, Deferral] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)  # tenant -> reason

    def earliest(self) -> datetime | None:
        times = [d.next_allowed for d in self.deferred.values()]
        return min(times) if times else None

    def as_evidence(self) -> dict:
        return {
            "allowed": self.allowed,
            "deferred": {
                t: {"next_allowed": d.next_allowed.isoformat(), "reasons": d.reasons}
                for t, d in self.deferred.items()
            },
            "blocked": self.blocked,
        }


def check_windows(
    tenants: list[Tenant],
    calendars: Mapping[str, FreezeCalendar],
    now: datetime,
    durations: Mapping[str, float],
) -> WindowCheck:
    """Sort `tenants` into allowed now, deferred (with the instant to wait for), blocked."""
    result = WindowCheck()
    for tenant in tenants:
        calendar = calendars[tenant.calendar]
        needed = timedelta(seconds=durations.get(tenant.name, 0.0))
        decision = calendar.check(now)
        if decision.allowed and _fits(calendar, now, needed):
            result.allowed.append(tenant.name)
            continue
        start = _next_fitting_start(calendar, now, needed)
        if start is None:
            result.blocked[tenant.name] = (
                f"{tenant.name}: no allowed stretch of calendar {calendar.name!r} fits the"
                f" rehearsed migration of {needed} (searched {MAX_STRETCHES} windows)"
            )
            continue
        reasons = list(decision.reasons)
        if decision.allowed:
            reasons.append(f"the rehearsed migration ({needed}) does not fit the current window")
        result.deferred[tenant.name] = Deferral(start, reasons)
    return result


def _fits(calendar: FreezeCalendar, start: datetime, needed: timedelta) -> bool:
    if not needed:
        return True
    until = calendar.allowed_until(start)
    return until is None or until - start >= needed


def _next_fitting_start(
    calendar: FreezeCalendar, now: datetime, needed: timedelta
) -> datetime | None:
    cursor = now
    for _ in range(MAX_STRETCHES):
        decision = calendar.check(cursor)
        start = decision.next_allowed
        if start is None:
            return None
        if start > now and _fits(calendar, start, needed):
            return start
        until = calendar.allowed_until(start)
        if until is None:
            return None
        cursor = max(until, start + timedelta(seconds=1))
    return None
