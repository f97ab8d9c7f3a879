"""Identities: refused at policy load when they could pass for someone else, compared folded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from governance import Approval, ApprovalState, ValidationFailed, parse_policy, parse_spec
from governance.identity import identity_problem, same_identity
from tests.unit.test_spec import spec_text

pytestmark = pytest.mark.unit

CYRILLIC_A = "\u0430"
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "identity,rule",
    [
        (f"{CYRILLIC_A}lice@example.com", "mixes scripts (CYRILLIC, LATIN)"),
        ("bob@example.com\n\x1b[32mapproved by cfo", "control, invisible or space"),
        ("bob\u200b@example.com", "U+200B"),  # zero-width space
        ("bob@example.com\u202e", "U+202E"),  # right-to-left override
        ("bob smith@example.com", "U+0020"),
        ("\uff42ob@example.com", "NFKC"),  # fullwidth b
        ("x" * 255, "at most 254 characters"),
        ("", "non-empty"),
    ],
)
def test_identities_that_could_pass_for_someone_else_are_refused(identity: str, rule: str):
    assert rule in identity_problem(identity)


@pytest.mark.parametrize(
    "identity", ["carol@example.com", "Jürgen.Groß@example.de", "田中さん@example.jp", "x" * 254]
)
def test_ordinary_identities_pass(identity: str):
    assert identity_problem(identity) == ""


def test_identities_compare_case_folded():
    assert same_identity("Carol@Example.com", "carol@example.com")
    assert not same_identity(f"{CYRILLIC_A}lice@example.com", "alice@example.com")


POLICY = """
approvers:
  platform: [bob@example.com, {member}]
risk:
  low: {{approvals: {{platform: 1}}}}
approval_timeout: 72h
"""


@pytest.mark.parametrize(
    "member,rule",
    [
        (f"d{CYRILLIC_A}n@example.com", "mixes scripts"),
        ('"dan@example.com\\e[31m"', "control"),
        ("Bob@example.com", "duplicate of another member once case is folded"),
    ],
)
def test_policy_refuses_a_member_that_is_no_clean_identity(member: str, rule: str):
    with pytest.raises(ValidationFailed) as failed:
        parse_policy(POLICY.format(member=member))
    problems = {p.path: p.rule for p in failed.value.problems}
    assert rule in problems["approvers.platform[1]"], problems


def test_spec_refuses_a_look_alike_requester(inventory, policy, calendars):
    text = spec_text(requested_by="b\u043eb@example.com")  # Cyrillic o
    with pytest.raises(ValidationFailed) as failed:
        parse_spec(text, inventory, policy, calendars)
    assert "mixes scripts" in {p.path: p.rule for p in failed.value.problems}["requested_by"]


def test_the_requester_in_other_case_is_still_the_requester_and_members_match_folded():
    policy = parse_policy(POLICY.format(member="dan@example.com"))
    state = ApprovalState(policy, "low", "Bob@Example.com", "a" * 64, START + timedelta(days=1))
    own = state.approve(Approval("bob@example.com", "platform", "a" * 64, START))
    assert own.code == "requester"
    assert state.approve(Approval("DAN@example.com", "platform", "a" * 64, START)).accepted
