"""How a release's status reads on a terminal: `finrelease status` and `finrelease watch`."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table

from starter.safe_text import cell
from workflows.messages import ReleaseStatus

STATE_STYLE = {
    "deployed": "green",
    "done": "green",
    "running": "cyan",
    "deploying": "cyan",
    "halted": "red",
    "failed": "red",
    "error": "red",
    "rolled_back": "yellow",
    "blocked": "red",
    "deferred": "yellow",
    "awaiting_decision": "magenta",
    "awaiting_promotion": "magenta",
}


def _style(state: str) -> str:
    if "fail" in state:
        return "red"
    return STATE_STYLE.get(state, "")


def status_lines(status: ReleaseStatus) -> list[str]:
    """The header of a status: phase, approvals, next timer, pause, last error."""
    phase = f"{status.phase} -> {status.outcome}" if status.outcome else status.phase
    lines = [
        f"release {status.release_id}: {phase}" + (" (paused)" if status.paused else ""),
        f"risk {status.risk or '?'}, spec sha256 {status.spec_sha256 or '(not validated yet)'}",
    ]
    if status.simulated_start:
        lines.insert(
            1,
            f"SIMULATED CLOCK: runs as if started at {status.simulated_start} "
            "(demo worker; calendar checks do not use real time)",
        )
    if status.approvals:
        given = ", ".join(f"{a.approver} ({a.role})" for a in status.approvals)
        lines.append(f"approved by: {given}")
    missing = {role: n for role, n in status.missing.items() if n > 0}
    if missing and not status.outcome:
        lines.append("approvals missing: " + ", ".join(f"{r} x{n}" for r, n in missing.items()))
    for refused in status.refused[:3]:
        lines.append(
            f"refused {refused.kind} by {refused.approver} ({refused.role}): {refused.message}"
        )
    if sum(status.refused_counts.values()) > len(status.refused[:3]):
        counts = ", ".join(f"{code} x{n}" for code, n in status.refused_counts.items())
        lines.append(f"refused attempts in all: {counts}")
    if status.next_timer:
        lines.append(f"next timer: {status.next_timer} — {status.next_timer_reason}")
    for tenant, holder in status.waiting_for_locks.items():
        lines.append(f"{tenant} waits for its lock, held by {holder}")
    if status.last_error:
        lines.append(f"last error: {status.last_error}")
    return lines


def render_status(status: ReleaseStatus) -> RenderableType:
    """Header lines and one progress row per wave and tenant."""
    table = Table(show_header=True, header_style="bold", expand=False)
    table.add_column("wave")
    table.add_column("tenant")
    table.add_column("state")
    table.add_column("detail", overflow="fold")
    for wave in status.waves:
        table.add_row(cell(wave.name), "", cell(wave.state, _style(wave.state)), "")
        for tenant in wave.tenants:
            detail = tenant.detail or (
                f"lock held by {tenant.lock_holder}" if tenant.lock_holder else ""
            )
            state = cell(tenant.state, _style(tenant.state))
            table.add_row("", cell(tenant.tenant), state, cell(detail))
    # each line goes through `printable` whole: a value holding a newline stays on its line
    header = [cell(line) for line in status_lines(status)]
    return Group(*header, table) if status.waves else Group(*header)
