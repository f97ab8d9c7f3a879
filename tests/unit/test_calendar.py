"""Freeze calendar: hand-worked cases of the ARCHITECTURE semantics."""

from __future__ import annotations

from datetime import datetime

import pytest

from governance import ValidationFailed, parse_calendar

pytestmark = pytest.mark.unit


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def test_architecture_example_waits_for_saturday_window_after_month_end_close(calendars):
    decision = calendars["berlin"].check(at("2026-11-27T10:00:00+01:00"))
    assert decision.as_json() == {
        "allowed": False,
        "frozen": True,
        "in_window": False,
        "reasons": [
            "frozen: month-end close November 2026"
            " (2026-11-27T00:00:00+01:00 to 2026-12-04T00:00:00+01:00)",
            "outside the deployment windows (sat 20:00-24:00, sun 00:00-06:00)",
        ],
        "next_allowed": "2026-12-05T20:00:00+01:00",
        "freeze_ends": "2026-12-04T00:00:00+01:00",
    }


def test_month_end_close_starts_at_midnight_of_second_last_business_day(calendars):
    berlin = calendars["berlin"]
    # November 2026 ends on Monday 30th: the 2nd last business day is Friday 27th.
    assert not berlin.check(at("2026-11-26T23:59:59+01:00")).frozen
    assert berlin.check(at("2026-11-27T00:00:00+01:00")).frozen


def test_month_end_close_ends_after_third_business_day_of_next_month(calendars):
    berlin = calendars["berlin"]
    # December 2026: Tue 1, Wed 2, Thu 3 -> the freeze ends at 00:00 on Friday 4th.
    assert berlin.check(at("2026-12-03T23:59:59+01:00")).frozen
    assert not berlin.check(at("2026-12-04T00:00:00+01:00")).frozen


def test_quarter_end_close_replaces_month_end_close(calendars):
    # September 2026 ends on Wednesday 30th; 5 business days back is Thursday 24th,
    # the 5th business day of October is Wednesday 7th.
    decision = calendars["berlin"].check(at("2026-09-24T00:00:00+02:00"))
    assert decision.frozen
    assert iso(decision.freeze_ends) == "2026-10-08T00:00:00+02:00"
    assert "quarter-end close September 2026" in decision.reasons[0]
    assert not calendars["berlin"].check(at("2026-09-23T23:59:59+02:00")).frozen


def test_quarter_ends_follow_the_fiscal_year_end_month(calendars):
    # Tokyo's fiscal year ends in March, so December is a quarter end (5 + 5 days)
    # and March the fiscal year end.
    tokyo = calendars["tokyo"]
    december = tokyo.check(at("2026-12-24T00:00:00+09:00"))
    assert "quarter-end close December 2026" in december.reasons[0]
    march = tokyo.check(at("2027-03-31T12:00:00+09:00"))
    assert "fiscal year-end close March 2027" in march.reasons[0]


YEAR_END_ONLY = """
timezone: Europe/Berlin
holidays: {holidays}
year_end_close: {{business_days_before: 5, business_days_after: 10}}
"""


def test_fiscal_year_end_close_counts_business_days_around_december():
    calendar = parse_calendar(YEAR_END_ONLY.format(holidays="[]"))
    decision = calendar.check(at("2026-12-28T12:00:00+01:00"))
    # Without holidays: Thu 31, Wed 30, Tue 29, Mon 28, Fri 25 -> from Friday 25th;
    # January 2027: Fri 1, Mon 4 .. Fri 8, Mon 11 .. Thu 14 -> until Friday 15th.
    assert iso(decision.freeze_ends) == "2027-01-15T00:00:00+01:00"
    assert not calendar.check(at("2026-12-24T23:59:59+01:00")).frozen
    assert calendar.check(at("2026-12-25T00:00:00+01:00")).frozen


def test_holidays_push_the_close_to_earlier_and_later_business_days():
    calendar = parse_calendar(YEAR_END_ONLY.format(holidays="[2026-12-25, 2027-01-01]"))
    # Christmas is skipped going back (from Thursday 24th), New Year going forward
    # (the 10th business day becomes Friday 15th, so the freeze ends on the 16th).
    assert calendar.check(at("2026-12-24T00:00:00+01:00")).frozen
    assert not calendar.check(at("2026-12-23T23:59:59+01:00")).frozen
    decision = calendar.check(at("2027-01-15T12:00:00+01:00"))
    assert iso(decision.freeze_ends) == "2027-01-16T00:00:00+01:00"


def test_missing_quarter_end_close_leaves_month_end_close_in_force():
    calendar = parse_calendar(
        "timezone: UTC\nmonth_end_close: {business_days_before: 1, business_days_after: 1}\n"
    )
    # September 2026 ends on Wednesday 30th; October's first business day is Thursday 1st.
    decision = calendar.check(at("2026-09-30T08:00:00+00:00"))
    assert iso(decision.freeze_ends) == "2026-10-02T00:00:00+00:00"
    assert not calendar.check(at("2026-09-29T23:59:59+00:00")).frozen


def test_zero_business_days_freezes_from_first_of_month_to_first_of_month():
    calendar = parse_calendar(
        "timezone: UTC\nmonth_end_close: {business_days_before: 0, business_days_after: 0}\n"
    )
    assert calendar.check(at("2026-12-01T00:00:00+00:00")).allowed


def test_blackouts_touching_a_close_form_one_freeze(calendars):
    decision = calendars["berlin"].check(at("2026-12-22T12:00:00+01:00"))
    assert decision.frozen
    # The audit blackout (20 Dec - 4 Jan) overlaps the year-end close (24 Dec - 16 Jan).
    assert iso(decision.freeze_ends) == "2027-01-16T00:00:00+01:00"
    assert "year-end audit" in decision.reasons[0]
    assert "fiscal year-end close December 2026" in decision.reasons[0]


def test_blackout_end_is_exclusive():
    calendar = parse_calendar(
        "timezone: UTC\nblackouts:\n"
        "  - {start: 2026-05-01T00:00, end: 2026-05-02T12:00, reason: migration of the ERP}\n"
    )
    assert calendar.check(at("2026-05-02T11:59:59+00:00")).frozen
    assert calendar.check(at("2026-05-02T12:00:00+00:00")).allowed
    assert calendar.check(at("2026-04-30T23:59:59+00:00")).allowed


def test_deployment_window_end_is_exclusive_and_24_00_joins_the_next_day(calendars):
    berlin = calendars["berlin"]
    assert not berlin.check(at("2026-11-14T19:59:59+01:00")).in_window
    assert berlin.check(at("2026-11-14T20:00:00+01:00")).allowed
    assert berlin.check(at("2026-11-15T05:59:59+01:00")).allowed
    assert not berlin.check(at("2026-11-15T06:00:00+01:00")).in_window
    # Saturday 20:00-24:00 and Sunday 00:00-06:00 are one stretch.
    assert iso(berlin.allowed_until(at("2026-11-14T21:00:00+01:00"))) == (
        "2026-11-15T06:00:00+01:00"
    )


def test_no_deployment_windows_means_any_time_is_in_a_window(calendars):
    decision = calendars["demo"].check(at("2026-11-30T03:17:00+00:00"))
    assert decision.allowed and decision.in_window and not decision.frozen
    assert decision.next_allowed == at("2026-11-30T03:17:00+00:00")
    assert calendars["demo"].allowed_until(at("2026-11-30T03:17:00+00:00")) is None


def test_allowed_until_stops_at_a_freeze_inside_the_window():
    calendar = parse_calendar(
        "timezone: UTC\n"
        "blackouts: [{start: 2026-05-02T22:00, end: 2026-05-03T01:00, reason: bank run}]\n"
        "deployment_windows: [{days: [sat], start: '20:00', end: '24:00'}]\n"
    )
    # Saturday 2 May 2026.
    assert iso(calendar.allowed_until(at("2026-05-02T20:30:00+00:00"))) == (
        "2026-05-02T22:00:00+00:00"
    )
    assert calendar.allowed_until(at("2026-05-02T23:00:00+00:00")) == at(
        "2026-05-02T23:00:00+00:00"
    )


SPRING = """
timezone: Europe/Berlin
deployment_windows: [{days: [sun], start: "02:30", end: "04:00"}]
"""


def test_window_starting_in_the_spring_forward_gap_opens_after_the_gap():
    calendar = parse_calendar(SPRING)
    # 28 March 2027: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist.
    decision = calendar.check(at("2027-03-27T12:00:00+01:00"))
    assert iso(decision.next_allowed) == "2027-03-28T03:00:00+02:00"
    assert iso(calendar.allowed_until(decision.next_allowed)) == "2027-03-28T04:00:00+02:00"


FALL = """
timezone: Europe/Berlin
deployment_windows: [{days: [sun], start: "02:30", end: "03:30"}]
"""


def test_window_starting_at_an_ambiguous_time_takes_the_first_occurrence():
    calendar = parse_calendar(FALL)
    # 25 October 2026: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    decision = calendar.check(at("2026-10-24T12:00:00+02:00"))
    assert iso(decision.next_allowed) == "2026-10-25T02:30:00+02:00"
    # The window lasts two real hours: the second 02:45 is still inside it.
    assert calendar.check(at("2026-10-25T02:45:00+01:00")).allowed
    assert iso(calendar.allowed_until(decision.next_allowed)) == "2026-10-25T03:30:00+01:00"


TOKYO_FIRST_DAY = """
timezone: Asia/Tokyo
month_end_close: {business_days_before: 0, business_days_after: 1}
"""


def test_tenant_zone_already_in_next_month_is_frozen_while_utc_is_not():
    calendar = parse_calendar(TOKYO_FIRST_DAY)
    # 30 November 15:00 UTC is 1 December 00:00 in Tokyo: the close has begun there.
    decision = calendar.check(at("2026-11-30T15:00:00+00:00"))
    assert decision.frozen
    assert iso(decision.freeze_ends) == "2026-12-02T00:00:00+09:00"
    assert calendar.check(at("2026-11-30T14:59:59+00:00")).allowed


def test_times_are_returned_in_the_calendar_zone_with_offset(calendars):
    decision = calendars["newyork"].check(at("2026-11-27T10:00:00+00:00"))
    assert decision.next_allowed is not None
    assert decision.next_allowed.utcoffset().total_seconds() == -5 * 3600


def test_naive_instant_is_read_in_the_calendar_zone(calendars):
    naive = calendars["berlin"].check(datetime(2026, 11, 27, 10, 0))
    aware = calendars["berlin"].check(at("2026-11-27T10:00:00+01:00"))
    assert naive == aware


def test_no_allowed_instant_within_400_days_is_reported_not_searched_forever():
    calendar = parse_calendar(
        "timezone: UTC\nblackouts:\n"
        "  - {start: 2026-01-01T00:00, end: 2028-01-01T00:00, reason: system replacement}\n"
    )
    decision = calendar.check(at("2026-06-01T00:00:00+00:00"))
    assert decision.next_allowed is None
    assert "no allowed instant within 400 days" in decision.reasons


def test_periods_list_freezes_and_windows_in_order(calendars):
    periods = calendars["berlin"].periods(
        at("2026-11-27T00:00:00+01:00"), at("2026-12-07T00:00:00+01:00")
    )
    assert [(p.kind, iso(p.start)) for p in periods] == [
        ("freeze", "2026-11-27T00:00:00+01:00"),
        ("window", "2026-11-28T20:00:00+01:00"),
        ("window", "2026-12-05T20:00:00+01:00"),
    ]
    assert periods[0].reason == "month-end close November 2026"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("timezone: Mars/Olympus\n", "timezone"),
        ("timezone: UTC\ncolour: red\n", "colour"),
        ("timezone: UTC\nholidays: [2026-13-01]\n", "holidays[0]"),
        ("timezone: UTC\nfiscal_year_end_month: 13\n", "fiscal_year_end_month"),
        (
            "timezone: UTC\nmonth_end_close: {business_days_before: 21, business_days_after: 1}\n",
            "month_end_close.business_days_before",
        ),
        (
            "timezone: UTC\nmonth_end_close: {business_days_before: 2, after: 1}\n",
            "month_end_close.after",
        ),
        (
            "timezone: UTC\nblackouts: [{start: 2026-05-02T00:00, end: 2026-05-01T00:00, "
            "reason: x}]\n",
            "blackouts[0]",
        ),
        (
            "timezone: UTC\nblackouts: [{start: '2026-05-01T00:00+02:00', end: 2026-05-03T00:00, "
            "reason: x}]\n",
            "blackouts[0].start",
        ),
        (
            "timezone: UTC\ndeployment_windows: [{days: [sat], start: '22:00', end: '20:00'}]\n",
            "deployment_windows[0]",
        ),
        (
            "timezone: UTC\ndeployment_windows: [{days: [sat], start: 20:00, end: '24:00'}]\n",
            "deployment_windows[0].start",
        ),
        (
            "timezone: UTC\n"
            "deployment_windows: [{days: [caturday], start: '20:00', end: '24:00'}]\n",
            "deployment_windows[0].days[0]",
        ),
    ],
)
def test_invalid_calendar_names_the_broken_field(text, path):
    with pytest.raises(ValidationFailed) as failed:
        parse_calendar(text)
    assert path in [p.path for p in failed.value.problems]


def test_calendar_problems_are_all_reported_at_once():
    with pytest.raises(ValidationFailed) as failed:
        parse_calendar("timezone: Nowhere/City\nholidays: [tomorrow]\nfiscal_year_end_month: 0\n")
    assert {p.path for p in failed.value.problems} == {
        "timezone",
        "holidays[0]",
        "fiscal_year_end_month",
    }
