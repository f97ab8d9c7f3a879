"""Per-tenant mutex: two releases never change one tenant at once.

`TenantLock` (id `tenant-lock-<tenant>`) grants the lock to one owner workflow at a time,
in request order. A workflow cannot signal-with-start another workflow, so owners request
the lock through the `request_tenant_lock` activity (signal-with-start, idempotent: a
repeated request from the same owner is ignored). The lock signals the owner
`lock_granted`, or `lock_queued` naming the holder; the owner signals `release` when done.
The lock workflow completes when nobody holds or waits for it (a request arriving at that
moment makes the server retry the completion with the new signal, so none is lost).

A holder that ends without releasing (terminated, reset, a bug) would keep the tenant locked
for ever. So while someone waits, the lock asks every `HOLDER_CHECK` whether the holder still
runs (`tenant_lock_holder_running`) and passes the lock on when it does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

with workflow.unsafe.imports_passed_through():
    from workflows.contracts import ErrorType
    from workflows.policies import LOCK_HOLDER_RUNNING, REQUEST_TENANT_LOCK, run_local_activity


HOLDER_CHECK = timedelta(minutes=10)


def lock_workflow_id(tenant: str) -> str:
    return f"tenant-lock-{tenant}"


@dataclass
class LockRequest:
    tenant: str
    owner: str  # workflow id of the requester
    release_id: str
    task_queue: str = ""  # where the lock workflow runs (the workflows queue)


@dataclass
class LockRelease:
    owner: str


@dataclass
class LockGrant:
    tenant: str


@dataclass
class LockQueued:
    tenant: str
    holder: str  # workflow id of the current holder
    holder_release: str


@dataclass
class LockState:
    tenant: str
    waiting: list[LockRequest] = field(default_factory=list)


@dataclass
class HolderCheck:
    tenant: str
    owner: str  # workflow id of the holder


@dataclass
class LockHolder:
    owner: str
    release_id: str
    waiting: list[str]


@workflow.defn
class TenantLock:
    """Grants one tenant's lock to one release's workflow at a time, first come first served."""

    def __init__(self) -> None:
        self._waiting: list[LockRequest] = []
        self._holder: LockRequest | None = None

    @workflow.run
    async def run(self, state: LockState) -> None:
        self._waiting = list(state.waiting) + self._waiting
        # signal-with-start always brings a request, but its handler may run after this line
        await workflow.wait_condition(lambda: bool(self._waiting))
        while self._waiting:
            self._holder = self._waiting.pop(0)
            await self._tell(self._holder.owner, "lock_granted", LockGrant(state.tenant))
            await self._until_released(state.tenant)
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(LockState(state.tenant, self._waiting))
        await workflow.wait_condition(workflow.all_handlers_finished)

    @workflow.signal
    async def request(self, request: LockRequest) -> None:
        if any(r.owner == request.owner for r in self._waiting):
            return
        if self._holder is not None and self._holder.owner == request.owner:
            # a retried request from the holder: it may have missed the grant
            await self._tell(request.owner, "lock_granted", LockGrant(request.tenant))
            return
        self._waiting.append(request)
        if self._holder is not None:
            queued = LockQueued(request.tenant, self._holder.owner, self._holder.release_id)
            await self._tell(request.owner, "lock_queued", queued)

    @workflow.signal
    def release(self, release: LockRelease) -> None:
        if self._holder is not None and self._holder.owner == release.owner:
            self._holder = None
        else:
            # a release from a waiter withdraws its request
            self._waiting = [r for r in self._waiting if r.owner != release.owner]

    @workflow.query
    def holder(self) -> LockHolder | None:
        if self._holder is None:
            return None
        return LockHolder(
            self._holder.owner, self._holder.release_id, [r.owner for r in self._waiting]
        )

    async def _until_released(self, tenant: str) -> None:
        """Wait for the holder's release; while others wait, check the holder still runs."""
        while self._holder is not None:
            await workflow.wait_condition(lambda: self._holder is None or bool(self._waiting))
            try:
                await workflow.wait_condition(lambda: self._holder is None, timeout=HOLDER_CHECK)
            except TimeoutError:
                holder = self._holder
                if holder is not None and not await self._running(tenant, holder.owner):
                    workflow.logger.warning(
                        "lock of %s: holder %s ended without releasing; passing it on",
                        tenant,
                        holder.owner,
                    )
                    self._holder = None

    async def _running(self, tenant: str, owner: str) -> bool:
        check = HolderCheck(tenant, owner)
        summary = f"is {owner} still running?"
        return await run_local_activity(LOCK_HOLDER_RUNNING, check, summary, bool)

    async def _tell(self, owner: str, signal: str, payload: object) -> None:
        try:
            await workflow.get_external_workflow_handle(owner).signal(signal, payload)
        except Exception:  # noqa: BLE001 - the owner is gone: it can neither hold nor wait
            workflow.logger.warning("lock owner %s is gone; skipping it", owner)
            if self._holder is not None and self._holder.owner == owner:
                self._holder = None


class TenantLockActivities:
    """What the lock needs a client for: signal-with-start, and asking whether a holder runs."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def activities(self) -> list:
        """Register these on the workflows queue, beside the workflows."""
        return [self.request_tenant_lock, self.tenant_lock_holder_running]

    @activity.defn(name=LOCK_HOLDER_RUNNING)
    async def tenant_lock_holder_running(self, check: HolderCheck) -> bool:
        """False when the holder's workflow has closed (or never existed)."""
        try:
            description = await self._client.get_workflow_handle(check.owner).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status == WorkflowExecutionStatus.RUNNING

    @activity.defn(name=REQUEST_TENANT_LOCK)
    async def request_tenant_lock(self, request: LockRequest) -> None:
        if not request.task_queue:
            raise ApplicationError(
                "request_tenant_lock: task_queue is empty",
                type=ErrorType.CONFIGURATION_MISSING,
                non_retryable=True,
            )
        await self._client.start_workflow(
            TenantLock.run,
            LockState(request.tenant),
            id=lock_workflow_id(request.tenant),
            task_queue=request.task_queue,
            start_signal="request",
            start_signal_args=[request],
        )
