"""Approval policy parsing and the approval rules of one release."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from governance import Approval, ApprovalState, Rejection, ValidationFailed, parse_policy

pytestmark = pytest.mark.unit

SPEC = "a" * 64
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SOON = START + timedelta(hours=1)


@pytest.fixture
def state(policy) -> ApprovalState:
    """A medium release (platform 1 + finance 1) requested by alice."""
    return ApprovalState(
        policy, "medium", "alice@example.com", SPEC, START + policy.approval_timeout
    )


def approval(who: str, role: str, spec: str = SPEC, at: datetime = SOON) -> Approval:
    return Approval(approver=who, role=role, spec_sha256=spec, at=at, comment="looks right")


def rejection(who: str, role: str, spec: str = SPEC, at: datetime = SOON) -> Rejection:
    return Rejection(approver=who, role=role, spec_sha256=spec, at=at, comment="not now")


def test_example_policy_parses(policy):
    assert policy.approval_timeout == timedelta(hours=72)
    assert policy.risk["high"].promotion == "manual"
    assert policy.risk["emergency"].freeze_override
    assert policy.approvers["platform"] == ("bob@example.com", "dan@example.com")


def test_quorum_of_every_role_approves_the_release(state):
    assert state.missing() == {"platform": 1, "finance": 1}
    assert state.approve(approval("bob@example.com", "platform")).accepted
    assert state.missing() == {"finance": 1} and not state.quorum_met
    assert state.approve(approval("carol@example.com", "finance")).accepted
    assert state.quorum_met and state.missing() == {} and state.outcome == "approved"


def test_requester_cannot_approve_own_release(policy):
    state = ApprovalState(policy, "medium", "bob@example.com", SPEC, START + timedelta(hours=72))
    verdict = state.approve(approval("bob@example.com", "platform"))
    assert (verdict.accepted, verdict.code) == (False, "requester")
    assert state.refused == [(approval("bob@example.com", "platform"), verdict)]
    assert state.approvals == []


def test_approver_must_be_member_of_the_role(state):
    verdict = state.approve(approval("bob@example.com", "finance"))
    assert verdict.code == "not_member"
    assert "bob@example.com is not a member of role 'finance'" == verdict.message


def test_role_not_asked_for_by_the_risk_class_is_refused(state):
    assert state.approve(approval("erin@example.com", "release_manager")).code == (
        "role_not_required"
    )


def test_one_person_fills_one_role_per_release(policy):
    both = parse_policy(
        "approvers: {platform: [bob], finance: [bob, carol]}\n"
        "risk: {medium: {approvals: {platform: 1, finance: 1}}}\n"
        "approval_timeout: 1h\n"
    )
    state = ApprovalState(both, "medium", "alice", SPEC, START + timedelta(hours=2))
    assert state.approve(approval("bob", "platform")).accepted
    assert state.approve(approval("bob", "finance")).code == "other_role"
    assert state.approve(approval("carol", "finance")).accepted


def test_same_person_cannot_approve_twice_in_one_role():
    policy = parse_policy(
        "approvers: {platform: [bob, dan]}\n"
        "risk: {low: {approvals: {platform: 2}}}\napproval_timeout: 1h\n"
    )
    state = ApprovalState(policy, "low", "alice", SPEC, START + timedelta(hours=2))
    assert state.approve(approval("bob", "platform")).accepted
    assert state.approve(approval("bob", "platform")).code == "already_approved"
    assert state.missing() == {"platform": 1}


def test_full_role_quorum_refuses_more_approvals(state):
    assert state.approve(approval("bob@example.com", "platform")).accepted
    assert state.approve(approval("dan@example.com", "platform")).code == "quorum_full"


def test_approval_for_another_spec_hash_is_refused(state):
    verdict = state.approve(approval("bob@example.com", "platform", spec="b" * 64))
    assert verdict.code == "wrong_spec"
    assert state.missing() == {"platform": 1, "finance": 1}


def test_nothing_is_accepted_after_the_deadline(state):
    late = START + timedelta(hours=72)
    assert state.approve(approval("bob@example.com", "platform", at=late)).code == "expired"
    assert state.reject(rejection("bob@example.com", "platform", at=late)).code == "expired"
    early = late - timedelta(seconds=1)
    assert state.approve(approval("bob@example.com", "platform", at=early)).accepted


def test_approvals_after_quorum_are_refused_as_decided(policy):
    state = ApprovalState(policy, "low", "alice@example.com", SPEC, START + timedelta(hours=72))
    assert state.approve(approval("bob@example.com", "platform")).accepted
    assert state.approve(approval("dan@example.com", "platform")).code == "decided"
    assert state.reject(rejection("dan@example.com", "platform")).code == "decided"


def test_one_eligible_rejection_decides_the_release(state):
    assert state.reject(rejection("carol@example.com", "finance")).accepted
    assert state.rejection == rejection("carol@example.com", "finance")
    assert state.outcome == "rejected"
    assert state.approve(approval("bob@example.com", "platform")).code == "decided"


@pytest.mark.parametrize(
    ("who", "role", "spec", "code"),
    [
        ("alice@example.com", "platform", SPEC, "requester"),
        ("mallory@example.com", "finance", SPEC, "not_member"),
        ("bob@example.com", "platform", "c" * 64, "wrong_spec"),
        ("cfo@example.com", "break_glass", SPEC, "role_not_required"),
    ],
)
def test_rejection_by_an_ineligible_person_is_refused_and_kept(state, who, role, spec, code):
    verdict = state.reject(rejection(who, role, spec))
    assert (verdict.accepted, verdict.code) == (False, code)
    assert state.rejection is None and state.outcome == "pending"
    assert state.refused[-1][1] == verdict


def test_checks_change_nothing(state):
    assert state.check_approval(approval("bob@example.com", "platform")).accepted
    assert state.check_rejection(rejection("bob@example.com", "platform")).accepted
    assert state.approvals == [] and state.rejection is None and state.refused == []


def test_unknown_risk_class_is_refused_when_building_state(policy):
    with pytest.raises(ValueError, match="no rule for risk class"):
        ApprovalState(policy, "yolo", "alice", SPEC, START)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (
            "approvers: {platform: []}\nrisk: {low: {approvals: {platform: 1}}}\n"
            "approval_timeout: 1h\n",
            "approvers.platform",
        ),
        (
            "approvers: {platform: [bob]}\nrisk: {low: {approvals: {finance: 1}}}\n"
            "approval_timeout: 1h\n",
            "risk.low.approvals.finance",
        ),
        (
            "approvers: {platform: [bob]}\nrisk: {low: {approvals: {platform: 2}}}\n"
            "approval_timeout: 1h\n",
            "risk.low.approvals.platform",
        ),
        (
            "approvers: {platform: [bob]}\nrisk: {low: {approvals: {}}}\napproval_timeout: 1h\n",
            "risk.low.approvals",
        ),
        (
            "approvers: {platform: [bob]}\nrisk: {critical: {approvals: {platform: 1}}}\n"
            "approval_timeout: 1h\n",
            "risk.critical",
        ),
        (
            "approvers: {platform: [bob]}\nrisk: {low: {approvals: {platform: 1}, "
            "freeze_override: true}}\napproval_timeout: 1h\n",
            "risk.low.freeze_override",
        ),
        (
            "approvers: {platform: [bob]}\nrisk: {low: {approvals: {platform: 1}, "
            "rehearse: some}}\napproval_timeout: 1h\n",
            "risk.low.rehearse",
        ),
        (
            "approvers: {platform: [bob]}\nrisk: {low: {approvals: {platform: 1}}}\n"
            "approval_timeout: three days\n",
            "approval_timeout",
        ),
        (
            "approvers: {platform: [bob]}\nrisk: {low: {approvals: {platform: 1}}}\n",
            "approval_timeout",
        ),
        (
            "approvers: {platform: [bob, bob]}\nrisk: {low: {approvals: {platform: 1}}}\n"
            "approval_timeout: 1h\n",
            "approvers.platform[1]",
        ),
    ],
)
def test_invalid_policy_names_the_broken_field(text, path):
    with pytest.raises(ValidationFailed) as failed:
        parse_policy(text)
    assert path in [p.path for p in failed.value.problems]
