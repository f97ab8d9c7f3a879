"""Approval attempts of one release, through `governance.ApprovalState`, into status and evidence.

The `approve`/`reject` updates land here once their validator verified the signed statement
and found the attempt eligible (there are no signals of those names: a signal would skip the
validators), so a refused attempt never enters history and no flood of them can grow it.
An attempt can still be refused here when two raced within one workflow task (the second
finds the quorum full): such refusals are counted per reason, the first `REFUSALS_IN_FULL`
kept in full, so status and evidence stay bounded whatever happens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from governance.policy import Approval, ApprovalPolicy, ApprovalState, Rejection, RiskRule, Verdict
from workflows.messages import ApprovalVerdict, GivenApproval, RefusedAttempt

RETROSPECTIVE_ROLE = "release_manager"
RETROSPECTIVE_WINDOW = timedelta(hours=24)
REFUSALS_IN_FULL = 5

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

    def take(self, attempt: Approval | Rejection, signed: dict[str, str]) -> ApprovalVerdict:
        """Count a verified attempt; `signed` (statement and signature) goes into the evidence."""
        if isinstance(attempt, Rejection):
            return self._note(attempt, self.state.reject(attempt), "rejection", signed)
        return self._note(attempt, self.state.approve(attempt), self._kind, signed)

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

    def _note(
        self, attempt: Approval | Rejection, verdict: Verdict, kind: str, signed: dict[str, str]
    ) -> ApprovalVerdict:
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
            **signed,
        }
        self._record(kind if verdict.accepted else f"{kind}_refused", data, attempt.approver)
        return ApprovalVerdict(verdict.accepted, verdict.code, verdict.message)
