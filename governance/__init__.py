"""Governance: the pure, deterministic rules of a finance release (no I/O, no clock).

Spec, tenant inventory, approval policy, freeze calendar and evidence chain; used by the
workflows, the CLI and the tests alike.
"""

from governance.calendar import Decision, FreezeCalendar, Period, parse_calendar
from governance.documents import format_duration, load_yaml, parse_duration
from governance.evidence import (
    GENESIS,
    Break,
    EvidenceChain,
    canonical_json,
    find_break,
    sha256_hex,
    verify,
)
from governance.inventory import Inventory, Tenant, parse_inventory
from governance.policy import (
    RISK_CLASSES,
    Approval,
    ApprovalPolicy,
    ApprovalState,
    Rejection,
    RiskRule,
    Verdict,
    parse_policy,
)
from governance.problems import Problem, ValidationFailed
from governance.spec import ReleaseSpec, RolloutPlan, Wave, parse_spec

__all__ = [
    "GENESIS",
    "RISK_CLASSES",
    "Approval",
    "ApprovalPolicy",
    "ApprovalState",
    "Break",
    "Decision",
    "EvidenceChain",
    "FreezeCalendar",
    "Inventory",
    "Period",
    "Problem",
    "Rejection",
    "ReleaseSpec",
    "RiskRule",
    "RolloutPlan",
    "Tenant",
    "ValidationFailed",
    "Verdict",
    "Wave",
    "canonical_json",
    "find_break",
    "format_duration",
    "load_yaml",
    "parse_calendar",
    "parse_duration",
    "parse_inventory",
    "parse_policy",
    "parse_spec",
    "sha256_hex",
    "verify",
]
