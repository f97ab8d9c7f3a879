"""The spec parser never raises anything but `ValidationFailed`, whatever it is given."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance import ReleaseSpec, ValidationFailed, parse_spec

pytestmark = pytest.mark.unit

KEYS = ["release_id", "work_item", "requested_by", "risk", "image", "modules", "migrations"]
KEYS += ["tenants", "rollout", "smoke", "waves", "name", "size", "tier", "max_parallel"]
KEYS += ["max_failure_ratio", "bake", "promotion", "on_failure"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["all", "100%", "25%", "0%", "30m", "auto", "medium", "berlin"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=5
        ),
    ),
    max_leaves=25,
)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=12)


def assert_only_validation_failed(text: str, *context: object) -> None:
    try:
        assert isinstance(parse_spec(text, *context), ReleaseSpec)  # type: ignore[arg-type]
    except ValidationFailed as failed:
        assert failed.problems


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.one_of(documents, values))
def test_spec_parser_returns_problems_for_any_yaml_document(document, inventory, policy, calendars):
    text = yaml.safe_dump(document, allow_unicode=True)
    assert_only_validation_failed(text)
    assert_only_validation_failed(text, inventory, policy, calendars)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=200))
def test_spec_parser_returns_problems_for_any_text(text):
    assert_only_validation_failed(text)
