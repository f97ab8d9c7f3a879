"""Every log line of a release — client, workflow, activity — can be found by its release id."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta

import structlog
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from workers.context import ContextInterceptor, release_context
from workers.logs import configure_logging


def _json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


@activity.defn(name="log_something")
async def log_something(tenant: str) -> str:
    activity.logger.info("activity via temporal logger")
    structlog.get_logger("test").info("activity via structlog", tenant=tenant)
    return tenant


@workflow.defn(name="LoggingWorkflow", sandboxed=False)
class LoggingWorkflow:
    @workflow.run
    async def run(self, tenant: str) -> str:
        workflow.logger.info("workflow step")
        return await workflow.execute_activity(
            log_something, tenant, start_to_close_timeout=timedelta(seconds=30)
        )


async def test_workflow_and_activity_log_lines_carry_the_release_id(
    time_skipping_env: WorkflowEnvironment, task_queue: str
):
    stream = io.StringIO()
    configure_logging(json_output=True, stream=stream)
    release_id = f"FIN-{uuid.uuid4().hex[:6]}"
    config = time_skipping_env.client.config()
    config["interceptors"] = [ContextInterceptor()]
    client = Client(**config)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[LoggingWorkflow],
        activities=[log_something],
        interceptors=[ContextInterceptor()],
    ):
        with release_context(release_id=release_id):
            structlog.get_logger("starter").info("starting release")
            result = await client.execute_workflow(
                LoggingWorkflow.run, "berlin", id=f"release-{release_id}", task_queue=task_queue
            )
    assert result == "berlin"
    lines = _json_lines(stream)
    ours = [
        line
        for line in lines
        if line.get("event")
        in {
            "starting release",
            "workflow step",
            "activity via temporal logger",
            "activity via structlog",
        }
    ]
    assert {line["event"] for line in ours} == {
        "starting release",
        "workflow step",
        "activity via temporal logger",
        "activity via structlog",
    }
    assert all(line.get("release_id") == release_id for line in ours), ours
    activity_lines = [line for line in ours if line["event"].startswith("activity")]
    assert all(line.get("workflow_id") == f"release-{release_id}" for line in activity_lines)
    assert all(line.get("activity_id") for line in activity_lines)


@dataclass
class TenantStep:
    release_id: str
    tenant: str


@activity.defn(name="tenant_step")
async def tenant_step(step: TenantStep) -> str:
    structlog.get_logger("test").info("tenant step")
    return step.tenant


@workflow.defn(name="TenantStepWorkflow", sandboxed=False)
class TenantStepWorkflow:
    @workflow.run
    async def run(self, step: TenantStep) -> str:
        workflow.logger.info("workflow for a tenant")
        return await workflow.execute_activity(
            tenant_step, step, start_to_close_timeout=timedelta(seconds=30)
        )


async def test_release_and_tenant_come_from_the_input_when_no_caller_bound_them(
    time_skipping_env: WorkflowEnvironment, task_queue: str
):
    """A release started by any client (UI, another SDK) still logs its release and tenant."""
    stream = io.StringIO()
    configure_logging(json_output=True, stream=stream)
    release_id = f"FIN-{uuid.uuid4().hex[:6]}"
    async with Worker(
        time_skipping_env.client,
        task_queue=task_queue,
        workflows=[TenantStepWorkflow],
        activities=[tenant_step],
        interceptors=[ContextInterceptor()],
    ):
        await time_skipping_env.client.execute_workflow(
            TenantStepWorkflow.run,
            TenantStep(release_id, "tokyo"),
            id=f"release-{release_id}-tokyo",
            task_queue=task_queue,
        )
    lines = _json_lines(stream)
    ours = [line for line in lines if line.get("event") in {"workflow for a tenant", "tenant step"}]
    assert len(ours) == 2
    assert all(line.get("release_id") == release_id for line in ours), ours
    assert all(line.get("tenant") == "tokyo" for line in ours), ours
