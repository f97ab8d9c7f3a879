"""Who may steer a release: operator roles of the policy, never the requester's own promotion."""

from __future__ import annotations

from datetime import timedelta

from governance.policy import ApprovalPolicy, RiskRule
from workflows.operators import operator_refusal

POLICY = ApprovalPolicy(
    {"platform": ("bob@example.com",), "release_manager": ("erin@example.com",),
     "operator": ("ops@example.com",)},
    {"low": RiskRule({"platform": 1})},
    timedelta(hours=72),
)  # fmt: skip


def test_release_managers_and_operators_may_act_others_may_not():
    assert operator_refusal(POLICY, "erin@example.com", "pause") == ""
    assert operator_refusal(POLICY, " OPS@example.com", "abort") == ""
    refusal = operator_refusal(POLICY, "bob@example.com", "abort")
    assert refusal.startswith("abort refused: 'bob@example.com' is not a member")


def test_the_requester_may_not_promote_even_as_release_manager():
    assert "requester" in operator_refusal(
        POLICY, "Erin@example.com", "promote", "erin@example.com"
    )
    assert operator_refusal(POLICY, "erin@example.com", "pause", "erin@example.com") == ""
    assert operator_refusal(POLICY, "erin@example.com", "promote", "alice@example.com") == ""


def test_no_valid_policy_means_nobody_operates():
    assert "did not validate" in operator_refusal(None, "erin@example.com", "pause")


def test_a_long_identity_is_quoted_by_a_short_prefix_only():
    assert len(operator_refusal(POLICY, "x" * 10_000, "pause")) < 200
