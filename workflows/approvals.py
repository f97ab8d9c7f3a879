"""Approval attempts of one release, through `governance.ApprovalState`, into status and evidence.

The `approve`/`reject` updates land here (there are no signals of those names: a signal
would skip the update validators). Refused attempts are never silently dropped, but a flood
must not push history, status or evidence past Temporal's payload limits: the first
`REFUSALS_IN_FULL` are kept in full (status and evidence), every one is counted per reason,
and once `MAX_RECORDED_REFUSALS` are on record the update validator refuses further
would-be refusals before they enter history (`flood_refusal`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from governance.policy import Approval, ApprovalPolicy, ApprovalState, Rejection, RiskRule, Verdict
from workflows.messages import ApprovalRequest, ApprovalVerdict, GivenApproval, RefusedAttempt

RETROSPECTIVE_ROLE = "release_manager"
RETROSPECTIVE_WINDOW = timedelta(hours=24)
REFUSALS_IN_FULL = 5
MAX_RECORDED_REFUSALS = 100

Recorder = Callable[[str, dict[str, Any], str], None]


class ApprovalDesk:
    """Takes approval and rejection attempts for one ApprovalState and records each one."""

    def __init__(self, state: ApprovalState, record: Recorder, kind: str = "approval") -> None:
        self.state = state
        self._record = record
        self._kind = kind  # approval | retrospective_approval
        self.refused_counts: Counter[str] = Counter()  # reason code -> refused attempts

    @classmethod
    def retrospective(
        cls,
        policy: ApprovalPolicy,
        requester: str,
        spec_sha256: str,
        deadline: datetime,
        record: Recorder,
    ) -> ApprovalDesk:
        """The release_manager's approval an emergency freeze override needs afterwards."""
        rule = RiskRule(approvals={RETROSPECTIVE_ROLE: 1})
        retro_policy = ApprovalPolicy(policy.approvers, {"emergency": rule}, RETROSPECTIVE_WINDOW)
        state = ApprovalState(retro_policy, "emergency", requester, spec_sha256, deadline)
        return cls(state, record, "retrospective_approval")

    def approve(self, request: ApprovalRequest, at: datetime) -> ApprovalVerdict:
        attempt = Approval(request.approver, request.role, request.spec_sha256, at, request.comment)
        return self._note(attempt, self.state.approve(attempt), self._kind)

    def reject(self, request: ApprovalRequest, at: datetime) -> ApprovalVerdict:
        attempt = Rejection(
            request.approver, request.role, request.spec_sha256, at, request.comment
        )
        return self._note(attempt, self.state.reject(attempt), "rejection")

    def flood_refusal(self, request: ApprovalRequest, at: datetime, approve: bool) -> str:
        """For the update validator: why an attempt that would only be refused again is not
        even recorded, once `MAX_RECORDED_REFUSALS` are on record ("" otherwise)."""
        if sum(self.refused_counts.values()) < MAX_RECORDED_REFUSALS:
            return ""
        args = (request.approver, request.role, request.spec_sha256, at, request.comment)
        verdict = (
            self.state.check_approval(Approval(*args))
            if approve
            else self.state.check_rejection(Rejection(*args))
        )
        if verdict.accepted:
            return ""
        return (
            f"refused ({verdict.code}): {verdict.message}; not recorded, "
            f"{MAX_RECORDED_REFUSALS} refused attempts are on record already"
        )

    def given(self) -> list[GivenApproval]:
        return [GivenApproval(a.approver, a.role, a.at.isoformat()) for a in self.state.approvals]

    def refused(self) -> list[RefusedAttempt]:
        return [
            RefusedAttempt(
                attempt.approver,
                attempt.role,
                "rejection" if isinstance(attempt, Rejection) else "approval",
                verdict.code,
                verdict.message,
                attempt.at.isoformat(),
            )
            for attempt, verdict in self.state.refused[:REFUSALS_IN_FULL]
        ]

    def _note(self, attempt: Approval | Rejection, verdict: Verdict, kind: str) -> ApprovalVerdict:
        if not verdict.accepted:
            self.refused_counts[verdict.code] += 1
            refusals = sum(self.refused_counts.values())
            if refusals > REFUSALS_IN_FULL:
                if refusals == REFUSALS_IN_FULL + 1:
                    self._record(
                        f"{self._kind}_refusals_counted",
                        {"note": f"after {REFUSALS_IN_FULL} in full, refusals are counted"},
                        "finrelease",
                    )
                return ApprovalVerdict(False, verdict.code, verdict.message)
        data = {
            "role": attempt.role,
            "spec_sha256": attempt.spec_sha256,
            "comment": attempt.comment,
            "code": verdict.code,
            "message": verdict.message,
        }
        self._record(kind if verdict.accepted else f"{kind}_refused", data, attempt.approver)
        return ApprovalVerdict(verdict.accepted, verdict.code, verdict.message)
