"""The `finrelease-k8s` activities: read, change, watch and restore a tenant's Odoo Deployments.

`KubernetesActivities` holds one `kubernetes.client.ApiClient`, built by the worker from its
own configuration (`from_environment`) and by the tests against the API double.

Why async activities with `asyncio.to_thread` around the official (synchronous) client: the
waits (`wait_for_rollout`, the module update Job) spend nearly all their time sleeping
between polls; as coroutines they sleep on the event loop, heartbeat from it and receive
Temporal's cancellation at the next `await`, and only the short HTTP calls occupy a thread of
the worker's default executor. Every call carries `_request_timeout`, so a hung API server
fails a poll instead of stalling the activity past its heartbeat timeout.

Maintenance switch: `set_maintenance` scales *every* Deployment of the tenant (web, worker,
cron) to zero replicas (enabled) and back to the replicas recorded in the running state the
workflow read before (disabled). Odoo's module update must not run beside old-code workers
and crons (they would keep writing and then serve a registry built for code they lack), and
scaling works on every cluster without an ingress controller or maintenance page to keep in
sync. The replicas to return to live in workflow history, not on the cluster, so a retried
"enable" that finds zeros never forgets them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from kubernetes import client, config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from governance.inventory import Tenant
from workflows.contracts import (
    Activity,
    DeploymentState,
    ErrorType,
    ImageChange,
    ImageChangeResult,
    MaintenanceRequest,
    ModuleUpdateRequest,
    ModuleUpdateResult,
    RolloutStatus,
    RolloutWait,
    RunningState,
    StateRestore,
    TenantTask,
)

RELEASE_ANNOTATION = "finrelease/release-id"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
JOB_PREFIX = "finrelease-update"
LOG_TAIL_LINES = 40
# pod-level settings the module update Job copies from the web Deployment, so it reaches the
# database with the tenant's own configuration and secrets (never passed through Temporal)
POD_SETTINGS = (
    "volumes",
    "imagePullSecrets",
    "serviceAccountName",
    "securityContext",
    "nodeSelector",
    "tolerations",
    "affinity",
)
CONTAINER_SETTINGS = (
    "env",
    "envFrom",
    "volumeMounts",
    "resources",
    "securityContext",
    "workingDir",
)

# Waiting reasons of a container whose image will not come: ErrImagePull alone may be a
# registry hiccup the kubelet retries, ImagePullBackOff means it already failed and backs off.
UNPULLABLE = ("ImagePullBackOff", "InvalidImageName")

log = structlog.get_logger(__name__)


class KubernetesActivities:
    """Activities of the `finrelease-k8s` task queue, sharing one API client."""

    def __init__(
        self,
        api_client: ApiClient,
        *,
        request_timeout: float = 15.0,
        poll_seconds: float = 2.0,
        job_ttl_seconds: int = 7 * 24 * 3600,
        module_update_deadline_seconds: int = 4 * 3600,
    ) -> None:
        self._api_client = api_client
        self._apps = client.AppsV1Api(api_client)
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._request_timeout = request_timeout
        self._poll_seconds = poll_seconds
        self._job_ttl_seconds = job_ttl_seconds
        if module_update_deadline_seconds <= 0:
            raise ValueError(
                "module_update_deadline_seconds: expected a positive number of seconds, "
                f"got {module_update_deadline_seconds}"
            )
        self._update_deadline_seconds = module_update_deadline_seconds

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> KubernetesActivities:
        """`FINRELEASE_KUBECONFIG` (else `KUBECONFIG`) with optional `FINRELEASE_KUBE_CONTEXT`;
        without a kubeconfig, inside a pod, the service account (in-cluster config)."""
        env = os.environ if environ is None else environ
        kubeconfig = env.get("FINRELEASE_KUBECONFIG") or env.get("KUBECONFIG")
        context = env.get("FINRELEASE_KUBE_CONTEXT") or None
        timeout = float(env.get("FINRELEASE_K8S_REQUEST_TIMEOUT", "15"))
        if kubeconfig:
            api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
        elif env.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            api_client = ApiClient(configuration)
        else:
            raise ApplicationError(
                "no Kubernetes configuration: set FINRELEASE_KUBECONFIG (or KUBECONFIG) or run the "
                "k8s worker in a pod with its service account",
                type=ErrorType.CONFIGURATION_MISSING,
                non_retryable=True,
            )
        return cls(api_client, request_timeout=timeout)

    # ------------------------------------------------------------- activities

    @activity.defn(name=Activity.READ_RUNNING_STATE)
    async def read_running_state(self, task: TenantTask) -> RunningState:
        """Images, replicas, revision and release annotation of every Deployment of the tenant."""
        states = []
        for role, name in task.tenant.deployments.items():
            deployment = await self._read_deployment(task.tenant, name)
            states.append(_running_state(role, deployment))
        return RunningState(tenant=task.tenant.name, deployments=states)

    @activity.defn(name=Activity.SET_MAINTENANCE)
    async def set_maintenance(self, request: MaintenanceRequest) -> RolloutStatus:
        """Scale every Deployment of the tenant (web, worker, cron) to 0 (enabled) or back to
        the replicas in `request.state` (disabled), then wait until that is what runs.

        Every Deployment is read before any is patched: a missing one (or one the worker may
        not read) fails the step with nothing scaled, so a tenant is never half in maintenance.
        """
        tenant = request.tenant
        recorded = {d.name: d.replicas for d in request.state.deployments}
        unknown = sorted(set(tenant.deployments.values()) - set(recorded))
        if not request.enabled and unknown:
            raise _configuration_missing(
                f"tenant {tenant.name}: the recorded running state has no deployment "
                f"{', '.join(unknown)}, so the replicas to return to are unknown"
            )
        current = {
            name: await self._read_deployment(tenant, name) for name in tenant.deployments.values()
        }
        for name, deployment in current.items():
            replicas = 0 if request.enabled else recorded[name]
            if deployment["spec"].get("replicas", 1) != replicas:
                await self._patch_deployment(tenant, name, {"spec": {"replicas": replicas}})
        _logger(request.release_id, tenant).info(
            "maintenance", enabled=request.enabled, deployments=sorted(current)
        )
        return await self._wait_for(
            request.release_id, tenant, tenant.deployments, self._poll_seconds
        )

    @activity.defn(name=Activity.SET_IMAGE)
    async def set_image(self, change: ImageChange) -> ImageChangeResult:
        """Point the Odoo container of every Deployment at `change.image` (sidecars untouched)."""
        tenant, changed, unchanged = change.tenant, [], []
        for name in tenant.deployments.values():
            deployment = await self._read_deployment(tenant, name)
            images = _images(deployment)
            if tenant.container not in images:
                raise _configuration_missing(
                    f"deployment {tenant.namespace}/{name} of tenant {tenant.name} has no "
                    f"container {tenant.container!r} (it has {sorted(images)}); "
                    "fix `container` in the inventory"
                )
            if (
                images[tenant.container] == change.image
                and _release_of(deployment) == change.release_id
            ):
                unchanged.append(name)  # a retry after success: no new generation
                continue
            patch = _template_patch({tenant.container: change.image}, change.release_id)
            await self._patch_deployment(tenant, name, patch)
            changed.append(name)
        _logger(change.release_id, tenant).info("image set", image=change.image, changed=changed)
        return ImageChangeResult(tenant=tenant.name, changed=changed, unchanged=unchanged)

    @activity.defn(name=Activity.WAIT_FOR_ROLLOUT)
    async def wait_for_rollout(self, wait: RolloutWait) -> RolloutStatus:
        """`kubectl rollout status` for every Deployment; bounded by the activity's timeout."""
        return await self._wait_for(
            wait.release_id, wait.tenant, wait.tenant.deployments, wait.poll_seconds
        )

    @activity.defn(name=Activity.RUN_MODULE_UPDATE)
    async def run_module_update(self, request: ModuleUpdateRequest) -> ModuleUpdateResult:
        """Run the Odoo module update as a Job (adopted on retry) and wait for it to finish."""
        tenant = request.tenant
        name = module_update_job_name(request.release_id, tenant.name)
        web = tenant.deployments.get("web") or next(iter(tenant.deployments.values()), "")
        template = (await self._read_deployment(tenant, web))["spec"]["template"]
        body = self._module_update_job(name, request, template)
        created = await self._call(
            f"create Job {tenant.namespace}/{name}",
            self._batch.create_namespaced_job,
            tenant.namespace,
            body,
            tolerate=409,
        )
        if created is None:  # AlreadyExists: an earlier attempt of this activity created it
            existing = await self._read_job(tenant, name)
            image = existing["spec"]["template"]["spec"]["containers"][0]["image"]
            if image != request.image:
                raise ApplicationError(
                    f"module update Job {tenant.namespace}/{name} of tenant {tenant.name} "
                    "already exists "
                    f"with image {image}, not {request.image}; delete it to run the update again",
                    type=ErrorType.MODULE_UPDATE_FAILED,
                    non_retryable=True,
                )
            _logger(request.release_id, tenant).info("module update job adopted", job=name)
        return await self._wait_for_job(request.release_id, tenant, name)

    @activity.defn(name=Activity.RESTORE_RUNNING_STATE)
    async def restore_running_state(self, restore: StateRestore) -> RolloutStatus:
        """Re-apply the recorded images, replicas and release annotation, then wait."""
        tenant = restore.tenant
        for recorded in restore.state.deployments:
            deployment = await self._read_deployment(tenant, recorded.name)
            images = _images(deployment)
            missing = sorted(set(recorded.images) - set(images))
            if missing:
                raise _configuration_missing(
                    f"deployment {tenant.namespace}/{recorded.name} of tenant {tenant.name} "
                    "no longer "
                    f"has the recorded containers {missing}; restore it by hand"
                )
            if _running_state(recorded.role, deployment).images == recorded.images and (
                _release_of(deployment) == recorded.release_annotation
                and deployment["spec"].get("replicas", 1) == recorded.replicas
            ):
                continue
            patch = _template_patch(recorded.images, recorded.release_annotation or None)
            patch["spec"]["replicas"] = recorded.replicas
            await self._patch_deployment(tenant, recorded.name, patch)
        _logger(restore.release_id, tenant).info("running state restored")
        names = {d.role: d.name for d in restore.state.deployments}
        return await self._wait_for(restore.release_id, tenant, names, self._poll_seconds)

    # ---------------------------------------------------------------- waiting

    async def _wait_for(
        self, release_id: str, tenant: Tenant, deployments: Mapping[str, str], poll_seconds: float
    ) -> RolloutStatus:
        pending = dict(deployments)
        polls = 0
        while True:
            polls += 1
            waiting = {}
            for role, name in list(pending.items()):
                deployment = await self._read_deployment(tenant, name)
                progress = rollout_progress(deployment, tenant)
                if progress is None:
                    del pending[role]
                else:
                    waiting[name] = progress
            activity.heartbeat({"poll": polls, "waiting": waiting})
            if not pending:
                ready = [name for name in deployments.values()]
                _logger(release_id, tenant).info("rolled out", deployments=ready, polls=polls)
                return RolloutStatus(tenant=tenant.name, ready=ready)
            await asyncio.sleep(poll_seconds)

    async def _wait_for_job(self, release_id: str, tenant: Tenant, name: str) -> ModuleUpdateResult:
        polls = 0
        while True:
            polls += 1
            job = await self._read_job(tenant, name)
            finished = {
                c["type"]: c
                for c in job["status"].get("conditions", [])
                if c.get("status") == "True"
            }
            activity.heartbeat(
                {"poll": polls, "job": name, "active": job["status"].get("active", 0)}
            )
            if not finished:
                await self._refuse_unpullable_image(tenant, name)
            if "Complete" in finished:
                tail = await self._log_tail(tenant, name)
                _logger(release_id, tenant).info("module update succeeded", job=name)
                return ModuleUpdateResult(
                    tenant=tenant.name, job_name=name, succeeded=True, log_tail=tail
                )
            if "Failed" in finished:
                tail = await self._log_tail(tenant, name)
                condition = finished["Failed"]
                raise ApplicationError(
                    f"module update Job {tenant.namespace}/{name} of tenant {tenant.name} failed "
                    f"({condition.get('reason')}: {condition.get('message')}); "
                    f"last log lines:\n{tail}",
                    {"job": name, "log_tail": tail},
                    type=ErrorType.MODULE_UPDATE_FAILED,
                    non_retryable=True,
                )
            await asyncio.sleep(self._poll_seconds)

    async def _refuse_unpullable_image(self, tenant: Tenant, job: str) -> None:
        """A pod that cannot get its image would wait for the Job's whole deadline: fail now."""
        pods = await self._call(
            f"list pods of Job {tenant.namespace}/{job}",
            self._core.list_namespaced_pod,
            tenant.namespace,
            label_selector=f"job-name={job}",
        )
        for pod in pods.get("items") or []:
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (status.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in UNPULLABLE:
                    raise ApplicationError(
                        f"module update Job {tenant.namespace}/{job} of tenant {tenant.name} "
                        f"cannot start: image {status.get('image')} {waiting['reason']} "
                        f"({waiting.get('message', '')}); check the image name and the "
                        "registry credentials (imagePullSecrets)",
                        type=ErrorType.MODULE_UPDATE_FAILED,
                        non_retryable=True,
                    )

    async def _log_tail(self, tenant: Tenant, job: str) -> str:
        pods = await self._call(
            f"list pods of Job {tenant.namespace}/{job}",
            self._core.list_namespaced_pod,
            tenant.namespace,
            label_selector=f"job-name={job}",
        )
        items = sorted(
            pods.get("items") or [], key=lambda pod: pod["metadata"]["creationTimestamp"]
        )
        if not items:
            return "(the Job has no pod left to read a log from)"
        pod = items[-1]["metadata"]["name"]
        return await self._call(
            f"read log of pod {tenant.namespace}/{pod}",
            self._core.read_namespaced_pod_log,
            pod,
            tenant.namespace,
            container=tenant.container,
            tail_lines=LOG_TAIL_LINES,
        )

    # ------------------------------------------------------------- API calls

    def _module_update_job(
        self, name: str, request: ModuleUpdateRequest, template: dict[str, Any]
    ) -> dict[str, Any]:
        tenant = request.tenant
        pod_spec = template.get("spec", {})
        source: dict[str, Any] = next(
            (c for c in pod_spec.get("containers", []) if c["name"] == tenant.container), {}
        )
        container = {key: source[key] for key in CONTAINER_SETTINGS if key in source}
        # No `command`: the image's entrypoint runs first and, on the official image
        # (odoo/docker 18.0/entrypoint.sh), turns `odoo ...` arguments into `exec odoo ...`
        # with the database settings of the Deployment's env/ODOO_RC and waits for
        # PostgreSQL (wait-for-psql.py). Overriding `command` would skip all of that.
        container.update(
            name=tenant.container,
            image=request.image,
            args=update_command(tenant, request.modules),
        )
        labels = {
            "app.kubernetes.io/managed-by": "finrelease",
            "app.kubernetes.io/component": "module-update",
        }
        annotations = {RELEASE_ANNOTATION: request.release_id, "finrelease/tenant": tenant.name}
        spec = {key: pod_spec[key] for key in POD_SETTINGS if key in pod_spec}
        spec.update(restartPolicy="Never", containers=[container])
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {
                "backoffLimit": 0,  # a failed module update is for a human, never retried blindly
                # a hung update (a lock wait, an endless migration) fails instead of blocking
                "activeDeadlineSeconds": self._update_deadline_seconds,
                "ttlSecondsAfterFinished": self._job_ttl_seconds,
                "template": {
                    "metadata": {"labels": labels, "annotations": annotations},
                    "spec": spec,
                },
            },
        }

    async def _read_deployment(self, tenant: Tenant, name: str) -> dict[str, Any]:
        return await self._call(
            f"read deployment {tenant.namespace}/{name} of tenant {tenant.name}",
            self._apps.read_namespaced_deployment,
            name,
            tenant.namespace,
        )

    async def _read_job(self, tenant: Tenant, name: str) -> dict[str, Any]:
        return await self._call(
            f"read Job {tenant.namespace}/{name} of tenant {tenant.name}",
            self._batch.read_namespaced_job,
            name,
            tenant.namespace,
        )

    async def _patch_deployment(self, tenant: Tenant, name: str, patch: dict[str, Any]) -> None:
        # the client's default PATCH content type is JSON patch: ask for a strategic merge
        await self._call(
            f"patch deployment {tenant.namespace}/{name} of tenant {tenant.name}",
            self._apps.patch_namespaced_deployment,
            name,
            tenant.namespace,
            patch,
            _content_type=STRATEGIC_MERGE,
        )

    async def _call(
        self,
        what: str,
        method: Callable[..., Any],
        *args: Any,
        tolerate: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run one client call in a worker thread; answers come back as plain API dicts
        (camelCase, as the API server sends them). Status `tolerate` returns None."""
        try:
            answer = await asyncio.to_thread(
                method, *args, _request_timeout=self._request_timeout, **kwargs
            )
        except ApiException as error:
            if error.status == tolerate:
                return None
            raise _api_error(what, error) from None
        if answer is None or isinstance(answer, str):  # pod logs are plain text
            return answer
        return self._api_client.sanitize_for_serialization(answer)


# ------------------------------------------------------------------ pure helpers


def module_update_job_name(release_id: str, tenant: str) -> str:
    """`finrelease-update-<release>-<tenant>` as a DNS-1123 label: lower case, at most 63
    characters; when that loses information (too long, or characters replaced) a hash of the
    exact release id and tenant is appended, so distinct releases never share a Job."""
    readable = re.sub(r"[^a-z0-9-]+", "-", f"{JOB_PREFIX}-{release_id}-{tenant}".lower()).strip("-")
    readable = re.sub(r"-{2,}", "-", readable)
    exact = readable == f"{JOB_PREFIX}-{release_id}-{tenant}"
    if exact and len(readable) <= 63:
        return readable
    digest = hashlib.sha256(f"{release_id}\n{tenant}".encode()).hexdigest()[:10]
    return f"{readable[: 63 - len(digest) - 1].rstrip('-')}-{digest}"


def update_command(tenant: Tenant, modules: list[str]) -> list[str]:
    """The Job container's `args` (the image's entrypoint stays): the inventory's
    `update_command` (placeholders `{database}`, `{modules}`), else
    `odoo -u <modules> -d <db> --stop-after-init`."""
    joined = ",".join(modules)
    if tenant.update_command:
        return [
            part.format(database=tenant.database, modules=joined) for part in tenant.update_command
        ]
    return ["odoo", "-u", joined, "-d", tenant.database, "--stop-after-init"]


def rollout_progress(deployment: dict[str, Any], tenant: Tenant) -> str | None:
    """None when the rollout is complete (kubectl's rules), else what it is waiting for;
    raises the non-retryable `RolloutStuck` on `ProgressDeadlineExceeded`."""
    meta, spec, status = deployment["metadata"], deployment["spec"], deployment.get("status") or {}
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return f"waiting for the controller to observe generation {meta.get('generation')}"
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "Progressing"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            raise ApplicationError(
                f"rollout of deployment {tenant.namespace}/{meta['name']} of tenant "
                f"{tenant.name} is "
                f"stuck: {condition.get('message')}",
                {"deployment": meta["name"], "condition": condition.get("message")},
                type=ErrorType.ROLLOUT_STUCK,
                non_retryable=True,
            )
    wanted = spec.get("replicas", 1)
    updated, total = status.get("updatedReplicas", 0), status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted:
        return f"{updated} of {wanted} new replicas updated"
    if total > updated:
        return f"{total - updated} old replicas pending termination"
    if available < updated:
        return f"{available} of {updated} updated replicas available"
    return None


def _running_state(role: str, deployment: dict[str, Any]) -> DeploymentState:
    meta = deployment["metadata"]
    return DeploymentState(
        name=meta["name"],
        role=role,
        images=_images(deployment),
        replicas=deployment["spec"].get("replicas", 1),
        revision=(meta.get("annotations") or {}).get(REVISION_ANNOTATION, ""),
        release_annotation=_release_of(deployment),
        generation=meta.get("generation", 0),
    )


def _images(deployment: dict[str, Any]) -> dict[str, str]:
    containers = deployment["spec"]["template"]["spec"].get("containers", [])
    return {c["name"]: c.get("image", "") for c in containers}


def _release_of(deployment: dict[str, Any]) -> str:
    template_meta = deployment["spec"]["template"].get("metadata") or {}
    return (template_meta.get("annotations") or {}).get(RELEASE_ANNOTATION, "")


def _template_patch(images: Mapping[str, str], release_id: str | None) -> dict[str, Any]:
    """Strategic merge patch: containers merge by name, so only the named ones change;
    `release_id=None` removes the annotation."""
    return {
        "spec": {
            "template": {
                "metadata": {"annotations": {RELEASE_ANNOTATION: release_id}},
                "spec": {
                    "containers": [{"name": name, "image": image} for name, image in images.items()]
                },
            }
        }
    }


def _configuration_missing(message: str) -> ApplicationError:
    return ApplicationError(message, type=ErrorType.CONFIGURATION_MISSING, non_retryable=True)


def _api_error(what: str, error: ApiException) -> ApplicationError:
    """Translate an API error; retry only what a retry can fix (5xx, 409, 429, timeouts)."""
    detail = f"{what}: Kubernetes API answered {error.status} {error.reason}"
    if error.status == 404:
        return ApplicationError(
            f"{detail} (not found)", type=ErrorType.NOT_FOUND, non_retryable=True
        )
    if error.status in (401, 403):
        return _configuration_missing(
            f"{detail}; the k8s worker's service account lacks this permission "
            "(see deploy/k8s/rbac.yaml)"
        )
    if error.status in (400, 415, 422):
        return ApplicationError(
            f"{detail}: {error.body}", type="KubernetesRequestInvalid", non_retryable=True
        )
    return ApplicationError(detail, type="KubernetesApiError")


def _logger(release_id: str, tenant: Tenant) -> Any:
    return log.bind(release_id=release_id, tenant=tenant.name)
