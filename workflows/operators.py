"""Who may steer a running release: members of an operator role of the release's policy.

pause, resume, promote, abort and decide change what happens to tenants, so they are
refused (in the update validators, before anything enters history) unless the acting
identity is a member of `release_manager` or `operator`. The requester never promotes
their own gated wave: promotion is the second pair of eyes on the canary.
"""

from __future__ import annotations

from governance.identity import same_identity
from governance.policy import ApprovalPolicy

OPERATOR_ROLES = ("release_manager", "operator")


def operator_refusal(
    policy: ApprovalPolicy | None, operator: str, action: str, requester: str = ""
) -> str:
    """Why `operator` may not `action` this release ("" when they may)."""
    if policy is None:
        return f"{action} refused: the release's policy did not validate, nobody holds an operator role"
    members = [m for role in OPERATOR_ROLES for m in policy.approvers.get(role, ())]
    if not any(same_identity(operator, m) for m in members):
        return (
            f"{action} refused: {operator[:64]!r} is not a member of "
            f"{' or '.join(OPERATOR_ROLES)} in the release's policy"
        )
    if action == "promote" and requester and same_identity(operator, requester):
        return "promote refused: the requester may not promote their own release's gated wave"
    return ""
