"""Freeze calendar properties over random calendars and instants (Hypothesis)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance import parse_calendar

pytestmark = pytest.mark.unit

# Zones with ordinary DST, none, a 30-minute DST (Lord Howe) and DST at midnight (Santiago).
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe"]
ZONES += ["America/Santiago"]
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

close = st.fixed_dictionaries(
    {"business_days_before": st.integers(0, 8), "business_days_after": st.integers(0, 8)}
)
quarter_hours = st.integers(0, 95).map(lambda q: f"{q // 4:02d}:{q % 4 * 15:02d}")


@st.composite
def windows(draw: st.DrawFn) -> dict:
    start = draw(st.integers(0, 95))
    end = draw(st.integers(start + 1, 96))
    return {
        "days": draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=3, unique=True)),
        "start": f"{start // 4:02d}:{start % 4 * 15:02d}",
        "end": "24:00" if end == 96 else f"{end // 4:02d}:{end % 4 * 15:02d}",
    }


@st.composite
def blackouts(draw: st.DrawFn) -> dict:
    start = draw(st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31)))
    length = draw(st.integers(1, 24 * 30))
    return {
        "start": start.strftime("%Y-%m-%dT%H:%M"),
        "end": (start + timedelta(hours=length)).strftime("%Y-%m-%dT%H:%M"),
        "reason": "audit",
    }


@st.composite
def calendars(draw: st.DrawFn) -> str:
    document: dict = {"timezone": draw(st.sampled_from(ZONES))}
    holidays = draw(st.lists(st.dates(date(2026, 1, 1), date(2027, 12, 31)), max_size=8))
    document["holidays"] = [d.isoformat() for d in holidays]
    document["fiscal_year_end_month"] = draw(st.integers(1, 12))
    for key in ("month_end_close", "quarter_end_close", "year_end_close"):
        if draw(st.booleans()):
            document[key] = draw(close)
    document["blackouts"] = draw(st.lists(blackouts(), max_size=2))
    document["deployment_windows"] = draw(st.lists(windows(), max_size=3))
    return yaml.safe_dump(document)


instants = st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=calendars(), moment=instants)
def test_next_allowed_is_the_earliest_allowed_boundary_at_or_after_at(text, moment):
    calendar = parse_calendar(text)
    decision = calendar.check(moment)
    if decision.next_allowed is None:
        return
    found = decision.next_allowed
    assert found >= moment
    assert calendar.allows(found)
    assert decision.allowed == (found == moment)
    assert decision.allowed == calendar.allows(moment)
    # Allowed stretches begin only at `at` or at a freeze/window boundary: none before.
    boundaries = {moment}
    for period in calendar.periods(moment, found):
        boundaries |= {period.start, period.end}
    for boundary in sorted(b for b in boundaries if moment <= b < found):
        assert not calendar.allows(boundary), boundary


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=calendars(), moment=instants)
def test_allowed_until_ends_an_allowed_stretch(text, moment):
    calendar = parse_calendar(text)
    until = calendar.allowed_until(moment)
    if not calendar.allows(moment):
        assert until == moment
    elif until is not None:
        assert until > moment
        assert not calendar.allows(until)
        assert calendar.allows(until - timedelta(seconds=1))
