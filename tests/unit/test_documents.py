"""Strict YAML loading and durations, shared by every governance document."""

from __future__ import annotations

from datetime import timedelta

import pytest

from governance import (
    ValidationFailed,
    format_duration,
    parse_calendar,
    parse_duration,
    parse_inventory,
    parse_policy,
    parse_spec,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("72h", timedelta(hours=72)),
        ("2d", timedelta(days=2)),
        ("45s", timedelta(seconds=45)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("0m", timedelta(0)),
    ],
)
def test_durations_read_days_hours_minutes_seconds(text, expected):
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "30", "30 m", "1w", "30m1h", "-5m", "m", "1.5h"])
def test_malformed_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("parse", [parse_spec, parse_inventory, parse_policy, parse_calendar])
def test_malformed_yaml_is_reported_with_line_and_column(parse):
    with pytest.raises(ValidationFailed) as failed:
        parse("a: 1\nb: [1, 2\nc: 3\n")
    (problem,) = failed.value.problems
    assert problem.rule.startswith("malformed YAML at line 3, column 2")


@pytest.mark.parametrize("parse", [parse_spec, parse_inventory, parse_policy, parse_calendar])
def test_duplicate_keys_are_refused_not_silently_overwritten(parse):
    with pytest.raises(ValidationFailed) as failed:
        parse("timezone: UTC\ntimezone: Asia/Tokyo\n")
    assert "found duplicate key 'timezone'" in str(failed.value)
    assert "line 2, column 1" in str(failed.value)


@pytest.mark.parametrize("parse", [parse_spec, parse_inventory, parse_policy, parse_calendar])
def test_a_document_that_is_not_a_mapping_is_refused(parse):
    with pytest.raises(ValidationFailed, match="must be a mapping"):
        parse("- just\n- a list\n")
