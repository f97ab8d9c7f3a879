"""The release verbs of `finrelease`: start, status, watch, approve, reject, pause, resume,
promote, abort, decide, resolve, list.

Exit codes: 0 ok, 1 error, 2 invalid input, 3 refused by the release (an update the
workflow's validator or approval rules turned down; the reason is printed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from governance.identity import same_identity
from starter.client_helpers import (
    FAILED,
    INVALID,
    OK,
    REFUSED,
    CliError,
    connect_client,
    list_query,
    prepare_release,
    release_handle,
    release_status,
    run_async,
    start_release,
    ui_link,
)
from starter.identity import IdentityMissing, resolve_actor
from starter.safe_text import cell, printable
from starter.signing_cli import Key, KeyVault, comment_from, governance_files, signed, signer_for
from starter.status_view import render_status, status_lines
from workflows.messages import (
    DECISIONS,
    PARK_CHOICES,
    RELEASE_PHASE,
    REQUESTED_BY,
    RISK_CLASS,
    TENANTS,
    WORK_ITEM,
    Outcome,
    ReleaseResult,
    ReleaseStatus,
)
from workflows.release import FinanceRelease

T = TypeVar("T")
_out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)

As = Annotated[str | None, typer.Option("--as", help="acting user (default: $FINRELEASE_USER)")]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
ReleaseId = Annotated[str, typer.Argument(help="release id (the spec's release_id)")]


def _execute(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine, turning known failures into a message and an exit code."""
    try:
        return run_async(coroutine)
    except CliError as error:
        _fail(str(error), error.code, error.details)
    except IdentityMissing as error:
        _fail(str(error), INVALID)
    except RPCError as error:
        _fail(f"Temporal refused the request ({error.status.name}): {error.message}", FAILED)


def _fail(message: str, code: int, details: list[str] | None = None) -> NoReturn:
    # refusals quote user values (names, comments): shown, never obeyed by the terminal
    for line in details or []:
        typer.echo(printable(line), err=True)
    typer.echo(printable(message), err=True)
    raise typer.Exit(code)


def _print_json(value: Any) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _refusal(error: WorkflowUpdateFailedError) -> str:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        code = f" [{cause.details[0]}]" if cause.details else ""
        return f"{cause.message}{code}"
    return str(cause or error)


async def _update(handle: WorkflowHandle[Any, Any], update: Any, request: Any) -> Any:
    """Send an update; a refusal by the release becomes CliError REFUSED with its reason."""
    try:
        return await handle.execute_update(update, request)
    except WorkflowUpdateFailedError as error:
        raise CliError(f"refused by release {handle.id}: {_refusal(error)}", REFUSED) from None
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise CliError(f"release {handle.id}: {error.message}", REFUSED) from None
        raise


# ---------------------------------------------------------------- start


def start(
    spec: Annotated[Path, typer.Argument(help="release.yaml (migrations relative to it)")],
    bundle: Annotated[
        Path,
        typer.Option(help="the signed governance bundle (signatures: BUNDLE*.sig beside it)"),
    ],
    signature: Annotated[
        list[Path] | None, typer.Option("--signature", help="bundle signature files (repeatable)")
    ] = None,
    actor: As = None,
    key: Key = None,
    key_vault: KeyVault = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow to the outcome")] = False,
    json_output: Json = False,
) -> None:
    """Validate locally, sign the start statement as the requester, start release-<id>;
    with --wait exit 0 only on Completed."""

    async def go() -> int:
        prepared = prepare_release(spec, governance_files(bundle, signature))
        requester = resolve_actor(actor)
        if not same_identity(requester, prepared.spec.requested_by):
            raise CliError(
                f"the spec's requested_by is {prepared.spec.requested_by}; you are {requester}:"
                " the requester signs the start",
                INVALID,
            )
        prepared.request.start = signed(
            signer_for(key, key_vault),
            "start",
            release_id=prepared.spec.release_id,
            digest=prepared.digest,
            actor=prepared.spec.requested_by,
        )
        client = await connect_client()
        handle = await start_release(client, prepared)
        started = {
            "release_id": prepared.spec.release_id,
            "workflow_id": handle.id,
            "run_id": handle.result_run_id,
            "spec_sha256": prepared.spec.sha256,
            "digest": prepared.digest,
            "ui": ui_link(client.namespace, handle.id),
        }
        if not json_output:
            typer.echo(f"started release {prepared.spec.release_id}")
            typer.echo(f"workflow id: {handle.id}")
            typer.echo(f"spec sha256: {prepared.spec.sha256}")
            typer.echo(f"release digest (approvers sign it): {prepared.digest}")
            typer.echo(f"UI: {started['ui']}")
        if not wait:
            if json_output:
                _print_json(started)
            return OK
        result = await follow(handle, lambda line: typer.echo(line, err=json_output))
        if json_output:
            _print_json({**started, "result": dataclasses.asdict(result)})
        else:
            typer.echo(printable(f"outcome: {result.outcome} — {result.reason}"))
            if result.evidence_url:
                typer.echo(f"evidence: {result.evidence_url}")
        return OK if result.outcome == Outcome.COMPLETED else FAILED

    raise typer.Exit(_execute(go()))


async def follow(
    handle: WorkflowHandle[Any, ReleaseResult],
    echo: Callable[[str], None],
    poll_seconds: float = 2.0,
) -> ReleaseResult:
    """Wait for the outcome, echoing each change of phase / timer / error on the way."""
    from temporalio.client import WorkflowFailureError

    result = asyncio.ensure_future(handle.result())
    last = ""
    while True:
        done, _ = await asyncio.wait({result}, timeout=poll_seconds)
        if done:
            try:
                return result.result()
            except WorkflowFailureError as error:
                raise CliError(f"release {handle.id} failed: {error.cause or error}") from None
        try:
            status = await handle.query(FinanceRelease.status)
        except RPCError:
            continue  # no workflow worker yet: keep waiting for the result
        line = " | ".join(
            status_lines(status)[:1]
            + [
                f"next timer: {status.next_timer_reason}" if status.next_timer else "",
                f"last error: {status.last_error}" if status.last_error else "",
            ]
        ).rstrip(" |")
        if line != last:
            echo(printable(line))
            last = line


# ---------------------------------------------------------------- status and watch


def status(release_id: ReleaseId, json_output: Json = False) -> None:
    """Show a release's phase, approvals, next timer and per-tenant progress."""

    async def go() -> ReleaseStatus:
        client = await connect_client()
        return await release_status(release_handle(client, release_id))

    current = _execute(go())
    if json_output:
        _print_json(current)
    else:
        _out.print(render_status(current))


def watch(
    release_id: ReleaseId,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 2.0,
) -> None:
    """A live view until the release has an outcome (Ctrl-C leaves it running)."""

    async def go() -> str:
        client = await connect_client()
        handle = release_handle(client, release_id)
        current = await release_status(handle)
        with Live(render_status(current), console=_out, refresh_per_second=4) as live:
            while not current.outcome:
                await asyncio.sleep(interval)
                current = await release_status(handle)
                live.update(render_status(current))
        return current.outcome

    outcome = _execute(go())
    raise typer.Exit(OK if outcome == Outcome.COMPLETED else FAILED)


# ---------------------------------------------------------------- approvals


async def _validated_status(handle: WorkflowHandle[Any, Any], release_id: str) -> ReleaseStatus:
    """The status once the release has validated its governance (statements need its digest)."""
    for _ in range(30):
        current = await release_status(handle)
        if current.digest or current.outcome:
            break
        await asyncio.sleep(1)
    if not current.digest:
        raise CliError(
            f"release {release_id} has no release digest (phase {current.phase}"
            + (f", outcome {current.outcome}" if current.outcome else "")
            + "): nothing to sign"
        )
    return current


def _decide_approval(
    release_id: str,
    actor: str | None,
    role: str,
    comment: str,
    digest: str,
    approve: bool,
    key: Path | None,
    key_vault: str | None,
) -> None:
    async def go() -> str:
        approver = resolve_actor(actor)
        sign = signer_for(key, key_vault)
        client = await connect_client()
        handle = release_handle(client, release_id)
        current = await _validated_status(handle, release_id)
        if digest != current.digest:
            raise CliError(
                f"you reviewed digest {digest[:80]}, release {release_id} runs under "
                f"{current.digest}: check what it covers with `finrelease governance digest`",
                INVALID,
            )
        retrospective = approve and current.phase == "Reporting" and bool(current.missing)
        kind = ("retro_approve" if retrospective else "approve") if approve else "reject"
        verb = "approving" if approve else "rejecting"
        typer.echo(printable(f"{verb} release {release_id} as {approver} ({role})"))
        typer.echo(f"release digest: {current.digest}")
        typer.echo(f"spec sha256: {current.spec_sha256}")
        statement = signed(
            sign, kind, release_id=release_id, digest=digest, actor=approver,
            comment=comment, role=role,
        )  # fmt: skip
        update = FinanceRelease.approve if approve else FinanceRelease.reject
        verdict = await _update(handle, update, statement)
        return f"{'approved' if approve else 'rejected'}: {verdict.message}"

    typer.echo(printable(_execute(go())))


Role = Annotated[str, typer.Option(help="the policy role you act in, e.g. platform")]
Comment = Annotated[str, typer.Option(help="recorded in the evidence (at most 2 KiB)")]
CommentFile = Annotated[
    Path | None, typer.Option("--comment-file", help="read the comment from a file")
]
Digest = Annotated[
    str,
    typer.Option(
        "--digest",
        help="the release digest you reviewed (`finrelease governance digest`); never filled in",
    ),
]


def approve(
    release_id: ReleaseId,
    role: Role,
    digest: Digest,
    actor: As = None,
    comment: Comment = "",
    comment_file: CommentFile = None,
    key: Key = None,
    key_vault: KeyVault = None,
) -> None:
    """Approve a release in a role: a signed statement over the release digest you reviewed."""
    text = _execute(_comment(comment, comment_file))
    _decide_approval(release_id, actor, role, text, digest, True, key, key_vault)


def reject(
    release_id: ReleaseId,
    role: Role,
    digest: Digest,
    actor: As = None,
    comment: Comment = "",
    comment_file: CommentFile = None,
    key: Key = None,
    key_vault: KeyVault = None,
) -> None:
    """Reject a release in a role: one eligible rejection ends it."""
    text = _execute(_comment(comment, comment_file))
    _decide_approval(release_id, actor, role, text, digest, False, key, key_vault)


async def _comment(comment: str, comment_file: Path | None) -> str:
    return comment_from(comment, comment_file)


# ---------------------------------------------------------------- operator controls


Reason = Annotated[str, typer.Option(help="why; recorded in the evidence")]


async def _operate(
    release_id: str,
    action: str,
    actor: str | None,
    reason: str,
    key: Path | None,
    key_vault: str | None,
    **extra: str,
) -> str:
    """Sign `action` as the operator over the release's digest and send it."""
    operator = resolve_actor(actor)
    sign = signer_for(key, key_vault)
    client = await connect_client()
    handle = release_handle(client, release_id)
    current = await _validated_status(handle, release_id)
    if action == "promote" and "wave" not in extra:
        waiting = [w.name for w in current.waves if w.state == "awaiting_promotion"]
        if not waiting:
            raise CliError(f"release {release_id}: no wave is waiting for promotion", REFUSED)
        extra["wave"] = waiting[0]
    statement = signed(
        sign, action, release_id=release_id, digest=current.digest, actor=operator,
        comment=reason, **extra,
    )  # fmt: skip
    return str(await _update(handle, getattr(FinanceRelease, action), statement))


def _operator_command(action: str, doc: str) -> Callable[..., None]:
    def command(
        release_id: ReleaseId,
        actor: As = None,
        reason: Reason = "",
        key: Key = None,
        key_vault: KeyVault = None,
    ) -> None:
        typer.echo(printable(_execute(_operate(release_id, action, actor, reason, key, key_vault))))

    command.__doc__ = doc
    return command


pause = _operator_command("pause", "Pause: no new step starts until resume.")
resume = _operator_command("resume", "Resume a paused release.")
promote = _operator_command("promote", "Promote the wave waiting for promotion.")


def abort(
    release_id: ReleaseId,
    reason: Annotated[str, typer.Option(help="why (required, recorded in the evidence)")],
    actor: As = None,
    key: Key = None,
    key_vault: KeyVault = None,
) -> None:
    """Abort: no new tenant starts; deployed tenants are compensated per on_failure."""
    typer.echo(printable(_execute(_operate(release_id, "abort", actor, reason, key, key_vault))))


def decide(
    release_id: ReleaseId,
    choice: Annotated[str, typer.Argument(help="restore | fix_forward")],
    tenant: Annotated[str, typer.Option(help="the tenant waiting for a decision")],
    actor: As = None,
    reason: Reason = "",
    key: Key = None,
    key_vault: KeyVault = None,
) -> None:
    """Answer a tenant waiting because journal entries were written since its backup."""
    if choice not in DECISIONS:
        _fail(f"choice must be one of {', '.join(DECISIONS)}, not {choice[:40]!r}", INVALID)
    going = _operate(
        release_id, "decide", actor, reason, key, key_vault, tenant=tenant, choice=choice
    )
    typer.echo(printable(_execute(going)))


def resolve(
    release_id: ReleaseId,
    choice: Annotated[str, typer.Argument(help="retry | leave_out")],
    tenant: Annotated[str, typer.Option(help="the parked tenant")],
    actor: As = None,
    reason: Reason = "",
    key: Key = None,
    key_vault: KeyVault = None,
) -> None:
    """Answer a parked tenant (its preparation could not run): retry it, or leave it out."""
    if choice not in PARK_CHOICES:
        _fail(f"choice must be one of {', '.join(PARK_CHOICES)}, not {choice[:40]!r}", INVALID)
    going = _operate(
        release_id, "resolve", actor, reason, key, key_vault, tenant=tenant, choice=choice
    )
    typer.echo(printable(_execute(going)))


# ---------------------------------------------------------------- list


def list_releases(
    phase: Annotated[str | None, typer.Option(help="e.g. AwaitingApproval")] = None,
    risk: Annotated[str | None, typer.Option(help="low | medium | high | emergency")] = None,
    tenant: Annotated[str | None, typer.Option(help="releases touching this tenant")] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 50,
    json_output: Json = False,
) -> None:
    """Releases by phase, risk class or tenant (a visibility query on search attributes)."""

    async def go() -> list[dict[str, Any]]:
        client = await connect_client()
        rows = []
        async for execution in client.list_workflows(list_query(phase, risk, tenant), limit=limit):
            attributes = execution.typed_search_attributes
            rows.append(
                {
                    "workflow_id": execution.id,
                    "phase": attributes.get(RELEASE_PHASE) or "",
                    "risk": attributes.get(RISK_CLASS) or "",
                    "status": execution.status.name if execution.status else "",
                    "requested_by": attributes.get(REQUESTED_BY) or "",
                    "work_item": attributes.get(WORK_ITEM),
                    "tenants": list(attributes.get(TENANTS) or []),
                    "started": execution.start_time.isoformat(timespec="seconds"),
                }
            )
        return rows

    rows = _execute(go())
    if json_output:
        _print_json(rows)
        return
    table = Table(show_header=True, header_style="bold")
    for column in (
        "release",
        "phase",
        "risk",
        "status",
        "requested by",
        "work item",
        "tenants",
        "started",
    ):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(
                cell(value, limit=254)
                for value in (
                    row["workflow_id"].removeprefix("release-"),
                    row["phase"],
                    row["risk"],
                    row["status"],
                    row["requested_by"],
                    str(row["work_item"] or ""),
                    ", ".join(row["tenants"]),
                    row["started"],
                )
            )
        )
    _out.print(table)


def register(app: typer.Typer) -> None:
    """Mount the release verbs on the root `finrelease` app."""
    app.command("start")(start)
    app.command("status")(status)
    app.command("watch")(watch)
    app.command("approve")(approve)
    app.command("reject")(reject)
    app.command("pause")(pause)
    app.command("resume")(resume)
    app.command("promote")(promote)
    app.command("abort")(abort)
    app.command("decide")(decide)
    app.command("resolve")(resolve)
    app.command("list")(list_releases)
