"""Checks of a release's input that need no I/O: pinned content, and documents that belong together.

`FinanceRelease` runs them while Validating, before any side effect; a problem ends the
release `Invalid` with every problem named.
"""

from __future__ import annotations

from datetime import datetime

from governance.evidence import sha256_hex
from governance.identity import identity_problem
from governance.policy import ApprovalPolicy
from governance.spec import ReleaseSpec
from workflows.contracts import MigrationScript
from workflows.messages import ReleaseRequest
from workflows.worker_config import DEMO_CLOCK_VARIABLE

KiB, MiB = 1 << 10, 1 << 20
# a comment or reason is read by people and kept in history, status and evidence
MAX_COMMENT_BYTES = 2 * KiB
# The start request is one payload (Temporal refuses 2 MB); scripts this big belong in a
# module update or a data job, not in one SQL transaction.
MIGRATIONS_MAX_BYTES = 1 * MiB
# Every tenant's rollout carries the scripts in its input, which the release's history records
# once per tenant; Temporal ends a workflow whose history passes 50 MB.
MIGRATIONS_IN_HISTORY_MAX_BYTES = 8 * MiB


def check_identity(name: str, value: str) -> None:
    problem = identity_problem(value)
    if problem:
        raise ValueError(f"{name}: {problem}")


def check_text(name: str, value: str, limit: int = MAX_COMMENT_BYTES) -> None:
    """A free-text field (comment, reason) fits in `limit` bytes of UTF-8."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise ValueError(f"{name}: at most {limit:,} bytes, not {size:,}")


def simulated_start_problems(value: str, demo_clock: bool) -> list[str]:
    """A simulated clock only on a worker started for drills and tests, and a real instant."""
    if not value:
        return []
    if not demo_clock:
        return [
            "simulated_start: refused: the workflows worker does not run on a demo clock "
            f"({DEMO_CLOCK_VARIABLE}=1 is for drills and tests); a release runs on real time"
        ]
    try:
        start = datetime.fromisoformat(value)
    except ValueError:
        return [f"simulated_start: {value[:40]!r} is not an ISO 8601 instant"]
    if start.tzinfo is None:
        return [f"simulated_start: {value[:40]!r} needs a UTC offset, e.g. +01:00"]
    return []


def pin_problems(request: ReleaseRequest) -> list[str]:
    """The pinned spec and migrations whose content no longer matches their sha256 (the
    governance documents are covered by the bundle's signatures)."""
    spec = request.spec
    problems = (
        [f"{spec.name}: content does not match its pinned sha256 {spec.sha256}"]
        if sha256_hex(spec.text.encode()) != spec.sha256
        else []
    )
    problems += [
        f"migration {m.name}: content does not match its pinned sha256 {m.sha256}"
        for m in request.migrations
        if sha256_hex(m.sql.encode()) != m.sha256
    ]
    return problems


def release_problems(
    request: ReleaseRequest, spec: ReleaseSpec | None, policy: ApprovalPolicy
) -> list[str]:
    """What the documents cannot say about themselves: they belong together."""
    assert spec is not None
    problems = []
    if spec.release_id != request.release_id:
        problems.append(
            f"release_id: spec says {spec.release_id!r}, request {request.release_id!r}"
        )
    if [m.name for m in request.migrations] != list(spec.migrations):
        problems.append(
            f"migrations: spec lists {list(spec.migrations)}, request carries "
            f"{[m.name for m in request.migrations]}"
        )
    problems += size_problems(request.migrations, len(spec.tenants))
    if spec.risk not in policy.risk:
        problems.append(f"risk: the policy has no rule for {spec.risk!r}")
    return problems


def size_problems(migrations: list[MigrationScript], tenants: int) -> list[str]:
    """Migrations too big to travel: in the start request, and once per tenant in the history."""
    size = sum(len(m.sql.encode()) for m in migrations)
    if size > MIGRATIONS_MAX_BYTES:
        return [
            f"migrations: {size / KiB:,.0f} KiB of SQL, at most {MIGRATIONS_MAX_BYTES / KiB:,.0f}"
            " KiB: move bulk data changes into a module update or a data job"
        ]
    if size * tenants > MIGRATIONS_IN_HISTORY_MAX_BYTES:
        return [
            f"migrations: {size / KiB:,.0f} KiB of SQL go to each of {tenants:,} tenants, "
            f"{size * tenants / MiB:,.1f} MiB in the release's history (at most "
            f"{MIGRATIONS_IN_HISTORY_MAX_BYTES / MiB:,.0f} MiB; Temporal ends a workflow at"
            " 50 MB): split the release into smaller ones"
        ]
    return []
