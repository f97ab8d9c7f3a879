"""Approval policy (`policy.yaml`) and the approval state of one release.

Policy rules checked when parsing: every role has members; every risk class named is one of
low | medium | high | emergency and asks for at least one approval, from roles that exist,
with a quorum no larger than the role; `freeze_override` only for `emergency`; every member
a well-formed identity (`governance.identity`), compared case-folded. Operator actions
(pause, resume, promote, abort, decide) need a member of `release_manager` or of the
optional `operator` role (workflows/operators.py).

Approval rules (`ApprovalState`): an attempt is refused, in this order of precedence, when
the release is already decided (`decided`: rejected, or every quorum met), at or after the
deadline (`expired`; the deadline is the release start plus `approval_timeout`, passed in),
for another spec (`wrong_spec`), by the requester (`requester`), as a role the person is
not a member of (`not_member`), as a role this risk class does not ask for
(`role_not_required`), by a person who already approved as another role (`other_role`) or
as this role (`already_approved`), or when the role's quorum is full (`quorum_full`).
A rejection passes the same eligibility checks (decided, expired, wrong_spec, requester,
not_member, role_not_required); one accepted rejection decides the release. Every refused
attempt is kept in `refused` for the evidence. Times must be timezone-aware.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from governance.documents import Problems, join, load_yaml, problems_only, quoted
from governance.identity import canonical_identity, identity_problem, same_identity

RISK_CLASSES = ("low", "medium", "high", "emergency")


@dataclass(frozen=True)
class RiskRule:
    approvals: dict[str, int]  # role -> quorum
    rehearse: str = "all"  # canary | all
    promotion: str | None = None  # auto | manual; None: the spec decides
    freeze_override: bool = False


@dataclass(frozen=True)
class ApprovalPolicy:
    approvers: dict[str, tuple[str, ...]]  # role -> members
    risk: dict[str, RiskRule]
    approval_timeout: timedelta


@dataclass(frozen=True)
class Approval:
    approver: str
    role: str
    spec_sha256: str
    at: datetime
    comment: str = ""


@dataclass(frozen=True)
class Rejection:
    approver: str
    role: str
    spec_sha256: str
    at: datetime
    comment: str = ""


@dataclass(frozen=True)
class Verdict:
    """Outcome of one approval or rejection attempt.

    code: accepted | requester | not_member | other_role | quorum_full | wrong_spec |
    expired | decided | role_not_required | already_approved
    """

    accepted: bool
    code: str
    message: str


ACCEPTED = "accepted"
REHEARSE_SCOPES = ("canary", "all")
PROMOTIONS = ("auto", "manual")


@problems_only
def parse_policy(text: str) -> ApprovalPolicy:
    """Parse `policy.yaml`; raise `ValidationFailed` listing every problem."""
    document = load_yaml(text)
    problems = Problems()
    root = problems.keys(document, "", required=("approvers", "risk", "approval_timeout")) or {}
    approvers = _approvers(root.get("approvers"), problems) if "approvers" in root else {}
    risk: dict[str, RiskRule] = {}
    if "risk" in root:
        rules = problems.keys(root["risk"], "risk", optional=RISK_CLASSES)
        for name, value in (rules or {}).items():
            if name in RISK_CLASSES:
                rule = _risk_rule(value, join("risk", name), name, approvers, problems)
                if rule is not None:
                    risk[name] = rule
        if rules is not None and not rules:
            problems.add("risk", "must define at least one risk class")
    timeout = None
    if "approval_timeout" in root:
        timeout = problems.duration(root["approval_timeout"], "approval_timeout")
        if timeout is not None and timeout <= timedelta(0):
            problems.add("approval_timeout", "must be longer than zero")
    problems.raise_if_any()
    assert timeout is not None
    return ApprovalPolicy(approvers=approvers, risk=risk, approval_timeout=timeout)


def _approvers(value: Any, problems: Problems) -> dict[str, tuple[str, ...]]:
    roles = problems.mapping(value, "approvers")
    result: dict[str, tuple[str, ...]] = {}
    for role, members in (roles or {}).items():
        path = join("approvers", str(role))
        names = problems.texts(members, path)
        if names is not None and not names:
            problems.add(path, "must list at least one member")
        elif names is not None and isinstance(role, str) and _identities_ok(names, path, problems):
            result[role] = tuple(names)
    if roles is not None and not roles:
        problems.add("approvers", "must define at least one role")
    return result


def _identities_ok(names: list[str], path: str, problems: Problems) -> bool:
    """Every member a well-formed identity, none twice in one role once case is folded."""
    before = len(problems.items)
    seen: set[str] = set()
    for i, name in enumerate(names):
        problem = identity_problem(name)
        if problem:
            problems.add(join(path, i), problem)
        elif canonical_identity(name) in seen:
            problems.add(join(path, i), "duplicate of another member once case is folded")
        seen.add(canonical_identity(name))
    return len(problems.items) == before


def _risk_rule(
    value: Any, path: str, name: str, approvers: dict[str, tuple[str, ...]], problems: Problems
) -> RiskRule | None:
    before = len(problems.items)
    rule = problems.keys(value, path, ("approvals",), ("rehearse", "promotion", "freeze_override"))
    if rule is None:
        return None
    quorum: dict[str, int] = {}
    if "approvals" in rule:
        apath = join(path, "approvals")
        wanted = rule["approvals"]
        roles = problems.mapping(wanted, apath)
        for role, count in (roles or {}).items():
            rpath = join(apath, str(role))
            number = problems.integer(count, rpath, minimum=1)
            if role not in approvers:
                problems.add(rpath, f"role {quoted(role)} is not defined under approvers")
            elif number is not None and number > len(approvers[role]):
                problems.add(rpath, f"quorum {number} exceeds the {len(approvers[role])} members")
            if number is not None:
                quorum[str(role)] = number
        if roles is not None and not roles:
            problems.add(apath, "must ask for at least one approval")
    rehearse = problems.choice(rule.get("rehearse", "all"), join(path, "rehearse"), REHEARSE_SCOPES)
    promotion = None
    if "promotion" in rule:
        promotion = problems.choice(rule["promotion"], join(path, "promotion"), PROMOTIONS)
    override = problems.boolean(rule.get("freeze_override", False), join(path, "freeze_override"))
    if override and name != "emergency":
        problems.add(join(path, "freeze_override"), "only the emergency risk class may override")
    if len(problems.items) > before:
        return None
    return RiskRule(
        approvals=quorum,
        rehearse=str(rehearse),
        promotion=promotion,
        freeze_override=bool(override),
    )


class ApprovalState:
    """Approvals of one release: quorum per role, segregation of duties, deadline."""

    def __init__(
        self,
        policy: ApprovalPolicy,
        risk: str,
        requester: str,
        spec_sha256: str,
        deadline: datetime,
    ) -> None:
        if risk not in policy.risk:
            raise ValueError(f"the policy has no rule for risk class {quoted(risk)}")
        self.policy = policy
        self.risk = risk
        self.requester = requester
        self.spec_sha256 = spec_sha256
        self.deadline = deadline
        self.quorum = dict(policy.risk[risk].approvals)
        self._approvals: list[Approval] = []
        self._refused: list[tuple[Approval | Rejection, Verdict]] = []
        self._rejection: Rejection | None = None

    # --- checks (pure) -----------------------------------------------------------------

    def _eligibility(self, attempt: Approval | Rejection) -> Verdict | None:
        """The first rule `attempt` breaks that applies to approvals and rejections alike."""
        who, role = attempt.approver, attempt.role
        if self._rejection is not None:
            return _refuse("decided", f"release already rejected by {self._rejection.approver}")
        if self.quorum_met:
            return _refuse("decided", "release already approved: every quorum is met")
        if attempt.at >= self.deadline:
            return _refuse("expired", f"approval deadline {self.deadline.isoformat()} has passed")
        if attempt.spec_sha256 != self.spec_sha256:
            return _refuse(
                "wrong_spec",
                f"spec sha256 {quoted(attempt.spec_sha256)} is not this release's {self.spec_sha256}",
            )
        if same_identity(who, self.requester):
            return _refuse("requester", f"{who} requested this release and may not decide it")
        if not any(same_identity(who, m) for m in self.policy.approvers.get(role, ())):
            return _refuse("not_member", f"{who} is not a member of role {quoted(role)}")
        if role not in self.quorum:
            return _refuse(
                "role_not_required",
                f"a {self.risk} release needs no approval from role {quoted(role)}"
                f" (needs: {', '.join(sorted(self.quorum))})",
            )
        return None

    def check_approval(self, approval: Approval) -> Verdict:
        """Would `approval` be accepted? Changes nothing (for update validators)."""
        refusal = self._eligibility(approval)
        if refusal is not None:
            return refusal
        for earlier in self._approvals:
            if same_identity(earlier.approver, approval.approver):
                if earlier.role == approval.role:
                    return _refuse(
                        "already_approved",
                        f"{approval.approver} already approved as {earlier.role}",
                    )
                return _refuse(
                    "other_role",
                    f"{approval.approver} already approved as {earlier.role};"
                    " one person fills one role per release",
                )
        if self._count(approval.role) >= self.quorum[approval.role]:
            return _refuse("quorum_full", f"role {quoted(approval.role)} already has its approvals")
        return Verdict(True, ACCEPTED, f"{approval.approver} approved as {approval.role}")

    def check_rejection(self, rejection: Rejection) -> Verdict:
        """Would `rejection` be accepted? Changes nothing."""
        refusal = self._eligibility(rejection)
        if refusal is not None:
            return refusal
        return Verdict(True, ACCEPTED, f"{rejection.approver} rejected as {rejection.role}")

    # --- recording ---------------------------------------------------------------------

    def approve(self, approval: Approval) -> Verdict:
        """Record the approval, or record the refused attempt; return the verdict."""
        verdict = self.check_approval(approval)
        if verdict.accepted:
            self._approvals.append(approval)
        else:
            self._refused.append((approval, verdict))
        return verdict

    def reject(self, rejection: Rejection) -> Verdict:
        """Record the rejection (which decides the release), or the refused attempt."""
        verdict = self.check_rejection(rejection)
        if verdict.accepted:
            self._rejection = rejection
        else:
            self._refused.append((rejection, verdict))
        return verdict

    # --- state ---------------------------------------------------------------------------

    @property
    def approvals(self) -> list[Approval]:
        return list(self._approvals)

    @property
    def refused(self) -> list[tuple[Approval | Rejection, Verdict]]:
        return list(self._refused)

    @property
    def rejection(self) -> Rejection | None:
        return self._rejection

    def missing(self) -> dict[str, int]:
        """Role -> approvals still needed (roles already complete are omitted)."""
        needed = {role: count - self._count(role) for role, count in self.quorum.items()}
        return {role: n for role, n in needed.items() if n > 0}

    @property
    def quorum_met(self) -> bool:
        return not self.missing()

    @property
    def outcome(self) -> str:
        """pending | approved | rejected."""
        if self._rejection is not None:
            return "rejected"
        return "approved" if self.quorum_met else "pending"

    def _count(self, role: str) -> int:
        return sum(1 for a in self._approvals if a.role == role)


def _refuse(code: str, message: str) -> Verdict:
    return Verdict(False, code, message)
