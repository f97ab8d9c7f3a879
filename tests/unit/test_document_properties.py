"""Inventory, policy and calendar parsers return problems, never crash, on any YAML."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance import ValidationFailed, parse_calendar, parse_inventory, parse_policy

pytestmark = pytest.mark.unit

KEYS = ["tenants", "name", "tier", "deployments", "web", "timezone", "calendar", "db_server"]
KEYS += ["approvers", "risk", "low", "emergency", "approvals", "approval_timeout", "platform"]
KEYS += ["holidays", "fiscal_year_end_month", "month_end_close", "business_days_before"]
KEYS += ["business_days_after", "blackouts", "start", "end", "reason", "deployment_windows"]
KEYS += ["days"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["UTC", "Asia/Tokyo", "sat", "20:00", "24:00", "9999-12-31T23:59", "72h"]),
    st.sampled_from(["0001-01-01", "2026-12-25", "shared", "main", "http://x/"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=6),
    ),
    max_leaves=30,
)


@pytest.mark.parametrize("parse", [parse_inventory, parse_policy, parse_calendar])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=values)
def test_document_parsers_only_ever_raise_validation_failed(parse, document):
    try:
        parse(yaml.safe_dump(document, allow_unicode=True))
    except ValidationFailed as failed:
        assert failed.problems
