"""The release's TenantRollout children: started side by side, signalled without queueing.

A child workflow costs its parent a fixed number of history events (start initiated,
started, completed) plus the workflow tasks that record them. Starting children one
`await` after another, or signalling them that way, makes each of those events wake the
parent on its own; started and signalled together, the events of many children land in one
workflow task. That is what keeps a 1,000-tenant release's history small.

Signals to one child keep their order (each waits for the one before). A child that has
already finished cannot be signalled; that is not an error for the release, which learns
its outcome from the child's completion.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows.failures import cause
    from workflows.tenant import TenantRollout
    from workflows.tenant_messages import (
        FAILED_STATES,
        TenantOrder,
        TenantOutcome,
        TenantPhase,
        TenantPrepared,
    )


class TenantChildren:
    """Who was started, prepared, sent to deploy, held and finished — one set each."""

    def __init__(self, on_outcome: Callable[[TenantOutcome], None]) -> None:
        self._on_outcome = on_outcome
        self._handles: dict[str, workflow.ChildWorkflowHandle[Any, TenantOutcome]] = {}
        self._sending: dict[str, asyncio.Task[None]] = {}
        self.launched: list[str] = []  # in start order
        self.prepared: dict[str, TenantPrepared] = {}
        self.outcomes: dict[str, TenantOutcome] = {}
        self.backed_up: set[str] = set()  # reported before a rehearsal
        self.decided: set[str] = set()  # sent deploy or stand_down: never both
        self.deploying: set[str] = set()  # sent deploy
        self.held: set[str] = set()  # deployed, waiting for finish (rollback_all)
        self.blocked: set[str] = set()  # no window fits: stood down

    # --- starting ---------------------------------------------------------------------

    def launch(self, order: TenantOrder, workflow_id: str, summary: str) -> None:
        """Start the tenant's child in the background; it counts as preparing at once."""
        name = order.tenant.name
        self.launched.append(name)
        asyncio.create_task(self._run(name, order, workflow_id, summary))  # noqa: RUF006

    async def _run(self, name: str, order: TenantOrder, workflow_id: str, summary: str) -> None:
        try:
            handle = await workflow.start_child_workflow(
                TenantRollout.run, order, id=workflow_id, static_summary=summary
            )
            self._handles[name] = handle
            outcome = await handle
        except Exception as err:  # noqa: BLE001 - a broken child must not break the release
            outcome = TenantOutcome(name, TenantPhase.ERROR, cause(err), "", "", "", "", "")
        self.outcomes[name] = outcome
        self.held.discard(name)
        self._on_outcome(outcome)

    # --- signalling -------------------------------------------------------------------

    def send(self, tenant: str, signal: str, payload: Any) -> None:
        """Signal the tenant's child in the background, after any earlier signal to it."""
        previous = self._sending.get(tenant)
        self._sending[tenant] = asyncio.create_task(self._send(tenant, signal, payload, previous))

    async def signal(self, tenant: str, signal: str, payload: Any) -> None:
        """Signal the tenant's child and wait until the server has taken the signal."""
        previous = self._sending.get(tenant)
        await self._send(tenant, signal, payload, previous)

    async def _send(
        self, tenant: str, signal: str, payload: Any, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None:
            await previous
        await workflow.wait_condition(lambda: tenant in self._handles or tenant in self.outcomes)
        if tenant in self.outcomes:
            return
        try:
            await self._handles[tenant].signal(signal, payload)
        except ApplicationError as err:
            # the child finished between our look and the signal: its completion tells all
            workflow.logger.info("%s not sent to %s: %s", signal, tenant, err)

    def deploy(self, tenant: str, order: Any) -> None:
        """Send the tenant to deploy; a tenant is sent to deploy or stood down, never both."""
        self.decided.add(tenant)
        self.deploying.add(tenant)
        self.send(tenant, "deploy", order)

    def stand_down(self, tenant: str, order: Any, blocked: bool = False) -> None:
        """Tell the tenant it will not be deployed (`blocked`: no window fits it)."""
        self.decided.add(tenant)
        if blocked:
            self.blocked.add(tenant)
        self.send(tenant, "stand_down", order)

    def undecided(self) -> list[str]:
        """Started tenants neither sent to deploy nor stood down, still running."""
        return [t for t in self.launched if t not in self.decided and t not in self.outcomes]

    # --- counting ---------------------------------------------------------------------

    def preparing(self) -> int:
        return sum(1 for t in self.launched if t not in self.prepared and t not in self.outcomes)

    def is_backed_up(self, tenant: str) -> bool:
        return tenant in self.backed_up or tenant in self.prepared or tenant in self.outcomes

    def in_flight(self) -> list[str]:
        """Tenants sent to deploy whose deployment has not settled (finished or held)."""
        return [t for t in self.deploying if t not in self.outcomes and t not in self.held]

    def all_finished(self) -> bool:
        return all(t in self.outcomes for t in self.launched)

    def failures(self) -> list[TenantOutcome]:
        return [o for o in self.outcomes.values() if o.state in (*FAILED_STATES, TenantPhase.ERROR)]

    def deployed(self) -> list[str]:
        return self.in_state(TenantPhase.DEPLOYED)

    def in_state(self, state: str) -> list[str]:
        """Finished tenants whose outcome is `state`, in finishing order."""
        return [t for t, o in self.outcomes.items() if o.state == state]
