"""Release context (release id, tenant) carried from client to workflow to activities.

The context lives in a ContextVar; an interceptor writes it into a Temporal header on every
workflow start, child workflow and activity, and reads it back on the other side, so every
log line of a release can be found by its id — in whichever worker process it was written.
Workflow code imports this module through `imports_passed_through()` so the ContextVar is
the one the log processors read.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import temporalio.api.common.v1
from temporalio import activity, client, worker, workflow

HEADER = "finrelease-context"
_CONTEXT: ContextVar[dict[str, str]] = ContextVar("finrelease_context", default={})  # noqa: B039


def current_context() -> dict[str, str]:
    return _CONTEXT.get()


def bind_context(**values: str) -> None:
    """Add release_id / tenant to the context of the running task (and what it starts)."""
    _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in values.items() if v}})


@contextlib.contextmanager
def release_context(**values: str) -> Iterator[None]:
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in values.items() if v}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _encode() -> temporalio.api.common.v1.Payload:
    return temporalio.api.common.v1.Payload(
        metadata={"encoding": b"json/plain"}, data=json.dumps(_CONTEXT.get()).encode()
    )


def _with_header(headers: Mapping[str, temporalio.api.common.v1.Payload]) -> dict[str, Any]:
    if not _CONTEXT.get():
        return dict(headers)
    return {**headers, HEADER: _encode()}


def _decode(headers: Mapping[str, temporalio.api.common.v1.Payload]) -> dict[str, str]:
    payload = headers.get(HEADER)
    if payload is None:
        return {}
    try:
        value = json.loads(payload.data)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _from_input(args: Any) -> dict[str, str]:
    """release_id / tenant read off a workflow's or activity's input (the contracts carry both)."""
    arg = args[0] if args else None
    tenant = getattr(arg, "tenant", None)
    values = {
        "release_id": getattr(arg, "release_id", ""),
        "tenant": getattr(tenant, "name", tenant if isinstance(tenant, str) else ""),
    }
    return {k: v for k, v in values.items() if isinstance(v, str) and v}


class ContextInterceptor(client.Interceptor, worker.Interceptor):
    """Register on the client (outbound starts) and on workers (workflows and activities)."""

    def intercept_client(self, next: client.OutboundInterceptor) -> client.OutboundInterceptor:
        return _ClientOutbound(next)

    def intercept_activity(
        self, next: worker.ActivityInboundInterceptor
    ) -> worker.ActivityInboundInterceptor:
        return _ActivityInbound(next)

    def workflow_interceptor_class(
        self, input: worker.WorkflowInterceptorClassInput
    ) -> type[worker.WorkflowInboundInterceptor]:
        return _WorkflowInbound


class _ClientOutbound(client.OutboundInterceptor):
    async def start_workflow(
        self, input: client.StartWorkflowInput
    ) -> client.WorkflowHandle[Any, Any]:
        input.headers = _with_header(input.headers)
        return await super().start_workflow(input)

    async def signal_workflow(self, input: client.SignalWorkflowInput) -> None:
        input.headers = _with_header(input.headers)
        await super().signal_workflow(input)

    async def start_workflow_update(
        self, input: client.StartWorkflowUpdateInput
    ) -> client.WorkflowUpdateHandle[Any]:
        input.headers = _with_header(input.headers)
        return await super().start_workflow_update(input)


class _ActivityInbound(worker.ActivityInboundInterceptor):
    async def execute_activity(self, input: worker.ExecuteActivityInput) -> Any:
        info = activity.info()
        values = {
            **_from_input(input.args),
            **_decode(input.headers),
            "workflow_id": info.workflow_id or "",
            "activity_id": info.activity_id,
        }
        with release_context(**values):
            return await super().execute_activity(input)


class _WorkflowInbound(worker.WorkflowInboundInterceptor):
    def init(self, outbound: worker.WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutbound(outbound))

    async def execute_workflow(self, input: worker.ExecuteWorkflowInput) -> Any:
        bind_context(
            **{
                **_decode(input.headers),
                **_from_input(input.args),
                "workflow_id": workflow.info().workflow_id,
            }
        )
        return await super().execute_workflow(input)


class _WorkflowOutbound(worker.WorkflowOutboundInterceptor):
    def start_activity(self, input: worker.StartActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = _with_header(input.headers)
        return super().start_activity(input)

    async def start_child_workflow(
        self, input: worker.StartChildWorkflowInput
    ) -> workflow.ChildWorkflowHandle[Any, Any]:
        input.headers = _with_header(input.headers)
        return await super().start_child_workflow(input)

    def start_local_activity(
        self, input: worker.StartLocalActivityInput
    ) -> workflow.ActivityHandle[Any]:
        input.headers = _with_header(input.headers)
        return super().start_local_activity(input)
