"""Starter-side helpers: pin a release's spec and migrations under a governance bundle,
start it, and talk to a running release.

Used by the CLI and usable from any pipeline script: `prepare_release` reads the spec against
the bundle's documents and computes the release digest, the requester signs the start
statement, then `start_release` starts `release-<id>` with its search attributes. Nothing
here carries a secret: the request holds document texts, public keys and signatures.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from governance.bundle import BundleRefused, parse_bundle
from governance.problems import ValidationFailed
from governance.release_digest import release_digest
from governance.spec import ReleaseSpec, parse_spec
from starter.governance_cli import _read, read_migrations
from workers.runtime import connect
from workflows.contracts import WORKFLOWS_QUEUE
from workflows.messages import (
    PinnedText,
    ReleaseRequest,
    ReleaseResult,
    ReleaseStatus,
    SignedBundle,
    SignedStatement,
    release_workflow_id,
    search_attributes_for,
)
from workflows.release import FinanceRelease

T = TypeVar("T")

OK, FAILED, INVALID, REFUSED = 0, 1, 2, 3
DEFAULT_UI = "http://127.0.0.1:8233"


class CliError(Exception):
    """A failure the CLI reports as `message` and exits with `code`."""

    def __init__(self, message: str, code: int = FAILED, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or []


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a CLI coroutine from sync code, even when the caller's thread runs a loop.

    Typer commands are sync; `asyncio.run` refuses to nest, so inside a running loop
    (a notebook, an async test calling the CLI directly) the coroutine gets its own thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def connect_client(environ: Mapping[str, str] | None = None) -> Client:
    """A client from Temporal's environment configuration (see workers.runtime.connect)."""
    try:
        return await connect(environ=environ, quiet=True)
    except RuntimeError as error:  # the bridge reports an unreachable server this way
        raise CliError(f"cannot reach Temporal: {error}") from error


def queue_prefix(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("FINRELEASE_QUEUE_PREFIX", "")


def ui_link(namespace: str, workflow_id: str, environ: Mapping[str, str] = os.environ) -> str:
    base = (environ.get("FINRELEASE_UI_URL") or DEFAULT_UI).rstrip("/")
    return f"{base}/namespaces/{namespace}/workflows/{workflow_id}"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def pinned(name: str, text: str) -> PinnedText:
    return PinnedText(name, text, sha256_text(text))


# ---------------------------------------------------------------- preparing a release


@dataclass
class PreparedRelease:
    spec: ReleaseSpec
    request: ReleaseRequest  # `start` still unsigned: `sign_start` signs it
    digest: str  # the release digest approvers will sign


def prepare_release(spec_path: Path, governance: SignedBundle) -> PreparedRelease:
    """Read the spec against the governance bundle's policy, inventory and calendars, pin
    the migrations, compute the release digest; CliError INVALID listing every error.

    The bundle's signatures are checked by the workflows worker against its trust root
    (`finrelease governance verify` checks them locally).
    """
    try:
        bundle = parse_bundle(governance.bundle.encode("utf-8"))
    except BundleRefused as exc:
        raise CliError("the governance bundle is invalid", INVALID, [str(exc)]) from None
    errors: list[str] = []
    spec_text = _read(spec_path)
    try:
        spec = parse_spec(spec_text, bundle.inventory, bundle.policy, bundle.calendars)
    except ValidationFailed as exc:
        errors = [str(p) if p.path else f"{spec_path}: {p}" for p in exc.problems]
        raise CliError("the release is invalid", INVALID, errors) from None
    migrations = read_migrations(spec_path, spec, errors)
    if errors:
        raise CliError("the release is invalid", INVALID, errors)
    request = ReleaseRequest(
        release_id=spec.release_id,
        spec=pinned(spec_path.name, spec_text),
        governance=governance,
        start=SignedStatement("", ""),
        migrations=migrations,
    )
    digest = release_digest(spec, [(m.name, m.sql) for m in migrations], bundle)
    return PreparedRelease(spec, request, digest)


# ---------------------------------------------------------------- starting and finding


def routed(request: ReleaseRequest, prefix: str) -> tuple[ReleaseRequest, str]:
    """The request and the workflows queue it starts on; the workflows worker routes the
    activities itself (workflows.worker_config), whatever the starter would like."""
    return request, f"{prefix}{WORKFLOWS_QUEUE}"


async def start_release(
    client: Client, prepared: PreparedRelease, environ: Mapping[str, str] = os.environ
) -> WorkflowHandle[Any, ReleaseResult]:
    """Start `release-<id>`; CliError INVALID when that id was ever used before."""
    workflow_id = release_workflow_id(prepared.spec.release_id)
    request, task_queue = routed(prepared.request, queue_prefix(environ))
    request.link = ui_link(client.namespace, workflow_id, environ)
    try:
        return await client.start_workflow(
            FinanceRelease.run,
            request,
            id=workflow_id,
            task_queue=task_queue,
            search_attributes=search_attributes_for(prepared.spec),
            # a release id names one release forever: its evidence is stored under it
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=f"{prepared.spec.release_id}: {prepared.spec.risk} risk, "
            f"{len(prepared.spec.tenants)} tenant(s)",
        )
    except WorkflowAlreadyStartedError:
        raise CliError(
            f"release {prepared.spec.release_id} already exists (workflow {workflow_id}); "
            "a release id is never reused: give the spec a new release_id",
            INVALID,
        ) from None


def release_handle(client: Client, release_id: str) -> WorkflowHandle[Any, ReleaseResult]:
    return client.get_workflow_handle(release_workflow_id(release_id), result_type=ReleaseResult)


async def release_status(handle: WorkflowHandle[Any, Any]) -> ReleaseStatus:
    """The `status` query; CliError naming the release when it does not exist."""
    from temporalio.service import RPCError, RPCStatusCode

    try:
        return await handle.query(FinanceRelease.status)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise CliError(f"no release with workflow id {handle.id}") from None
        raise CliError(f"status of {handle.id}: {error.message}") from None


def list_query(phase: str | None, risk: str | None, tenant: str | None) -> str:
    """The visibility query over the release search attributes."""
    clauses = ["WorkflowType = 'FinanceRelease'"]
    for attribute, value in (("ReleasePhase", phase), ("RiskClass", risk), ("Tenants", tenant)):
        if value:
            escaped = value.replace("\\", "\\\\").replace("'", "\\'")
            clauses.append(f"{attribute} = '{escaped}'")
    return " AND ".join(clauses)
