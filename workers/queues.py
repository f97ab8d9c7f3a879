"""One builder per task queue: exactly that queue's workflows or activities, its concurrency.

Each builder checks the credentials its queue needs *before* anything connects, so a worker
started without them exits at once naming the missing variable (`MissingConfiguration`).
Workers hold only their own queue's credentials (see ARCHITECTURE, "Workers and task queues").
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from workers.authority import AuthorityInterceptor, trust_root_of
from workers.context import ContextInterceptor
from workers.failure_routing import FailureRoutingInterceptor
from workers.keepalive import HEARTBEAT_FLUSH, KeepAliveInterceptor
from workers.runtime import queue_name
from workers.sweeper import ScratchSweeper, aliases_in
from workflows.contracts import (
    AZURE_QUEUE,
    DB_QUEUE,
    K8S_QUEUE,
    SMOKE_QUEUE,
    WORKFLOWS_QUEUE,
    Activity,
    ErrorType,
    WorkItemCheck,
    WorkItemInfo,
    WorkItemReport,
    WorkItemReportResult,
)
from workflows.registry import WORKFLOW_RUNNER, WORKFLOWS, TenantLockActivities
from workflows.worker_config import (
    DEMO_CLOCK_VARIABLE,
    TRUST_ROOT_VARIABLE,
    WorkerConfigActivities,
    config_from_environment,
)

log = structlog.get_logger(__name__)

QUEUES = ("workflows", "db", "k8s", "azure", "smoke")
BLOB_VARIABLES = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_URL")
DEVOPS_VARIABLES = ("AZURE_DEVOPS_ORG_URL", "AZURE_DEVOPS_PROJECT", "AZURE_DEVOPS_PAT")
# Default max concurrent activities: dumps and restores are heavy, so db runs two at a time.
DEFAULT_CONCURRENCY = {"db": 2, "k8s": 20, "azure": 20, "smoke": 10}

Closer = Callable[[], Awaitable[Any]]


class MissingConfiguration(Exception):
    """The queue's credentials are not in the environment; the message names the variable."""


Housekeeping = Callable[[asyncio.Event], Coroutine[Any, Any, None]]  # runs until the event is set


@dataclass
class QueueWorker:
    name: str
    worker: Worker
    closers: list[Closer] = field(default_factory=list)  # clients to close after shutdown
    housekeeping: list[Housekeeping] = field(default_factory=list)  # beside the polling


# ---------------------------------------------------------------- environment checks


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in ("1", "true", "yes")


def _require_blob_storage(environ: Mapping[str, str], queue: str) -> None:
    if not any(environ.get(name) for name in BLOB_VARIABLES):
        raise MissingConfiguration(
            f"{queue} worker: set AZURE_STORAGE_CONNECTION_STRING (local) or "
            "AZURE_STORAGE_ACCOUNT_URL (Azure, workload identity) for Blob Storage"
        )


def check_environment(name: str, environ: Mapping[str, str] = os.environ) -> None:
    """Raise MissingConfiguration naming the first variable queue `name` lacks."""
    _check_credentials(name, environ)
    # the workers that decide (workflows) or change a tenant (db, k8s) check signatures
    if name in ("workflows", "db", "k8s") and not environ.get(TRUST_ROOT_VARIABLE):
        raise MissingConfiguration(
            f"{name} worker: set {TRUST_ROOT_VARIABLE} to the trust root file (threshold and"
            " governance administrators' public keys) that governance bundles must satisfy"
        )


def _check_credentials(name: str, environ: Mapping[str, str]) -> None:
    if name == "db":
        if not aliases_in(environ):
            raise MissingConfiguration(
                "db worker: set FINRELEASE_PG_<ALIAS>_DSN for every db_server alias of the "
                "inventory (e.g. FINRELEASE_PG_MAIN_DSN)"
            )
        _require_blob_storage(environ, name)
    elif name == "k8s":
        if not (
            environ.get("FINRELEASE_KUBECONFIG")
            or environ.get("KUBECONFIG")
            or environ.get("KUBERNETES_SERVICE_HOST")
        ):
            raise MissingConfiguration(
                "k8s worker: set FINRELEASE_KUBECONFIG (or KUBECONFIG), or run it in a pod "
                "with its service account (KUBERNETES_SERVICE_HOST)"
            )
    elif name == "azure":
        _require_blob_storage(environ, name)
        if not _flag(environ, "FINRELEASE_DEVOPS_DISABLED"):
            missing = [v for v in DEVOPS_VARIABLES if not environ.get(v)]
            if missing:
                raise MissingConfiguration(
                    f"azure worker: set {', '.join(missing)} (or FINRELEASE_DEVOPS_DISABLED=1, "
                    "which makes every release fail its work item check)"
                )
    elif name not in ("workflows", "smoke"):
        raise MissingConfiguration(f"unknown worker {name!r}: one of {', '.join(QUEUES)}, all")


def _concurrency(name: str, environ: Mapping[str, str]) -> int:
    variable = f"FINRELEASE_{name.upper()}_MAX_ACTIVITIES"
    return int(environ.get(variable) or DEFAULT_CONCURRENCY[name])


def _activity_worker(
    client: Client,
    name: str,
    queue: str,
    activities: list[Any],  # bound @activity.defn methods
    environ: Mapping[str, str],
    prefix: str,
    grace: timedelta,
    guarded: bool = False,
) -> Worker:
    """`guarded`: the worker changes tenants, so it re-verifies each release's signed
    authority with its own trust root before a change (workers/authority.py)."""
    limit = _concurrency(name, environ)
    guard = []
    if guarded:
        try:
            trust_root = trust_root_of(environ)
        except ValueError as error:
            raise MissingConfiguration(f"{name} worker: {error}") from None
        guard = [AuthorityInterceptor(client, trust_root, _flag(environ, DEMO_CLOCK_VARIABLE))]
    return Worker(
        client,
        task_queue=queue_name(queue, prefix),
        activities=activities,
        max_concurrent_activities=limit,
        # every activity today is async; the pool only serves a sync one added later
        activity_executor=ThreadPoolExecutor(max_workers=limit),
        # a long step that reports no progress still heartbeats: see workers/keepalive.py;
        # its own failures go to the workflow's budget: see workers/failure_routing.py
        interceptors=[
            *_worker_interceptors(client),
            KeepAliveInterceptor(),
            FailureRoutingInterceptor(),
            *guard,
        ],
        max_heartbeat_throttle_interval=HEARTBEAT_FLUSH,
        graceful_shutdown_timeout=grace,
    )


def _worker_interceptors(client: Client) -> list[ContextInterceptor]:
    """ContextInterceptor, unless the client already carries it: a client interceptor that is
    also a worker interceptor applies to the client's workers, and twice would wrap twice."""
    if any(isinstance(i, ContextInterceptor) for i in client.config().get("interceptors", [])):
        return []
    return [ContextInterceptor()]


# ---------------------------------------------------------------- one builder per queue


def workflows_worker(
    client: Client,
    environ: Mapping[str, str] = os.environ,
    prefix: str = "",
    grace: timedelta = timedelta(seconds=30),
) -> QueueWorker:
    """FinanceRelease, TenantRollout, TenantLock, the lock's two activities and the
    worker's configuration (routing under `prefix`, demo clock) served to the workflows."""
    check_environment("workflows", environ)
    lock = TenantLockActivities(client)
    try:
        config = config_from_environment(environ, prefix)
    except ValueError as error:
        raise MissingConfiguration(f"workflows worker: {error}") from None
    if config.demo_clock:
        log.warning("demo clock: releases may set simulated_start", variable=DEMO_CLOCK_VARIABLE)
    worker = Worker(
        client,
        task_queue=queue_name(WORKFLOWS_QUEUE, prefix),
        workflows=WORKFLOWS,
        workflow_runner=WORKFLOW_RUNNER,
        activities=[*lock.activities(), *WorkerConfigActivities(config).activities()],
        interceptors=_worker_interceptors(client),
        graceful_shutdown_timeout=grace,
    )
    return QueueWorker("workflows", worker)


def db_worker(
    client: Client,
    environ: Mapping[str, str] = os.environ,
    prefix: str = "",
    grace: timedelta = timedelta(seconds=30),
) -> QueueWorker:
    """Backup, verification, finance snapshot, rehearsal, migration, restore."""
    check_environment("db", environ)
    from activities.azure_storage import blob_service_from_environment
    from activities.postgres import PostgresActivities

    blobs = blob_service_from_environment()
    pg = PostgresActivities.from_environment(blobs)
    activities = [
        pg.backup_database,
        pg.verify_backup,
        pg.finance_snapshot,
        pg.check_modules,
        pg.rehearse_migration,
        pg.migrate_database,
        pg.entries_since_backup,
        pg.restore_database,
        pg.close_database,
        pg.take_restore_point,
        pg.swap_to_restore_point,
        pg.reopen_database,
        pg.drop_restore_point,
        pg.take_write_watermark,
        pg.writes_since_reopen,
    ]
    worker = _activity_worker(
        client, "db", DB_QUEUE, activities, environ, prefix, grace, guarded=True
    )
    try:
        sweeper = ScratchSweeper.from_environment(pg, environ)
    except ValueError as error:
        raise MissingConfiguration(f"db worker: {error}") from None
    return QueueWorker("db", worker, [blobs.close], [sweeper.run])


def k8s_worker(
    client: Client,
    environ: Mapping[str, str] = os.environ,
    prefix: str = "",
    grace: timedelta = timedelta(seconds=30),
) -> QueueWorker:
    """Running state, maintenance, module update job, image, rollout wait, state restore."""
    check_environment("k8s", environ)
    from activities.kubernetes import KubernetesActivities

    kube = KubernetesActivities.from_environment(environ)
    activities = [
        kube.read_running_state,
        kube.set_maintenance,
        kube.run_module_update,
        kube.set_image,
        kube.wait_for_rollout,
        kube.restore_running_state,
    ]
    worker = _activity_worker(
        client, "k8s", K8S_QUEUE, activities, environ, prefix, grace, guarded=True
    )
    return QueueWorker("k8s", worker)


def azure_worker(
    client: Client,
    environ: Mapping[str, str] = os.environ,
    prefix: str = "",
    grace: timedelta = timedelta(seconds=30),
) -> QueueWorker:
    """Filestore copy, evidence, Azure DevOps, observability gate, notifications."""
    check_environment("azure", environ)
    from activities.azure_storage import blob_service_from_environment
    from activities.blob import BlobActivities
    from activities.evidence import EvidenceActivities
    from activities.notify import NotifyActivities, NotifySettings
    from activities.observe import (
        ObservabilityActivities,
        ObservabilitySettings,
        azure_identity_token_provider,
    )

    blobs = blob_service_from_environment()
    observe_settings = ObservabilitySettings.from_environment(environ)
    observe = ObservabilityActivities(
        observe_settings,
        token_provider=azure_identity_token_provider()
        if observe_settings.subscription_id
        else None,
    )
    notify = NotifyActivities(NotifySettings.from_environment(environ))
    work_items: Any = _work_item_activities(environ)
    activities = [
        BlobActivities(blobs).backup_filestore,
        EvidenceActivities(blobs).publish_evidence,
        observe.check_observability,
        notify.notify,
        work_items.validate_work_item,
        work_items.report_to_work_item,
    ]
    worker = _activity_worker(client, "azure", AZURE_QUEUE, activities, environ, prefix, grace)
    closers: list[Closer] = [blobs.close, observe.client.aclose, notify.client.aclose]
    if hasattr(work_items, "client"):
        closers.append(work_items.client.aclose)
    return QueueWorker("azure", worker, closers)


def smoke_worker(
    client: Client,
    environ: Mapping[str, str] = os.environ,
    prefix: str = "",
    grace: timedelta = timedelta(seconds=30),
) -> QueueWorker:
    """HTTP smoke checks; each tenant's smoke user is read when its check runs."""
    check_environment("smoke", environ)
    from activities.smoke import SmokeActivities

    smoke = SmokeActivities(environ=environ)
    worker = _activity_worker(
        client,
        "smoke",
        SMOKE_QUEUE,
        [smoke.run_smoke_checks, smoke.check_smoke_user],
        environ,
        prefix,
        grace,
    )
    return QueueWorker("smoke", worker)


BUILDERS: dict[str, Callable[..., QueueWorker]] = {
    "workflows": workflows_worker,
    "db": db_worker,
    "k8s": k8s_worker,
    "azure": azure_worker,
    "smoke": smoke_worker,
}


# ---------------------------------------------------------------- Azure DevOps switched off


def _work_item_activities(environ: Mapping[str, str]) -> Any:
    if _flag(environ, "FINRELEASE_DEVOPS_DISABLED"):
        return WorkItemsDisabled()
    from activities.devops import DevOpsActivities, DevOpsSettings

    return DevOpsActivities(DevOpsSettings.from_environment(environ))


class WorkItemsDisabled:
    """Stands in when FINRELEASE_DEVOPS_DISABLED is set: no work item, so no release.

    Skipping the check would let a release run without its change request; refusing it
    clearly keeps the control and tells the operator which switch did it.
    """

    REASON = "Azure DevOps is disabled on this azure worker (FINRELEASE_DEVOPS_DISABLED)"

    @activity.defn(name=Activity.VALIDATE_WORK_ITEM)
    async def validate_work_item(self, check: WorkItemCheck) -> WorkItemInfo:
        raise ApplicationError(
            f"work item {check.work_item}: {self.REASON}",
            type=ErrorType.CONFIGURATION_MISSING,
            non_retryable=True,
        )

    @activity.defn(name=Activity.REPORT_TO_WORK_ITEM)
    async def report_to_work_item(self, report: WorkItemReport) -> WorkItemReportResult:
        raise ApplicationError(
            f"work item {report.work_item}: {self.REASON}",
            type=ErrorType.CONFIGURATION_MISSING,
            non_retryable=True,
        )
