"""Freeze calendars (`calendars/<name>.yaml`): closes, holidays, blackouts, deployment windows.

Semantics (ARCHITECTURE, Contracts): a business day is Monday-Friday and not a holiday. The
close around the end of month M freezes from 00:00 local on the B-th last business day of
M (B = 0: 00:00 on day 1 of M+1) until 00:00 local on the day after the A-th business day
of M+1 (A = 0: 00:00 on day 1 of M+1). Quarter ends are 3, 6, 9 and 12 months after the
fiscal year starts (the month after `fiscal_year_end_month`); there `quarter_end_close`
replaces `month_end_close`, at the fiscal year end `year_end_close` replaces both; a close
not configured freezes nothing and leaves the next one down in force. Freezes that overlap
or touch form one freeze. Blackout and window ends are exclusive; a window may end at
"24:00"; no windows = any time. Local times in a DST gap move to the first instant after
the gap; ambiguous local times take their first occurrence.

Decisions of our own: `business_days_before/after` are 0..20 (a month has about 20
business days); `check(at).next_allowed` is `at` itself when `at` is allowed;
`allowed_until(at)` returns `at` when `at` is not allowed. The search horizon is
[at, at + 400 days). Internally every instant is UTC, because aware datetimes sharing one
zoneinfo compare by wall time (wrong during the fall-back hour); results are converted to
the calendar's zone. A naive `at` is read in the calendar's zone.
"""

from __future__ import annotations

import calendar as _gregorian
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from governance.documents import Problems, join, load_yaml, problems_only, quoted
from governance.inventory import check_timezone

HORIZON = timedelta(days=400)
_CHUNK = timedelta(days=35)  # windows are generated a chunk at a time, not for all 400 days
MAX_CLOSE_DAYS = 20
MIN_YEAR, MAX_YEAR = 1970, 9000  # keeps every date arithmetic far from datetime's limits
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOSES = ("month_end_close", "quarter_end_close", "year_end_close")
_END_OF_DAY = "24:00"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    frozen: bool
    in_window: bool
    reasons: tuple[str, ...]
    next_allowed: datetime | None
    freeze_ends: datetime | None  # end of the freeze containing `at`, when frozen

    def as_json(self) -> dict[str, Any]:
        """The `calendar check --json` object: times ISO 8601 with offset and seconds."""
        return {
            "allowed": self.allowed,
            "frozen": self.frozen,
            "in_window": self.in_window,
            "reasons": list(self.reasons),
            "next_allowed": _iso(self.next_allowed),
            "freeze_ends": _iso(self.freeze_ends),
        }


@dataclass(frozen=True)
class Period:
    kind: str  # freeze | window
    start: datetime
    end: datetime  # exclusive
    reason: str


@dataclass(frozen=True)
class Close:
    business_days_before: int
    business_days_after: int


@dataclass(frozen=True)
class Blackout:
    start: datetime  # UTC
    end: datetime  # UTC, exclusive
    reason: str


@dataclass(frozen=True)
class DeploymentWindow:
    days: tuple[int, ...]  # 0 = Monday
    start: time
    end: time | None  # None: 24:00

    def describe(self) -> str:
        days = ",".join(WEEKDAYS[d] for d in self.days)
        end = self.end.strftime("%H:%M") if self.end else _END_OF_DAY
        return f"{days} {self.start.strftime('%H:%M')}-{end}"


@dataclass(frozen=True)
class _Span:
    start: datetime  # UTC
    end: datetime  # UTC, exclusive
    reason: str


class FreezeCalendar:
    name: str
    timezone: str

    def __init__(
        self,
        name: str,
        timezone: str,
        holidays: frozenset[date] = frozenset(),
        fiscal_year_end_month: int = 12,
        month_end_close: Close | None = None,
        quarter_end_close: Close | None = None,
        year_end_close: Close | None = None,
        blackouts: tuple[Blackout, ...] = (),
        deployment_windows: tuple[DeploymentWindow, ...] = (),
    ) -> None:
        self.name = name
        self.timezone = timezone
        self.zone = ZoneInfo(timezone)
        self.holidays = holidays
        self.fiscal_year_end_month = fiscal_year_end_month
        self.month_end_close = month_end_close
        self.quarter_end_close = quarter_end_close
        self.year_end_close = year_end_close
        self.blackouts = blackouts
        self.deployment_windows = deployment_windows
        self.quarter_end_months = frozenset(
            (fiscal_year_end_month + 3 * k - 1) % 12 + 1 for k in range(1, 5)
        )

    # --- public ------------------------------------------------------------------------

    def check(self, at: datetime) -> Decision:
        """Is a deployment allowed to start at `at`, and if not, when next?"""
        moment = self._utc(at)
        limit = moment + HORIZON
        freezes = self._freezes(moment, limit)
        containing = [f for f in freezes if f.start <= moment < f.end]
        in_window = self._in_window(moment)
        reasons = [
            f"frozen: {f.reason} ({_iso(self._local(f.start))} to {_iso(self._local(f.end))})"
            for f in containing
        ]
        if not in_window:
            windows = ", ".join(w.describe() for w in self.deployment_windows)
            reasons.append(f"outside the deployment windows ({windows})")
        allowed = not containing and in_window
        next_allowed = moment if allowed else self._next_allowed(moment, limit, freezes)
        if next_allowed is None:
            reasons.append(f"no allowed instant within {HORIZON.days} days")
        return Decision(
            allowed=allowed,
            frozen=bool(containing),
            in_window=in_window,
            reasons=tuple(reasons),
            next_allowed=self._local(next_allowed) if next_allowed else None,
            freeze_ends=self._local(containing[0].end) if containing else None,
        )

    def allows(self, at: datetime) -> bool:
        """Whether a deployment may start at `at` (no search for the next allowed start)."""
        moment = self._utc(at)
        frozen = any(f.start <= moment < f.end for f in self._freezes(moment, moment))
        return not frozen and self._in_window(moment)

    def periods(self, start: datetime, end: datetime) -> list[Period]:
        """Freezes and deployment windows overlapping [start, end), in order.

        Each is shown whole (a freeze that began before `start` keeps its real start),
        except that with no deployment windows the one window is [start, end) itself.
        """
        lo, hi = self._utc(start), self._utc(end)
        spans = [("freeze", f) for f in self._freezes(lo, hi)]
        spans += [("window", w) for w in self._windows(lo, hi)]
        periods = [
            Period(kind, self._local(s.start), self._local(s.end), s.reason)
            for kind, s in spans
            if s.start < hi and s.end > lo
        ]
        return sorted(periods, key=lambda p: (p.start, p.kind))

    def allowed_until(self, at: datetime) -> datetime | None:
        """End of the allowed stretch containing `at` (None: no end within the horizon).

        When `at` itself is not allowed the stretch is empty and `at` is returned.
        """
        moment = self._utc(at)
        limit = moment + HORIZON
        freezes = self._freezes(moment, limit)
        reached = moment
        for start, end in self._allowed(moment, limit, freezes):
            if start > reached:
                break
            reached = max(reached, end)
        else:
            if reached >= limit:
                return None
        return self._local(reached)

    def _in_window(self, moment: datetime) -> bool:
        return not self.deployment_windows or any(
            w.start <= moment < w.end for w in self._windows(moment, moment)
        )

    # --- the search ------------------------------------------------------------------------

    def _next_allowed(
        self, moment: datetime, limit: datetime, freezes: list[_Span]
    ) -> datetime | None:
        for start, _ in self._allowed(moment, limit, freezes):
            return start
        return None

    def _allowed(
        self, lo: datetime, hi: datetime, freezes: list[_Span]
    ) -> Iterator[tuple[datetime, datetime]]:
        """Allowed intervals in [lo, hi), in order: windows minus freezes, a chunk at a time."""
        cursor = lo
        while cursor < hi:
            chunk_end = min(cursor + _CHUNK, hi)
            for window in self._windows(cursor, chunk_end):
                start, end = max(window.start, cursor), min(window.end, chunk_end)
                yield from _subtract(start, end, freezes)
            cursor = chunk_end

    # --- freezes -----------------------------------------------------------------------

    def _freezes(self, lo: datetime, hi: datetime) -> list[_Span]:
        """Merged freezes that overlap [lo, hi] (closes of the months around, blackouts)."""
        first, last = self._local(lo).date(), self._local(hi).date()
        spans = [_Span(b.start, b.end, b.reason) for b in self.blackouts]
        # a close reaches at most ~MAX_CLOSE_DAYS business days either side of its month end
        year, month = _add_months(first.year, first.month, -3)
        end_year, end_month = _add_months(last.year, last.month, 1)
        while (year, month) <= (end_year, end_month):
            close = self._close_of(year, month)
            if close is not None:
                spans.append(close)
            year, month = _add_months(year, month, 1)
        merged = _merge(spans)
        return [s for s in merged if s.end > lo and s.start <= hi]

    def _close_of(self, year: int, month: int) -> _Span | None:
        kind, close = self._close_rule(month)
        if close is None:
            return None
        next_year, next_month = _add_months(year, month, 1)
        first_of_next = date(next_year, next_month, 1)
        start = first_of_next
        if close.business_days_before:
            start = self._business_day_back(first_of_next, close.business_days_before)
        end = first_of_next
        if close.business_days_after:
            end = self._business_day_forward(first_of_next, close.business_days_after)
            end += timedelta(days=1)
        if start >= end:
            return None
        label = f"{kind} close {_gregorian.month_name[month]} {year}"
        return _Span(self._midnight(start), self._midnight(end), label)

    def _close_rule(self, month: int) -> tuple[str, Close | None]:
        if month == self.fiscal_year_end_month and self.year_end_close:
            return "fiscal year-end", self.year_end_close
        if month in self.quarter_end_months and self.quarter_end_close:
            return "quarter-end", self.quarter_end_close
        return "month-end", self.month_end_close

    def _is_business_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def _business_day_back(self, before: date, count: int) -> date:
        """The `count`-th last business day strictly before `before`."""
        day = before
        while count:
            day -= timedelta(days=1)
            count -= self._is_business_day(day)
        return day

    def _business_day_forward(self, start: date, count: int) -> date:
        """The `count`-th business day on or after `start`."""
        day = start - timedelta(days=1)
        while count:
            day += timedelta(days=1)
            count -= self._is_business_day(day)
        return day

    # --- windows -----------------------------------------------------------------------

    def _windows(self, lo: datetime, hi: datetime) -> list[_Span]:
        """Merged deployment windows overlapping [lo, hi] (any time when none are listed)."""
        if not self.deployment_windows:
            return [_Span(lo, hi, "any time (no deployment windows)")]
        first = self._local(lo).date() - timedelta(days=1)
        last = self._local(hi).date() + timedelta(days=1)
        spans = []
        day = first
        while day <= last:
            for window in self.deployment_windows:
                if day.weekday() in window.days:
                    start = self._resolve(datetime.combine(day, window.start))
                    end_day = datetime.combine(day + timedelta(days=1), time(0))
                    end = self._resolve(
                        datetime.combine(day, window.end) if window.end else end_day
                    )
                    if start < end:
                        spans.append(_Span(start, end, window.describe()))
            day += timedelta(days=1)
        return [s for s in _merge(spans) if s.end > lo and s.start <= hi]

    # --- time ----------------------------------------------------------------------------

    def _utc(self, at: datetime) -> datetime:
        if at.tzinfo is None or at.utcoffset() is None:
            return self._resolve(at)
        return at.astimezone(UTC)

    def _local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)

    def _midnight(self, day: date) -> datetime:
        return self._resolve(datetime.combine(day, time(0)))

    def _resolve(self, local: datetime) -> datetime:
        """A local wall time in this zone as a UTC instant (DST rules in the module doc)."""
        return resolve_local(local, self.zone)


def resolve_local(local: datetime, zone: ZoneInfo) -> datetime:
    """Local wall time -> UTC: first occurrence when ambiguous, end of the gap when missing."""
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return first
    # In a gap: the two folds map with the offsets before and after the transition, so
    # the transition instant lies between them. Zone transitions fall on whole seconds:
    # bisect on integer timestamps, which ends exactly on the transition.
    other = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo = math.floor(min(first, other).timestamp())
    hi = math.ceil(max(first, other).timestamp())
    after_offset = _offset_at(hi, zone)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_at(mid, zone) == after_offset:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _offset_at(timestamp: int, zone: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(timestamp, UTC).astimezone(zone).utcoffset()


def _subtract(
    start: datetime, end: datetime, freezes: list[_Span]
) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) minus the (sorted, merged) freezes."""
    cursor = start
    for freeze in freezes:
        if freeze.end <= cursor or freeze.start >= end:
            continue
        if freeze.start > cursor:
            yield cursor, freeze.start
        cursor = max(cursor, freeze.end)
        if cursor >= end:
            return
    if cursor < end:
        yield cursor, end


def _merge(spans: list[_Span]) -> list[_Span]:
    """Sort and join spans that overlap or touch, joining their reasons."""
    merged: list[_Span] = []
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        if merged and span.start <= merged[-1].end:
            last = merged[-1]
            known = last.reason.split(" + ")
            reason = last.reason if span.reason in known else f"{last.reason} + {span.reason}"
            merged[-1] = _Span(last.start, max(last.end, span.end), reason)
        else:
            merged.append(span)
    return merged


def _add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + month - 1 + delta
    return index // 12, index % 12 + 1


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


# --- parsing ---------------------------------------------------------------------------

_KEYS = ("holidays", "fiscal_year_end_month", *_CLOSES, "blackouts", "deployment_windows")


@problems_only
def parse_calendar(text: str, name: str = "") -> FreezeCalendar:
    """Parse a calendar YAML; raise `ValidationFailed` listing every problem."""
    document = load_yaml(text)
    problems = Problems()
    root = problems.keys(document, "", required=("timezone",), optional=_KEYS) or {}
    timezone = check_timezone(root.get("timezone"), "timezone", problems) if root else None
    holidays = _holidays(root.get("holidays", []), problems)
    fy_end = problems.integer(root.get("fiscal_year_end_month", 12), "fiscal_year_end_month", 1)
    if fy_end is not None and fy_end > 12:
        problems.add("fiscal_year_end_month", f"must be a month 1..12, not {fy_end}")
    closes = {key: _close(root[key], key, problems) for key in _CLOSES if key in root}
    zone = ZoneInfo(timezone) if timezone else None
    blackouts = _parse_blackouts(root.get("blackouts", []), zone, problems)
    windows = _parse_windows(root.get("deployment_windows", []), problems)
    problems.raise_if_any()
    assert timezone is not None and fy_end is not None
    return FreezeCalendar(
        name=name,
        timezone=timezone,
        holidays=frozenset(holidays),
        fiscal_year_end_month=fy_end,
        blackouts=tuple(blackouts),
        deployment_windows=tuple(windows),
        **closes,
    )


def _holidays(value: Any, problems: Problems) -> list[date]:
    if not isinstance(value, list):
        problems.add("holidays", "must be a list of dates (YYYY-MM-DD)")
        return []
    days = []
    for i, item in enumerate(value):
        day = _date(item)
        if day is None:
            problems.add(join("holidays", i), f"must be a date YYYY-MM-DD, not {quoted(item)}")
        else:
            days.append(day)
    return days


def _date(value: Any) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _close(value: Any, path: str, problems: Problems) -> Close | None:
    keys = ("business_days_before", "business_days_after")
    mapping = problems.keys(value, path, required=keys)
    if mapping is None or any(k not in mapping for k in keys):
        return None
    counts = [problems.integer(mapping[k], join(path, k), minimum=0) for k in keys]
    for key, count in zip(keys, counts, strict=True):
        if count is not None and count > MAX_CLOSE_DAYS:
            problems.add(join(path, key), f"must be at most {MAX_CLOSE_DAYS}, not {count}")
            return None
    if counts[0] is None or counts[1] is None:
        return None
    return Close(counts[0], counts[1])


def _local_time_of_day(value: Any, path: str, problems: Problems, allow_24: bool) -> Any:
    """ "HH:MM" -> time; "24:00" -> None when allowed. Returns False on a problem."""
    if allow_24 and value == _END_OF_DAY:
        return None
    if isinstance(value, str) and len(value) == 5 and value[2] == ":":
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    expected = '"HH:MM" or "24:00"' if allow_24 else '"HH:MM"'
    hint = " (quote it: YAML reads 20:00 unquoted as a number)" if isinstance(value, int) else ""
    problems.add(path, f"must be a time {expected}, not {quoted(value)}{hint}")
    return False


def _parse_blackouts(value: Any, zone: ZoneInfo | None, problems: Problems) -> list[Blackout]:
    if not isinstance(value, list):
        problems.add("blackouts", "must be a list")
        return []
    result = []
    for i, item in enumerate(value):
        path = join("blackouts", i)
        mapping = problems.keys(item, path, required=("start", "end", "reason"))
        if mapping is None or any(k not in mapping for k in ("start", "end", "reason")):
            continue
        start = _local_datetime(mapping["start"], join(path, "start"), problems)
        end = _local_datetime(mapping["end"], join(path, "end"), problems)
        reason = problems.text(mapping["reason"], join(path, "reason"))
        if start is None or end is None or reason is None:
            continue
        if start >= end:
            problems.add(path, f"start {start.isoformat()} must be before end {end.isoformat()}")
        elif zone is not None:
            result.append(Blackout(resolve_local(start, zone), resolve_local(end, zone), reason))
    return result


def _local_datetime(value: Any, path: str, problems: Problems) -> datetime | None:
    """A local date-time without offset (`2026-12-20T00:00`); a bare date means 00:00."""
    moment: datetime | None = None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time(0))
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
    if moment is None:
        problems.add(path, f"must be a local date-time like 2026-12-20T00:00, not {quoted(value)}")
        return None
    if moment.tzinfo is not None:
        problems.add(path, "must be a local time without offset (the calendar's zone applies)")
        return None
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        problems.add(path, f"must be a year from {MIN_YEAR} to {MAX_YEAR}, not {moment.year}")
        return None
    return moment


def _parse_windows(value: Any, problems: Problems) -> list[DeploymentWindow]:
    if not isinstance(value, list):
        problems.add("deployment_windows", "must be a list")
        return []
    result = []
    for i, item in enumerate(value):
        path = join("deployment_windows", i)
        mapping = problems.keys(item, path, required=("days", "start", "end"))
        if mapping is None or any(k not in mapping for k in ("days", "start", "end")):
            continue
        days = _days(mapping["days"], join(path, "days"), problems)
        start = _local_time_of_day(mapping["start"], join(path, "start"), problems, False)
        end = _local_time_of_day(mapping["end"], join(path, "end"), problems, True)
        if days is None or start is False or end is False:
            continue
        if end is not None and start >= end:
            problems.add(path, f"start {mapping['start']} must be before end {mapping['end']}")
            continue
        result.append(DeploymentWindow(days, start, end))
    return result


def _days(value: Any, path: str, problems: Problems) -> tuple[int, ...] | None:
    if not isinstance(value, list) or not value:
        problems.add(path, f"must be a non-empty list of {', '.join(WEEKDAYS)}")
        return None
    days = []
    for i, item in enumerate(value):
        if isinstance(item, str) and item.lower() in WEEKDAYS:
            days.append(WEEKDAYS.index(item.lower()))
        else:
            problems.add(join(path, i), f"must be one of {', '.join(WEEKDAYS)}, not {quoted(item)}")
            return None
    return tuple(sorted(set(days)))
