"""Authority re-checked where the change happens: before a worker changes a tenant.

The workflow verified every signature already, but anyone who can reach the namespace can
start a `TenantRollout` of their own, signal a child to deploy, or reset a sealed release.
So the workers that change a tenant (maintenance, database close/migrate/swap/restore/reopen,
module update, image, running-state restore) ask the release itself (`release-<id>`, its
`authorization` query) what it runs under and re-verify it with *their own* trust root
(FINRELEASE_TRUST_ROOT), never trusting the workflow's word:

- the governance bundle is signed by K of N administrators of this worker's trust root;
- the spec read against it names this tenant with this very inventory entry and image;
- the requester signed the start statement, and a quorum of distinct members (not the
  requester, one role each) signed approvals of the release digest within the approval
  window after it; no signed rejection;
- a tenant of a manually promoted wave after the first has a signed promotion of its wave
  by an operator who is not the requester;
- the activity runs in the release's own child for this tenant, and the release is not
  sealed (a sealed release never deploys again);
- entering maintenance (the first change of a cutover) happens inside the tenant's
  deployment window by the bundle's calendar, unless the risk class overrides freezes.

A refusal is `ApplicationError(type="NotAuthorized", non_retryable=True)` naming what was
missing; the tenant is untouched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from governance.bundle import BundleRefused, GovernanceBundle, verify_bundle
from governance.identity import same_identity
from governance.policy import Approval, ApprovalState
from governance.problems import ValidationFailed
from governance.release_digest import release_digest
from governance.spec import ReleaseSpec, parse_spec
from governance.statement_audit import RecordedStatement, audit_statements
from governance.statements import CLOCK_SKEW, VerifiedStatement
from governance.trust import TrustRoot, parse_trust_root
from workflows.contracts import Activity
from workflows.messages import Authorization, release_workflow_id, tenant_workflow_id
from workflows.operators import operator_refusal
from workflows.windows import check_windows

NOT_AUTHORIZED = "NotAuthorized"
# Every activity that changes a tenant's workloads or database.
GUARDED = frozenset(
    {
        Activity.SET_MAINTENANCE,
        Activity.CLOSE_DATABASE,
        Activity.MIGRATE_DATABASE,
        Activity.RUN_MODULE_UPDATE,
        Activity.SET_IMAGE,
        Activity.SWAP_TO_RESTORE_POINT,
        Activity.REOPEN_DATABASE,
        Activity.RESTORE_DATABASE,
        Activity.RESTORE_RUNNING_STATE,
    }
)
# Entering maintenance begins a cutover: it must begin inside the tenant's window.
WINDOWED = frozenset({Activity.SET_MAINTENANCE})


class NotAuthorized(Exception):
    """Why this change is not authorized (the message names what is missing)."""


@dataclasses.dataclass(frozen=True)
class Change:
    """What an activity is about to do, as its input says."""

    activity: str
    workflow_id: str  # the workflow that scheduled it
    release_id: str
    tenant: str
    tenant_entry: dict[str, Any] | None  # the inventory entry the input carries, if any
    image: str | None
    enters_maintenance: bool


def check_change(
    change: Change,
    record: Authorization,
    trust_root: TrustRoot,
    now: datetime,
    demo_clock: bool = False,
) -> None:
    """Raise NotAuthorized unless `record` authorizes `change` (see the module docstring)."""
    expected = tenant_workflow_id(change.release_id, change.tenant)
    if change.workflow_id != expected:
        raise NotAuthorized(
            f"{change.activity} for {change.tenant} was scheduled by {change.workflow_id!r},"
            f" not by the release's own rollout {expected!r}"
        )
    if record.release_id != change.release_id or record.spec is None or record.governance is None:
        raise NotAuthorized(f"release {change.release_id} has no validated governance")
    if record.sealed:
        raise NotAuthorized(f"release {change.release_id} is sealed: it changes no tenant again")
    bundle = _bundle(record, trust_root)
    spec = _spec(record, bundle, change)
    digest = release_digest(spec, [(m.name, m.sql) for m in record.migrations], bundle)
    held = _statements(record, bundle, digest)
    requester = _requester(held, spec)
    _check_approvals(held, spec, bundle, digest, requester)
    _check_promotion(held, spec, bundle, change.tenant, requester)
    if change.enters_maintenance:
        _check_window(spec, bundle, change.tenant, now, record, demo_clock)


def _bundle(record: Authorization, trust_root: TrustRoot) -> GovernanceBundle:
    assert record.governance is not None
    try:
        verdict = verify_bundle(
            record.governance.bundle.encode("utf-8"), record.governance.signatures, trust_root
        )
    except BundleRefused as refused:
        raise NotAuthorized(f"governance bundle: {refused}") from None
    return verdict.bundle


def _spec(record: Authorization, bundle: GovernanceBundle, change: Change) -> ReleaseSpec:
    assert record.spec is not None
    try:
        spec = parse_spec(record.spec.text, bundle.inventory, bundle.policy, bundle.calendars)
    except ValidationFailed as failed:
        raise NotAuthorized(f"spec: {failed.problems[0]}") from None
    if spec.release_id != change.release_id:
        raise NotAuthorized(f"the spec is release {spec.release_id}, not {change.release_id}")
    if change.tenant not in spec.tenants:
        raise NotAuthorized(f"tenant {change.tenant!r} is not in release {spec.release_id}")
    entry = dataclasses.asdict(bundle.inventory.get(change.tenant))
    if change.tenant_entry is not None and change.tenant_entry != entry:
        differing = sorted(k for k in entry if change.tenant_entry.get(k) != entry[k])
        raise NotAuthorized(
            f"tenant {change.tenant}: {', '.join(differing)} differ from the signed inventory"
        )
    if change.image is not None and change.image != spec.image:
        raise NotAuthorized(f"image {change.image[:100]!r} is not the approved {spec.image}")
    return spec


def _statements(
    record: Authorization, bundle: GovernanceBundle, digest: str
) -> list[tuple[VerifiedStatement, datetime]]:
    """The statements that verify as the workflow verified them, when it accepted them."""
    records = [
        RecordedStatement(
            s.statement, s.signature, datetime.fromisoformat(s.recorded_at), s.comment
        )
        for s in record.statements
    ]
    held, _ = audit_statements(
        records, release_id=record.release_id, bundle_digest=digest, keys_of=bundle.keys_of()
    )
    times = {r.statement: r.recorded_at for r in records}  # statements are canonical text
    return [(s, times[s.statement.canonical().decode("utf-8")]) for s in held]


def _requester(
    held: list[tuple[VerifiedStatement, datetime]], spec: ReleaseSpec
) -> VerifiedStatement:
    for verified, _ in held:
        if verified.statement.kind == "start":
            if not same_identity(verified.identity, spec.requested_by):
                raise NotAuthorized(
                    f"the start is signed by {verified.identity}, not by {spec.requested_by}"
                )
            return verified
    raise NotAuthorized("no valid start statement signed by the requester")


def _check_approvals(
    held: list[tuple[VerifiedStatement, datetime]],
    spec: ReleaseSpec,
    bundle: GovernanceBundle,
    digest: str,
    requester: VerifiedStatement,
) -> None:
    started = requester.statement.issued_at
    deadline = started + bundle.policy.approval_timeout
    state = ApprovalState(bundle.policy, spec.risk, requester.identity, digest, deadline)
    for verified, at in held:
        statement = verified.statement
        if statement.kind == "reject":
            raise NotAuthorized(f"release {spec.release_id} was rejected by {verified.identity}")
        if statement.kind != "approve" or statement.issued_at < started - CLOCK_SKEW:
            continue
        state.approve(Approval(verified.identity, statement.role or "", digest, at))
    if not state.quorum_met:
        raise NotAuthorized(
            f"release {spec.release_id} lacks signed approvals: still missing {state.missing()}"
        )


def _check_promotion(
    held: list[tuple[VerifiedStatement, datetime]],
    spec: ReleaseSpec,
    bundle: GovernanceBundle,
    tenant: str,
    requester: VerifiedStatement,
) -> None:
    rule = bundle.policy.risk[spec.risk]
    if (rule.promotion or spec.rollout.promotion) != "manual":
        return
    waves = spec.waves()
    index = next(i for i, (_, names) in enumerate(waves) if tenant in names)
    if index == 0:
        return
    wave = waves[index][0]
    for verified, _ in held:
        statement = verified.statement
        if statement.kind == "promote" and statement.wave == wave:
            refusal = operator_refusal(
                bundle.policy, verified.identity, "promote", requester.identity
            )
            if not refusal:
                return
    raise NotAuthorized(f"wave {wave!r} of {tenant} has no signed promotion by an operator")


def _check_window(
    spec: ReleaseSpec,
    bundle: GovernanceBundle,
    tenant: str,
    now: datetime,
    record: Authorization,
    demo_clock: bool,
) -> None:
    if bundle.policy.risk[spec.risk].freeze_override:
        return
    if record.simulated_start:
        if demo_clock:
            return  # a drill on a demo clock: the workflow checked its shifted calendar
        raise NotAuthorized("the release runs on a simulated clock; this worker does not")
    check = check_windows([bundle.inventory.get(tenant)], bundle.calendars, now, {})
    if tenant not in check.allowed:
        reason = check.blocked.get(tenant) or "; ".join(check.deferred[tenant].reasons)
        raise NotAuthorized(f"{tenant} is outside its deployment window now: {reason}")


# ---------------------------------------------------------------- on the workers


def change_of(activity_type: str, workflow_id: str, arg: Any) -> Change:
    """Read what a guarded activity's input says it will change."""
    release_id = getattr(arg, "release_id", "")
    tenant = getattr(arg, "tenant", "")
    entry = None
    if dataclasses.is_dataclass(tenant) and not isinstance(tenant, type):
        entry = dataclasses.asdict(tenant)
        tenant = entry["name"]
    enters = activity_type in WINDOWED and bool(getattr(arg, "enabled", True))
    return Change(
        activity_type,
        workflow_id,
        str(release_id),
        str(tenant),
        entry,
        getattr(arg, "image", None),
        enters,
    )


class AuthorityInterceptor(Interceptor):
    """Re-verifies the release's signed authority before every guarded activity runs."""

    def __init__(self, client: Client, trust_root: str, demo_clock: bool = False) -> None:
        self._client = client
        self._trust_root = parse_trust_root(trust_root)
        self._demo_clock = demo_clock

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self)

    async def check(self, activity_type: str, arg: Any) -> None:
        info = activity.info()
        change = change_of(activity_type, info.workflow_id or "", arg)
        handle = self._client.get_workflow_handle(release_workflow_id(change.release_id))
        try:
            record = await handle.query("authorization", result_type=Authorization)
        except RPCError as error:
            raise ApplicationError(
                f"{activity_type} for {change.tenant}: cannot read the authority of release"
                f" {change.release_id}: {error.message}",
                type=NOT_AUTHORIZED,
                non_retryable=True,
            ) from None
        try:
            check_change(change, record, self._trust_root, datetime.now(UTC), self._demo_clock)
        except NotAuthorized as refused:
            activity.logger.warning("change refused: %s", refused)
            raise ApplicationError(
                f"{activity_type} refused for {change.tenant}: {refused}",
                type=NOT_AUTHORIZED,
                non_retryable=True,
            ) from None


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, root: AuthorityInterceptor) -> None:
        super().__init__(next)
        self._root = root

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        activity_type = activity.info().activity_type
        if activity_type in GUARDED and input.args:
            await self._root.check(activity_type, input.args[0])
        return await self.next.execute_activity(input)


def trust_root_of(environ: Mapping[str, str]) -> str:
    """The trust root text this worker checks bundles against (FINRELEASE_TRUST_ROOT)."""
    from workflows.worker_config import TRUST_ROOT_VARIABLE, read_trust_root

    return read_trust_root(environ.get(TRUST_ROOT_VARIABLE, ""))


__all__ = ["GUARDED", "NOT_AUTHORIZED", "AuthorityInterceptor", "check_change"]
