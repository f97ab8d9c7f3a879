"""FinanceRelease: the release saga, read top to bottom like the runbook.

validate -> approvals -> window -> back up and rehearse (per tenant, in TenantRollout
children) -> gates -> waves of rollouts -> (emergency override: retrospective approval)
-> seal evidence and report. Every decision goes into the release's evidence chain; each
tenant seals its own chain, and the release records where it is and its head hash.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from governance.evidence import EvidenceChain
    from governance.inventory import Tenant
    from governance.policy import Approval, ApprovalState, Rejection
    from governance.spec import ReleaseSpec
    from governance.statements import VerifiedStatement
    from workflows.approvals import RETROSPECTIVE_ROLE, RETROSPECTIVE_WINDOW, ApprovalDesk
    from workflows.authority import NotEstablished, ReleaseAuthority, establish, statement_record
    from workflows.children import TenantChildren
    from workflows.contracts import (
        TENANT_BUNDLES,
        Activity,
        ErrorType,
        EvidencePublication,
        Notification,
        NotificationResult,
        ObservabilityCheck,
        ObservabilityResult,
        PublishedEvidence,
        WorkItemCheck,
        WorkItemInfo,
        WorkItemReport,
        WorkItemReportResult,
        evidence_blob_name,
    )
    from workflows.failures import cause
    from workflows.messages import (
        APPROVAL_REFUSED,
        RELEASE_PHASE,
        ApprovalVerdict,
        Authorization,
        Outcome,
        Phase,
        RecordedSignedStatement,
        ReleaseRequest,
        ReleaseResult,
        ReleaseStatus,
        SignedStatement,
        TenantState,
        WaveStatus,
        tenant_workflow_id,
    )
    from workflows.operators import operator_refusal
    from workflows.policies import run_activity
    from workflows.tenant_messages import (
        DeployOrder,
        Finish,
        ParkResolution,
        StandDown,
        TenantAbort,
        TenantDecision,
        TenantOrder,
        TenantOutcome,
        TenantPhase,
        TenantPrepared,
        TenantReport,
    )
    from workflows.validation import (
        check_text,
        pin_problems,
        release_problems,
        simulated_start_problems,
    )
    from workflows.windows import check_windows
    from workflows.worker_config import fetch_worker_config

OBSERVABILITY_RECHECK = timedelta(minutes=5)
TENANT_LINKS_PER_ENTRY = 200


@dataclass(frozen=True)
class OperatorAction:
    """A verified operator action the release keeps (abort): who, and why."""

    operator: str
    reason: str


class ReleaseEnded(Exception):
    """The release reached an outcome early (invalid, rejected, expired, failed, aborted)."""

    def __init__(self, outcome: str, reason: str, problems: list[str] | None = None) -> None:
        super().__init__(reason)
        self.outcome, self.reason, self.problems = outcome, reason, problems or []


@workflow.defn
class FinanceRelease:
    # @workflow.init: an update or signal that arrives with the start is handled before
    # `run` begins, so everything a handler touches must exist from construction.
    @workflow.init
    def __init__(self, request: ReleaseRequest) -> None:
        self._request = request
        self._phase = Phase.VALIDATING
        self._outcome = ""
        self._spec: ReleaseSpec | None = None
        self._desk: ApprovalDesk | None = None
        self._retro: ApprovalDesk | None = None
        self._paused = False
        self._abort: OperatorAction | None = None
        self._authority: ReleaseAuthority | None = None
        self._statements: list[RecordedSignedStatement] = []  # accepted, for `authorization`
        self._promotions = 0
        self._next_timer: tuple[str, str] = ("", "")
        self._last_error = ""
        self._tenants: dict[str, TenantState] = {}
        self._wave_state: dict[str, str] = {}
        self._children = TenantChildren(self._tenant_finished)
        self._unlinked: list[TenantOutcome] = []  # finished, bundle not yet linked in evidence
        self._announced_parked: set[str] = set()
        self._offset = timedelta(0)  # set in _validate, when the worker allows a demo clock
        self._simulated_start = ""
        self._queues: dict[str, str] = {}  # from the workflows worker's configuration
        self._chain = EvidenceChain(request.release_id)
        self._closed = False

    # --- the runbook ---------------------------------------------------------------------

    @workflow.run
    async def run(self, request: ReleaseRequest) -> ReleaseResult:
        try:
            await self._validate(request)
            await self._collect_approvals()
            await self._wait_for_first_window()
            await self._back_up_and_rehearse()
            await self._pass_gates()
            outcome, reason = await self._roll_out()
            if outcome == Outcome.COMPLETED and self._override_used:
                await self._await_retrospective_approval()
        except ReleaseEnded as ended:
            await self._stand_down_all(ended.reason)
            return await self._seal_and_report(ended.outcome, ended.reason, ended.problems)
        return await self._seal_and_report(outcome, reason, [])

    async def _validate(self, request: ReleaseRequest) -> None:
        """Trust the governance bundle, read the spec against it and check the requester's
        signature; bad or untrusted input ends as Invalid, nothing touched."""
        self._set_phase(Phase.VALIDATING)
        config = await fetch_worker_config()
        self._queues = dict(config.queues)
        problems = simulated_start_problems(request.simulated_start, config.demo_clock)
        if not problems and request.simulated_start:
            self._simulated_start = request.simulated_start
            self._offset = datetime.fromisoformat(request.simulated_start) - workflow.now()
        problems += pin_problems(request)
        if not problems:
            try:
                self._authority = establish(request, config.trust_root, workflow.now())
            except NotEstablished as refused:
                problems = refused.problems
        if not problems:
            authority = self._authority
            assert authority is not None
            self._inventory = authority.bundle.inventory
            self._policy = authority.bundle.policy
            self._calendars = authority.bundle.calendars
            self._spec = authority.spec
            problems = release_problems(request, self._spec, self._policy)
        if problems:
            self._authority = None
            self._record("invalid", {"problems": problems})
            raise ReleaseEnded(
                Outcome.INVALID, f"{len(problems)} problem(s) in the release", problems
            )
        spec, authority = self._spec, self._authority
        assert spec is not None and authority is not None
        self._record(
            "release",
            {
                "spec_sha256": spec.sha256,
                "spec": spec.canonical(),
                "digest": authority.digest,
                "governance": {
                    "bundle_digest": authority.bundle.digest,
                    "serial": authority.bundle.serial,
                    "signed_by": list(authority.signed_by),
                    # what `evidence verify` re-checks every statement against, offline
                    "policy": authority.bundle.texts["policy"],
                    "members": {
                        who: [key.openssh() for key in keys]
                        for who, keys in authority.bundle.members.items()
                    },
                },
                "migrations": {m.name: m.sha256 for m in request.migrations},
                "simulated_start": request.simulated_start,
                "routing": dict(sorted(self._queues.items())),
            },
        )
        self._record(
            "start", statement_record(request.start, workflow.now()), authority.requester.identity
        )
        start = request.start
        self._statements.append(
            RecordedSignedStatement(
                start.statement, start.signature, start.comment, workflow.now().isoformat()
            )
        )
        if self._simulated_start:
            self._record(
                "simulated_clock",
                {
                    "simulated_start": self._simulated_start,
                    "real_start": workflow.now().isoformat(),
                    "note": "demo clock: calendar checks did not use real time",
                },
            )
        self._waves = spec.waves()
        for name, tenants in self._waves:
            self._wave_state[name] = "pending"
            for tenant in tenants:
                self._tenants[tenant] = TenantState(tenant, TenantPhase.PENDING)
        check = WorkItemCheck(spec.release_id, spec.work_item, spec.risk)
        try:
            item: WorkItemInfo = await self._call(Activity.VALIDATE_WORK_ITEM, check, WorkItemInfo)
        except ActivityError as err:
            reason = cause(err)
            self._record("work_item_refused", {"work_item": spec.work_item, "error": reason})
            raise ReleaseEnded(Outcome.INVALID, reason, [reason]) from None
        self._record(
            "work_item",
            {
                "id": item.id,
                "state": item.state,
                "risk": item.risk,
                "url": item.url,
                "rev": item.rev,
            },
        )

    async def _collect_approvals(self) -> None:
        spec = self._spec
        assert spec is not None
        self._set_phase(Phase.AWAITING_APPROVAL)
        deadline = self.now() + self._policy.approval_timeout
        authority = self._authority
        assert authority is not None
        requester = authority.requester.identity
        state = ApprovalState(self._policy, spec.risk, requester, authority.digest, deadline)
        self._desk = ApprovalDesk(state, self._record)
        self._next_timer = (deadline.isoformat(), "approval deadline")
        await self._notify(
            "approval_requested",
            f"{spec.release_id} needs approval: {state.missing()}",
            self._members(state.missing()),
        )
        if not await self._wait(lambda: state.outcome != "pending", deadline, "approval deadline"):
            self._record("expired", {"deadline": deadline.isoformat(), "missing": state.missing()})
            raise ReleaseEnded(
                Outcome.EXPIRED, f"approvals still missing at {deadline.isoformat()}"
            )
        if state.rejection is not None:
            r = state.rejection
            raise ReleaseEnded(
                Outcome.REJECTED, f"rejected by {r.approver} ({r.role}): {r.comment}"
            )
        self._record("approved", {"approvers": [a.approver for a in state.approvals]})

    async def _wait_for_first_window(self) -> None:
        self._set_phase(Phase.AWAITING_WINDOW)
        first_wave = self._waves[0][1]
        while True:
            check = self._check_windows(first_wave, "first wave")
            if check.allowed or not check.deferred:
                return
            until = check.earliest()
            assert until is not None
            await self._notify("waiting_for_window", f"first wave waits until {until.isoformat()}")
            await self._wait(lambda: False, until, "deployment window of the first wave")

    async def _back_up_and_rehearse(self) -> None:
        """Start one TenantRollout per tenant: backup, verification, rehearsal, under its lock."""
        spec = self._spec
        assert spec is not None
        self._set_phase(Phase.BACKING_UP)
        rule = self._policy.risk[spec.risk]
        canary = self._waves[0][1][0]
        limit = spec.rollout.max_parallel
        children = self._children
        for name in spec.tenants:
            await self._wait_unpaused()
            await self._wait(lambda: children.preparing() < limit)
            self._start_child(self._inventory.get(name), rule.rehearse == "all" or name == canary)
        await self._wait_announcing_parked(
            lambda: all(children.is_backed_up(t) or self._parked(t) for t in spec.tenants)
        )
        self._set_phase(Phase.REHEARSING)
        await self._wait_announcing_parked(
            lambda: all(t in children.prepared or t in children.outcomes for t in spec.tenants)
        )
        left_out = sorted(t for t, p in children.prepared.items() if p.left_out)
        failed = {t: p.reason for t, p in children.prepared.items() if not p.ok and not p.left_out}
        if failed:
            self._record("gate_failed", {"gate": "backups and rehearsal", "tenants": failed})
            raise ReleaseEnded(Outcome.FAILED, "; ".join(failed.values()))
        if left_out:
            self._leave_out(left_out)

    async def _wait_announcing_parked(self, condition: Any) -> None:
        """Wait for `condition`; each tenant that parks meanwhile is recorded and announced."""
        while True:
            await self._wait(lambda: condition() or bool(self._unannounced_parked()))
            for tenant in self._unannounced_parked():
                self._announced_parked.add(tenant)
                detail = self._tenants[tenant].detail
                self._record("tenant_parked", {"tenant": tenant, "detail": detail})
                self._last_error = detail
                workflow.set_current_details(
                    f"{self._phase}: {tenant} parked, waiting for an operator to retry it,"
                    f" leave it out or abort the release — {detail}"[:500]
                )
                await self._notify(
                    "parked",
                    f"{tenant} is parked: {detail}. Choose `finrelease resolve"
                    f" {self._request.release_id} retry|leave_out --tenant {tenant}`, or abort.",
                    self._members({"release_manager": 1}),
                )
            if condition():
                return

    def _parked(self, tenant: str) -> bool:
        state = self._tenants.get(tenant)
        return state is not None and state.state == TenantPhase.PARKED

    def _unannounced_parked(self) -> list[str]:
        return sorted(
            t for t in self._tenants if self._parked(t) and t not in self._announced_parked
        )

    def _leave_out(self, tenants: list[str]) -> None:
        """Drop left-out tenants from the waves: they were not prepared, they are not deployed."""
        self._record("tenants_left_out", {"tenants": tenants})
        waves = [(w, [t for t in names if t not in tenants]) for w, names in self._waves]
        for wave, names in waves:
            if not names:
                self._wave_state[wave] = "done"
        self._waves = [(w, names) for w, names in waves if names]

    async def _pass_gates(self) -> None:
        """Rollback package for every tenant, then hold until observability is green."""
        spec = self._spec
        assert spec is not None
        prepared = self._children.prepared
        missing = [
            t
            for t in spec.tenants
            if not (t in prepared and (prepared[t].backup or prepared[t].left_out))
        ]
        if missing:
            raise ReleaseEnded(Outcome.FAILED, f"no rollback package for {', '.join(missing)}")
        self._record("gate_passed", {"gate": "rollback packages", "tenants": list(spec.tenants)})
        first_hold = True
        while True:
            check = ObservabilityCheck(spec.release_id, list(spec.tenants))
            try:
                result: ObservabilityResult = await self._call(
                    Activity.CHECK_OBSERVABILITY, check, ObservabilityResult
                )
            except ActivityError as err:
                result = ObservabilityResult(False, [f"observability check failed: {cause(err)}"])
            if result.healthy:
                self._record("gate_passed", {"gate": "observability"})
                return
            self._last_error = "; ".join(result.problems)
            if first_hold:
                self._record("gate_held", {"gate": "observability", "problems": result.problems})
                await self._notify(
                    "failure", f"release held by the observability gate: {self._last_error}"
                )
                first_hold = False
            await self._wait(
                lambda: False, self.now() + OBSERVABILITY_RECHECK, "observability recheck"
            )

    async def _roll_out(self) -> tuple[str, str]:
        spec = self._spec
        assert spec is not None
        self._set_phase(Phase.ROLLING_OUT)
        rule = self._policy.risk[spec.risk]
        manual = (rule.promotion or spec.rollout.promotion) == "manual"
        halted = ""
        for index, (wave, names) in enumerate(self._waves):
            if index:
                await self._wait(
                    lambda: False, self.now() + spec.rollout.bake, f"bake before {wave}"
                )
                if manual:
                    self._wave_state[wave] = "awaiting_promotion"
                    await self._notify(
                        "wave_done", f"wave {wave} waits for promote", self._members({})
                    )
                    await self._wait(lambda i=index: self._promotions >= i, None, f"promote {wave}")
                    self._record("promoted", {"wave": wave})
            halted = await self._run_wave(wave, names)
            self._link_tenant_bundles()
            await self._notify("wave_done", f"wave {wave}: {self._wave_state[wave]}")
            if halted:
                break
        return await self._finish_rollout(halted)

    async def _run_wave(self, wave: str, names: list[str]) -> str:
        """Deploy one wave (deferring tenants outside their window); return why it halted."""
        spec = self._spec
        assert spec is not None
        children = self._children
        self._wave_state[wave] = "running"
        remaining = list(names)
        while remaining:
            await self._wait_unpaused()
            check = self._check_windows(remaining, wave)
            for tenant, reason in check.blocked.items():
                self._set_tenant(tenant, TenantPhase.BLOCKED, reason)
                children.stand_down(tenant, StandDown(reason), blocked=True)
            remaining = [t for t in remaining if t not in check.blocked]
            if not check.allowed:
                until = check.earliest()
                if until is None:
                    break
                await self._wait(lambda: False, until, f"window of {', '.join(check.deferred)}")
                continue
            for tenant in check.allowed:
                await self._wait(
                    lambda: (
                        len(children.in_flight()) < spec.rollout.max_parallel
                        or bool(self._halt_reason())
                    )
                )
                if self._halt_reason():
                    break
                await self._wait_unpaused()
                self._set_tenant(tenant, TenantPhase.DEPLOYING)
                children.deploy(tenant, DeployOrder(wave))
                remaining.remove(tenant)
            await self._wait(lambda: not children.in_flight() or bool(self._abort))
            if self._halt_reason():
                break
        self._wave_state[wave] = "halted" if self._halt_reason() else "done"
        return self._halt_reason()

    async def _finish_rollout(self, halted: str) -> tuple[str, str]:
        spec = self._spec
        assert spec is not None
        children = self._children
        if self._abort is not None:
            for tenant in children.in_flight():
                children.send(tenant, "abort", TenantAbort(self._abort.reason))
        self._stand_down_rest(halted or "release finished")
        await self._wait(lambda: not children.in_flight(), abortable=False)
        compensate = bool(halted) and spec.rollout.on_failure == "rollback_all"
        for tenant in sorted(children.held - set(children.outcomes)):
            children.send(tenant, "finish", Finish(compensate, halted))
        await self._wait(children.all_finished, abortable=False)
        deployed = children.deployed()
        failed = [o.tenant for o in children.failures()]
        # not failures (nothing of ours was changed on them), but the release did not reach them
        left_alone = (
            sorted(children.blocked)
            + children.in_state(TenantPhase.CHANGED_SINCE_BACKUP)
            + children.in_state(TenantPhase.LEFT_OUT)
        )
        if self._abort is not None:
            return Outcome.ABORTED, f"aborted by {self._abort.operator}: {self._abort.reason}"
        if halted:
            outcome = Outcome.PARTIALLY_ROLLED_BACK if deployed else Outcome.ROLLED_BACK
            return outcome, halted
        if failed:
            return Outcome.PARTIALLY_ROLLED_BACK, f"failed and compensated: {', '.join(failed)}"
        if left_alone:
            details = "; ".join(self._tenants[t].detail for t in left_alone)
            return Outcome.FAILED, f"not deployed: {details}"
        return Outcome.COMPLETED, f"{len(deployed)} tenant(s) on {spec.image}"

    async def _await_retrospective_approval(self) -> None:
        spec = self._spec
        assert spec is not None
        self._set_phase(Phase.REPORTING)
        deadline = self.now() + RETROSPECTIVE_WINDOW
        authority = self._authority
        assert authority is not None
        self._retro = ApprovalDesk.retrospective(
            self._policy, authority.requester.identity, authority.digest, deadline, self._record
        )
        retro = self._retro.state
        managers = list(self._policy.approvers.get(RETROSPECTIVE_ROLE, ()))
        await self._notify(
            "approval_requested", "the freeze override needs a retrospective approval", managers
        )
        approved = await self._wait(
            lambda: retro.outcome != "pending", deadline, "retrospective approval", abortable=False
        )
        if not approved:
            self._record(
                "retrospective_overdue",
                {"deadline": deadline.isoformat(), "missing": retro.missing()},
            )
            await self._notify(
                "retrospective_overdue",
                f"the freeze override of {spec.release_id} has no retrospective approval from"
                f" {RETROSPECTIVE_ROLE} by {deadline.isoformat()}",
                managers,
            )

    async def _seal_and_report(
        self, outcome: str, reason: str, problems: list[str]
    ) -> ReleaseResult:
        self._set_phase(Phase.REPORTING)
        self._outcome = outcome
        self._closed = True
        self._link_tenant_bundles()
        # counts only: each tenant's own state is in its link, and its bundle
        states = Counter(s.state for s in self._tenants.values())
        self._record(
            "outcome",
            {
                "outcome": outcome,
                "reason": reason,
                "tenant_states": dict(states),
                "refused_attempts": self._refused_counts(),
            },
        )
        publication = EvidencePublication(self._request.release_id, self._chain.bundle(), outcome)
        published: PublishedEvidence = await self._call(
            Activity.PUBLISH_EVIDENCE, publication, PublishedEvidence
        )
        spec = self._spec
        if spec is not None:
            report = WorkItemReport(
                spec.release_id,
                spec.work_item,
                outcome,
                [a.approver for a in self._desk.state.approvals] if self._desk else [],
                {t: s.state for t, s in self._tenants.items()},
                [o.backup_url for o in self._children.outcomes.values() if o.backup_url],
                published.url,
            )
            try:
                await self._call(Activity.REPORT_TO_WORK_ITEM, report, WorkItemReportResult)
            except ActivityError as err:
                self._last_error = f"reporting to the work item failed: {cause(err)}"
        await self._notify("outcome", f"{self._request.release_id}: {outcome} — {reason}")
        return ReleaseResult(
            self._request.release_id,
            outcome,
            reason,
            {t: s.state for t, s in self._tenants.items()},
            published.url,
            problems,
        )

    # --- children ----------------------------------------------------------------------------

    def _start_child(self, tenant: Tenant, rehearse: bool) -> None:
        spec = self._spec
        assert spec is not None
        order = TenantOrder(
            release_id=spec.release_id,
            parent_id=workflow.info().workflow_id,
            tenant=tenant,
            image=spec.image,
            modules=list(spec.modules),
            migrations=list(self._request.migrations),
            smoke=list(spec.smoke),
            rehearse=rehearse,
            hold_after_deploy=spec.rollout.on_failure == "rollback_all",
            clock_offset_seconds=self._offset.total_seconds(),
        )
        self._set_tenant(tenant.name, TenantPhase.PREPARING)
        self._children.launch(
            order,
            tenant_workflow_id(spec.release_id, tenant.name),
            f"{spec.release_id} on {tenant.name}",
        )

    def _tenant_finished(self, outcome: TenantOutcome) -> None:
        if outcome.tenant not in self._children.blocked:
            self._set_tenant(outcome.tenant, outcome.state, outcome.reason)
        self._unlinked.append(outcome)

    def _link_tenant_bundles(self) -> None:
        """Record where the finished tenants' bundles are and their heads, in few entries:
        one entry per tenant would make a 1,000-tenant release bundle a 470 KB payload."""
        release_id = self._request.release_id
        pending, self._unlinked = self._unlinked, []
        for first in range(0, len(pending), TENANT_LINKS_PER_ENTRY):
            links = []
            for outcome in pending[first : first + TENANT_LINKS_PER_ENTRY]:
                link = {
                    "tenant": outcome.tenant,
                    "head": outcome.evidence_head,
                    "state": outcome.state,
                }
                if outcome.evidence_blob != evidence_blob_name(release_id, outcome.tenant):
                    link["blob_name"] = outcome.evidence_blob
                links.append(link)
            location = evidence_blob_name(release_id, "{tenant}")
            self._record(TENANT_BUNDLES, {"location": location, "bundles": links})

    def _stand_down_rest(self, reason: str) -> None:
        """Tell every tenant not sent to deploy that it will not be: it seals and finishes."""
        for tenant in self._children.undecided():
            self._children.stand_down(tenant, StandDown(reason))

    async def _stand_down_all(self, reason: str) -> None:
        """The release ended early: stand down everyone not deployed and wait for all to seal."""
        self._stand_down_rest(reason)
        await self._wait(self._children.all_finished, abortable=False)

    def _halt_reason(self) -> str:
        """Why no further tenant may start: abort, or failures beyond max_failure_ratio."""
        spec = self._spec
        assert spec is not None
        if self._abort is not None:
            return f"aborted: {self._abort.reason}"
        children = self._children
        failures = children.failures()
        if not failures:
            return ""
        attempted = len(children.deploying)
        # planned: the attempted ones plus the rest of the running wave; once the failures
        # exceed the ratio of that, no later success can bring the release back under it
        running = {t for w, names in self._waves if self._wave_state[w] == "running" for t in names}
        rest = len(running - children.deploying - children.blocked)
        ratio = spec.rollout.max_failure_ratio
        if len(failures) > ratio * (attempted + rest):
            return f"{len(failures)} of {attempted} tenant(s) failed (max_failure_ratio {ratio})"
        return ""

    # --- signals and updates from children -----------------------------------------------

    @workflow.signal
    def tenant_prepared(self, prepared: TenantPrepared) -> None:
        self._children.prepared[prepared.tenant] = prepared
        state = (
            TenantPhase.PREPARED
            if prepared.ok
            else TenantPhase.LEFT_OUT
            if prepared.left_out
            else TenantPhase.PREPARATION_FAILED
        )
        self._set_tenant(prepared.tenant, state, prepared.reason)

    @workflow.signal
    def tenant_report(self, report: TenantReport) -> None:
        if report.state == TenantPhase.DEPLOYED:
            self._children.held.add(report.tenant)
        if report.state == TenantPhase.BACKED_UP:
            self._children.backed_up.add(report.tenant)
            return
        self._set_tenant(report.tenant, report.state, report.detail, report.lock_holder)

    # --- approvals ---------------------------------------------------------------------------
    # Each attempt is a signed statement, verified in the validator: an unsigned, forged,
    # expired or replayed statement, or one by someone the policy does not allow, is refused
    # before it enters history. The handler verifies again (it replays) and counts it.

    @workflow.update
    def approve(self, signed: SignedStatement) -> ApprovalVerdict:
        return self._attempt(signed, approve=True)

    @approve.validator
    def _check_approve(self, signed: SignedStatement) -> None:
        self._eligible(signed, approve=True)

    @workflow.update
    def reject(self, signed: SignedStatement) -> ApprovalVerdict:
        return self._attempt(signed, approve=False)

    @reject.validator
    def _check_reject(self, signed: SignedStatement) -> None:
        self._eligible(signed, approve=False)

    def _attempt_desk(self) -> ApprovalDesk | None:
        """The desk an attempt goes to: the approvals, or the retrospective one after them."""
        desk = self._desk
        if self._retro is not None and desk is not None and desk.state.outcome != "pending":
            return self._retro
        return desk

    def _attempt_kind(self, desk: ApprovalDesk, approve: bool) -> str:
        if not approve:
            return "reject"
        return "retro_approve" if desk is self._retro else "approve"

    def _eligible(self, signed: SignedStatement, approve: bool) -> VerifiedStatement:
        """The verified statement of an attempt the approval rules would accept; ValueError
        naming the reason otherwise (the update is refused, nothing is recorded)."""
        check_text("comment", signed.comment)
        authority = self._open_authority()
        desk = self._attempt_desk()
        if desk is None:
            raise ValueError(f"approvals are not open (phase {self._phase}); try again shortly")
        verified = authority.verify(signed, self._attempt_kind(desk, approve), workflow.now())
        attempt = self._as_attempt(verified, signed, approve)
        state = desk.state
        verdict = (
            state.check_approval(attempt)  # type: ignore[arg-type]
            if approve
            else state.check_rejection(attempt)  # type: ignore[arg-type]
        )
        if not verdict.accepted:
            raise ValueError(f"refused ({verdict.code}): {verdict.message}")
        return verified

    def _as_attempt(
        self, verified: VerifiedStatement, signed: SignedStatement, approve: bool
    ) -> Approval | Rejection:
        authority = self._authority
        assert authority is not None
        kind = Approval if approve else Rejection
        role = verified.statement.role or ""
        return kind(verified.identity, role, authority.digest, self.now(), signed.comment)

    def _attempt(self, signed: SignedStatement, approve: bool) -> ApprovalVerdict:
        authority, desk = self._authority, self._attempt_desk()
        assert authority is not None and desk is not None  # the validator saw to it
        verified = self._accept(signed, self._attempt_kind(desk, approve))
        attempt = self._as_attempt(verified, signed, approve)
        verdict = desk.take(attempt, statement_record(signed, workflow.now()))
        if not verdict.accepted:  # only when two attempts raced in one workflow task
            raise ApplicationError(
                verdict.message, verdict.code, type=APPROVAL_REFUSED, non_retryable=True
            )
        return verdict

    def _open_authority(self) -> ReleaseAuthority:
        if self._closed:
            raise ValueError(f"the release has ended: {self._outcome}")
        if self._authority is None:
            raise ValueError(
                f"the release has not validated its governance yet (phase {self._phase});"
                " try again shortly"
            )
        return self._authority

    # --- operator controls -------------------------------------------------------------------
    # pause, resume, promote, abort, decide, resolve: a signed statement of that kind by a
    # member of an operator role (workflows.operators); the requester never promotes.

    @workflow.update
    def pause(self, signed: SignedStatement) -> str:
        operator = self._operator_accepts(signed, "pause")
        self._paused = True
        self._record("paused", self._operator_record(signed), operator)
        return "paused: no new step starts until resume"

    @pause.validator
    def _check_pause(self, signed: SignedStatement) -> None:
        self._check_operator(signed, "pause")
        if self._paused:
            raise ValueError("the release is already paused")

    @workflow.update
    def resume(self, signed: SignedStatement) -> str:
        operator = self._operator_accepts(signed, "resume")
        self._paused = False
        self._record("resumed", self._operator_record(signed), operator)
        return "resumed"

    @resume.validator
    def _check_resume(self, signed: SignedStatement) -> None:
        self._check_operator(signed, "resume")
        if not self._paused:
            raise ValueError("the release is not paused")

    @workflow.update
    def promote(self, signed: SignedStatement) -> str:
        operator = self._operator_accepts(signed, "promote")
        self._promotions += 1
        self._record("promote", self._operator_record(signed), operator)
        return f"promotion {self._promotions} recorded"

    @promote.validator
    def _check_promote(self, signed: SignedStatement) -> None:
        verified = self._check_operator(signed, "promote")
        waiting = [w for w, state in self._wave_state.items() if state == "awaiting_promotion"]
        if not waiting:
            raise ValueError("no wave is waiting for promotion")
        if verified.statement.wave != waiting[0]:
            raise ValueError(
                f"the statement promotes wave {verified.statement.wave!r}; "
                f"the wave waiting for promotion is {waiting[0]!r}"
            )

    @workflow.update
    def abort(self, signed: SignedStatement) -> str:
        operator = self._operator_accepts(signed, "abort")
        self._abort = OperatorAction(operator, signed.comment)
        self._record("abort", self._operator_record(signed), operator)
        return "aborting: deployed tenants are compensated per on_failure"

    @abort.validator
    def _check_abort(self, signed: SignedStatement) -> None:
        self._check_operator(signed, "abort")
        if not signed.comment:
            raise ValueError("abort needs a reason (the statement's comment)")
        if self._abort is not None:
            raise ValueError("the release is already aborting")

    @workflow.update
    async def decide(self, signed: SignedStatement) -> str:
        verified = self._accepted(signed, "decide")
        operator, statement = verified.identity, verified.statement
        tenant, choice = statement.tenant or "", statement.choice or ""
        self._record(
            "decision",
            {"tenant": tenant, "choice": choice, **self._operator_record(signed)},
            operator,
        )
        decision = TenantDecision(choice, operator, signed.comment)
        await self._children.signal(tenant, "decide", decision)
        return f"{choice} sent to {tenant}"

    @decide.validator
    def _check_decide(self, signed: SignedStatement) -> None:
        statement = self._check_operator(signed, "decide").statement
        state = self._tenants.get(statement.tenant or "")
        if state is None or state.state != TenantPhase.AWAITING_DECISION:
            raise ValueError(f"tenant {statement.tenant!r} is not waiting for a decision")

    @workflow.update
    async def resolve(self, signed: SignedStatement) -> str:
        """Answer for a parked tenant: `retry` its preparation, or `leave_out` of this release."""
        verified = self._accepted(signed, "resolve")
        operator, statement = verified.identity, verified.statement
        tenant, choice = statement.tenant or "", statement.choice or ""
        self._record(
            "parked_resolved",
            {"tenant": tenant, "choice": choice, **self._operator_record(signed)},
            operator,
        )
        # no longer parked from here on (parking again is announced again)
        self._set_tenant(tenant, TenantPhase.PREPARING, f"{choice} requested")
        self._announced_parked.discard(tenant)
        resolution = ParkResolution(choice, operator, signed.comment)
        await self._children.signal(tenant, "resolve_parked", resolution)
        return f"{choice} sent to {tenant}"

    @resolve.validator
    def _check_resolve(self, signed: SignedStatement) -> None:
        statement = self._check_operator(signed, "resolve").statement
        tenant = statement.tenant or ""
        if not self._parked(tenant):
            raise ValueError(f"tenant {tenant!r} is not parked")
        spec = self._spec
        rule = self._policy.risk[spec.risk] if spec else None
        canary = self._waves[0][1][0] if getattr(self, "_waves", None) else ""
        if statement.choice == "leave_out" and rule and rule.rehearse != "all":
            if tenant == canary:
                raise ValueError(
                    f"{canary} is the canary: the release's only rehearsal is its own, so it"
                    " cannot be left out; retry it or abort the release"
                )

    def _check_operator(self, signed: SignedStatement, action: str) -> VerifiedStatement:
        """The verified statement of an operator allowed to `action`; ValueError otherwise."""
        check_text("reason", signed.comment)
        authority = self._open_authority()
        verified = authority.verify(signed, action, workflow.now())
        refusal = operator_refusal(
            self._policy, verified.identity, action, authority.requester.identity
        )
        if refusal:
            raise ValueError(refusal)
        return verified

    def _operator_accepts(self, signed: SignedStatement, action: str) -> str:
        """In the handler: verify again, spend the nonce, and name the operator."""
        return self._accepted(signed, action).identity

    def _accepted(self, signed: SignedStatement, action: str) -> VerifiedStatement:
        return self._accept(signed, action)

    def _accept(self, signed: SignedStatement, kind: str) -> VerifiedStatement:
        """Verify again in the handler (replay reaches the same verdict at the same workflow
        time), spend the nonce, keep the statement for `authorization`. After a reset the
        time is new: an old statement is expired and the update fails, changing nothing."""
        authority = self._authority
        assert authority is not None
        try:
            verified = authority.accept(signed, kind, workflow.now())
        except ValueError as refused:
            raise ApplicationError(
                str(refused), type=APPROVAL_REFUSED, non_retryable=True
            ) from None
        self._statements.append(
            RecordedSignedStatement(
                signed.statement, signed.signature, signed.comment, workflow.now().isoformat()
            )
        )
        return verified

    @staticmethod
    def _operator_record(signed: SignedStatement) -> dict[str, Any]:
        return {"reason": signed.comment, **statement_record(signed, workflow.now())}

    @workflow.query
    def authorization(self) -> Authorization:
        """The signed authority of this release, for workers to re-verify before they change
        a tenant (workers.authority); empty until its governance validated."""
        authority, request = self._authority, self._request
        if authority is None:
            return Authorization(request.release_id, sealed=self._closed)
        return Authorization(
            release_id=request.release_id,
            spec=request.spec,
            governance=request.governance,
            migrations=list(request.migrations),
            statements=list(self._statements),
            sealed=self._closed,
            simulated_start=self._simulated_start,
        )

    @workflow.query
    def status(self) -> ReleaseStatus:
        desk = self._desk
        retro = self._retro
        waves = [
            WaveStatus(
                name, self._wave_state.get(name, "pending"), [self._tenants[t] for t in tenants]
            )
            for name, tenants in getattr(self, "_waves", [])
        ]
        return ReleaseStatus(
            release_id=self._request.release_id,
            phase=self._phase,
            outcome=self._outcome,
            spec_sha256=self._spec.sha256 if self._spec else "",
            digest=self._authority.digest if self._authority else "",
            governance_serial=self._authority.bundle.serial if self._authority else 0,
            risk=self._spec.risk if self._spec else "",
            approvals=(desk.given() if desk else []) + (retro.given() if retro else []),
            missing=(
                retro.state.missing()
                if retro and desk and desk.state.quorum_met
                else desk.state.missing()
                if desk
                else {}
            ),
            refused=(desk.refused() if desk else []) + (retro.refused() if retro else []),
            next_timer=self._next_timer[0],
            next_timer_reason=self._next_timer[1],
            waves=waves,
            paused=self._paused,
            waiting_for_locks={
                t: s.lock_holder
                for t, s in self._tenants.items()
                if s.state == TenantPhase.WAITING_FOR_LOCK
            },
            last_error=self._last_error,
            simulated_start=self._simulated_start,
            refused_counts=self._refused_counts(),
        )

    def _refused_counts(self) -> dict[str, int]:
        """Refused approval attempts per reason code, retrospective ones included."""
        counts: Counter[str] = Counter()
        for desk in (self._desk, self._retro):
            if desk is not None:
                counts.update(desk.refused_counts)
        return dict(sorted(counts.items()))

    # --- small helpers -----------------------------------------------------------------------

    def now(self) -> datetime:
        """The release's clock: workflow time, shifted when `simulated_start` was given."""
        return workflow.now() + self._offset

    @property
    def _override_used(self) -> bool:
        return getattr(self, "_overrode_freeze", False)

    def _check_windows(self, names: list[str], label: str) -> Any:
        spec = self._spec
        assert spec is not None
        tenants = [self._inventory.get(n) for n in names]
        rule = self._policy.risk[spec.risk]
        durations = {t: p.rehearsal_seconds for t, p in self._children.prepared.items()}
        check = check_windows(tenants, self._calendars, self.now(), durations)
        if rule.freeze_override and (check.deferred or check.blocked):
            self._overrode_freeze = True
            self._record("freeze_override", {"wave": label, **check.as_evidence()})
            check.allowed = list(names)
            check.deferred, check.blocked = {}, {}
            return check
        if check.deferred or check.blocked or label == "first wave":
            self._record(
                "calendar", {"wave": label, "at": self.now().isoformat(), **check.as_evidence()}
            )
        for tenant, deferral in check.deferred.items():
            if self._tenants[tenant].state in (
                TenantPhase.PREPARED,
                TenantPhase.PENDING,
                TenantPhase.DEFERRED,
            ):
                self._set_tenant(
                    tenant,
                    TenantPhase.DEFERRED
                    if self._phase == Phase.ROLLING_OUT
                    else self._tenants[tenant].state,
                    f"until {deferral.next_allowed.isoformat()}: {'; '.join(deferral.reasons)}",
                )
        return check

    async def _wait(
        self, condition: Any, until: datetime | None = None, why: str = "", abortable: bool = True
    ) -> bool:
        """Wait for `condition` (or until `until`); False on timeout.

        An abort ends an `abortable` wait before the rollout with `ReleaseEnded`; during the
        rollout it only wakes the wait (the rollout compensates first).
        """
        if until is not None:
            self._next_timer = (until.isoformat(), why)
            workflow.set_current_details(
                f"{self._phase}: waiting for {why} until {until.isoformat()}"
            )
        try:
            timeout = None if until is None else max((until - self.now()).total_seconds(), 0.001)
            await workflow.wait_condition(
                lambda: condition() or (abortable and self._abort is not None), timeout=timeout
            )
            met = True
        except TimeoutError:
            met = False
        finally:
            if until is not None:
                self._next_timer = ("", "")
        if abortable and self._abort is not None and self._phase != Phase.ROLLING_OUT:
            raise ReleaseEnded(
                Outcome.ABORTED, f"aborted by {self._abort.operator}: {self._abort.reason}"
            )
        return met

    async def _wait_unpaused(self) -> None:
        if self._paused:
            workflow.set_current_details(f"{self._phase}: paused")
            await self._wait(lambda: not self._paused)

    def _set_phase(self, phase: str) -> None:
        self._phase = phase
        workflow.set_current_details(f"{self._request.release_id}: {phase}")
        # the time-skipping test server knows no custom search attributes: only upsert
        # when the starter set them (the CLI always does)
        if workflow.info().typed_search_attributes.get(RELEASE_PHASE) is not None:
            workflow.upsert_search_attributes([RELEASE_PHASE.value_set(phase)])

    def _set_tenant(self, tenant: str, state: str, detail: str = "", holder: str = "") -> None:
        if tenant in self._tenants:
            self._tenants[tenant] = TenantState(tenant, state, detail, holder)

    def _record(self, kind: str, data: dict[str, Any], actor: str = "finrelease") -> None:
        self._chain.append(kind, actor, data, self.now().isoformat())

    def _members(self, roles: dict[str, int]) -> list[str]:
        return sorted({m for role in roles for m in self._policy.approvers.get(role, ())})

    async def _call(self, name: str, arg: Any, result_type: type) -> Any:
        return await run_activity(
            name, arg, result_type, self._queues, f"{name} {self._request.release_id}"
        )

    async def _notify(self, kind: str, message: str, needed_from: list[str] | None = None) -> None:
        note = Notification(
            self._request.release_id,
            kind,
            self._phase,
            message,
            needed_from or [],
            self._request.link,
        )
        try:
            await self._call(Activity.NOTIFY, note, NotificationResult)
        except ActivityError as err:  # a failing notification never fails the release
            self._last_error = f"notification {kind} failed: {cause(err)}"


__all__ = ["FinanceRelease", "ErrorType"]
