"""CLI checks over `governance`: `spec validate`, `calendar check|show`, `evidence verify`.

Thin: read files, call governance, print. Exit codes: 0 ok, 1 failed check, 2 invalid
input or usage. `calendar check` exits 1 when a deployment is not allowed at `--at`, so a
pipeline can gate on it; its output still says when the next allowed start is.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from governance.calendar import FreezeCalendar, Period, parse_calendar
from governance.evidence import find_break, sha256_hex
from governance.inventory import parse_inventory
from governance.policy import parse_policy
from governance.problems import ValidationFailed
from governance.spec import ReleaseSpec, parse_spec
from starter.safe_text import printable
from workflows.contracts import MigrationScript
from workflows.validation import size_problems

OK, FAILED, INVALID = 0, 1, 2
T = TypeVar("T")

spec_app = typer.Typer(no_args_is_help=True, help="Validate release specs.")
calendar_app = typer.Typer(no_args_is_help=True, help="Check and show freeze calendars.")
evidence_app = typer.Typer(no_args_is_help=True, help="Verify evidence bundles.")

# Wide enough for the table when piped (a pipeline log), the terminal's width otherwise.
_out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)


def _fail(lines: list[str], code: int = INVALID) -> NoReturn:
    for line in lines:  # problems name user keys and values: shown, never obeyed
        typer.echo(printable(line), err=True)
    raise typer.Exit(code)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail([f"{path}: cannot read: {exc}"])


def _load_calendar(path: Path) -> FreezeCalendar:
    try:
        return parse_calendar(_read(path), path.stem)
    except ValidationFailed as exc:
        _fail([f"{path}: {problem}" for problem in exc.problems])


# --- spec ------------------------------------------------------------------------------


@spec_app.command("validate")
def validate_spec(
    spec: Annotated[Path, typer.Argument(help="release.yaml")],
    inventory: Annotated[Path | None, typer.Option(help="tenants.yaml")] = None,
    policy: Annotated[Path | None, typer.Option(help="policy.yaml")] = None,
    calendars: Annotated[Path | None, typer.Option(help="directory of <name>.yaml")] = None,
) -> None:
    """Validate a release spec; print the normalised spec and its sha256, or every error."""
    errors: list[str] = []
    tenants = _parse_or_collect(inventory, parse_inventory, errors)
    rules = _parse_or_collect(policy, parse_policy, errors)
    known_calendars = _calendars(calendars, errors) if calendars else None
    try:
        release = parse_spec(_read(spec), tenants, rules, known_calendars)
    except ValidationFailed as exc:
        # every line starts with its path; a whole-document problem with the file's
        errors += [str(p) if p.path else f"{spec}: {p}" for p in exc.problems]
        release = None
    if release is not None:
        read_migrations(spec, release, errors)
    if errors or release is None:
        _fail(errors)
    typer.echo(json.dumps(release.canonical(), indent=2, ensure_ascii=False))
    for name, members in release.waves():
        typer.echo(printable(f"wave {name}: {', '.join(members)}"))
    typer.echo(f"sha256: {release.sha256}")


def read_migrations(
    spec_path: Path, release: ReleaseSpec, errors: list[str]
) -> list[MigrationScript]:
    """The spec's migration scripts (paths relative to the spec), pinned by content; missing
    files and scripts too big to travel with the release are added to `errors`."""
    scripts = []
    for i, name in enumerate(release.migrations):
        path = spec_path.parent / name
        if not path.is_file():
            errors.append(f"migrations[{i}]: file not found: {path}")
            continue
        sql = _read(path)
        scripts.append(MigrationScript(name, sql, sha256_hex(sql.encode())))
    errors += size_problems(scripts, len(release.tenants))
    return scripts


def _parse_or_collect(path: Path | None, parse: Callable[[str], T], errors: list[str]) -> T | None:
    """Parse an optional side document; its problems are prefixed with its file name."""
    if path is None:
        return None
    try:
        return parse(_read(path))
    except ValidationFailed as exc:
        errors += [f"{path}: {problem}" for problem in exc.problems]
        return None


def _calendars(directory: Path, errors: list[str]) -> dict[str, FreezeCalendar]:
    if not directory.is_dir():
        errors.append(f"{directory}: not a directory of calendars")
        return {}
    found: dict[str, FreezeCalendar] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            found[path.stem] = parse_calendar(_read(path), path.stem)
        except ValidationFailed as exc:
            errors += [f"{path}: {problem}" for problem in exc.problems]
    return found


# --- calendar --------------------------------------------------------------------------


@calendar_app.command("check")
def check_calendar(
    calendar: Annotated[Path, typer.Argument(help="calendars/<name>.yaml")],
    at: Annotated[str, typer.Option(help="ISO 8601 instant; no offset: the calendar's zone")],
    as_json: Annotated[bool, typer.Option("--json", help="print the decision as JSON")] = False,
) -> None:
    """May a deployment start at --at? If not, when next (exit 1 when not allowed)."""
    rules = _load_calendar(calendar)
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        _fail([f"--at: not an ISO 8601 date-time: {at!r}"])
    decision = rules.check(moment)
    if as_json:
        typer.echo(json.dumps(decision.as_json(), ensure_ascii=False))
    else:
        data = decision.as_json()
        verdict = "allowed" if decision.allowed else "not allowed"
        typer.echo(f"{calendar.stem} ({rules.timezone}): {verdict}")
        for reason in decision.reasons:
            typer.echo(printable(f"  - {reason}"))
        typer.echo(f"next allowed: {data['next_allowed'] or 'none within the horizon'}")
        if data["freeze_ends"]:
            typer.echo(f"freeze ends: {data['freeze_ends']}")
    if decision.next_allowed is None:
        typer.echo(f"error: no allowed start within 400 days of {at}", err=True)
    raise typer.Exit(OK if decision.allowed else FAILED)


@calendar_app.command("show")
def show_calendar(
    calendar: Annotated[Path, typer.Argument(help="calendars/<name>.yaml")],
    start: Annotated[str, typer.Option("--from", help="first day, YYYY-MM-DD")],
    days: Annotated[int, typer.Option(min=1, max=800, help="number of days")] = 31,
) -> None:
    """Freezes and deployment windows from --from for --days, to plan a release."""
    rules = _load_calendar(calendar)
    try:
        first = date.fromisoformat(start)
    except ValueError:
        _fail([f"--from: not a date YYYY-MM-DD: {start!r}"])
    begin = datetime.combine(first, time(0))
    end = datetime.combine(first + timedelta(days=days), time(0))
    periods = rules.periods(begin, end)
    freezes = [p for p in periods if p.kind == "freeze"]
    table = Table(title=f"{calendar.stem} ({rules.timezone}) from {first} for {days} days")
    for column in ("kind", "start", "end", "reason", "usable"):
        table.add_column(column)
    for period in periods:
        usable = "" if period.kind == "freeze" else _usable(period, freezes)
        table.add_row(
            period.kind,
            period.start.strftime("%a %Y-%m-%d %H:%M %z"),
            period.end.strftime("%a %Y-%m-%d %H:%M %z"),
            period.reason,
            usable,
        )
    _out.print(table)


def _usable(window: Period, freezes: list[Period]) -> str:
    overlapping = [f for f in freezes if f.start < window.end and window.start < f.end]
    if any(f.start <= window.start and window.end <= f.end for f in overlapping):
        return "no (frozen)"
    return "partly (frozen)" if overlapping else "yes"


# --- evidence --------------------------------------------------------------------------


@evidence_app.command("verify")
def verify_evidence(
    file: Annotated[Path, typer.Argument(help="evidence bundle (JSON)")],
) -> None:
    """Recompute the hash chain; exit 1 naming the first broken entry."""
    try:
        bundle = json.loads(_read(file))
    except json.JSONDecodeError as exc:
        _fail([f"{file}: not JSON: {exc}"])
    broken = find_break(bundle)
    if broken is not None:
        _fail([f"broken at entry {broken.seq}: {broken.reason}"], FAILED)
    from governance.evidence_audit import audit_evidence

    audit = audit_evidence(bundle)
    if audit.problems:
        _fail(audit.problems, FAILED)
    typer.echo(
        f"ok: {len(bundle['entries'])} entries, {audit.verified} signed statement(s) "
        f"re-verified, head {bundle['head']}"
    )
