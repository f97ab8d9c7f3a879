"""A rollout controller that reports Deployments and Jobs the way kube-controller-manager does.

Progress is counted in *polls* (GETs of the object by clients), never in wall-clock time, so
tests are deterministic: a Deployment whose spec changed reports a rollout in progress
(`observedGeneration` caught up, `updatedReplicas` short, `Progressing/ReplicaSetUpdated`)
until it has been read `polls` times, then either completes (`NewReplicaSetAvailable`) or,
in the `stuck` mode, reports `Progressing=False` with `ProgressDeadlineExceeded`. A Job gets
a pod (`<job>-xxxxx`, labelled `job-name`, owned by the Job) that succeeds or fails with a
given log after `polls` reads of the Job.

Modes are set per object (`name="*"` for every object of a namespace) by tests through
`RolloutController.set_mode` or by other processes through `POST /_double/modes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from devstack.k8s.selectors import parse_label_selector
from devstack.k8s.store import DEPLOYMENTS, JOBS, PODS, ApiError, ObjectStore, Resource, now

REVISION = "deployment.kubernetes.io/revision"
Outcome = Literal["succeed", "stuck", "fail", "image_pull"]


@dataclass(frozen=True)
class RolloutMode:
    """How the controller finishes one Deployment or Job."""

    outcome: Outcome = "succeed"
    polls: int = 1  # reads of the object before the outcome is reported
    log: str = ""  # the Job pod's log (fail: the failure log; succeed: optional)
    message: str = ""  # overrides the ProgressDeadlineExceeded message

    @classmethod
    def succeed(cls, after_polls: int = 1, log: str = "") -> RolloutMode:
        return cls("succeed", after_polls, log=log)

    @classmethod
    def stuck(cls, after_polls: int = 1, message: str = "") -> RolloutMode:
        return cls("stuck", after_polls, message=message)

    @classmethod
    def fail(cls, log: str, after_polls: int = 1) -> RolloutMode:
        return cls("fail", after_polls, log=log)

    @classmethod
    def image_pull_fails(cls, after_polls: int = 1) -> RolloutMode:
        """The Job's pod stays Pending, its container waiting in `ImagePullBackOff` (the
        kubelet's reason once a pull failed and it backs off): the Job never finishes."""
        return cls("image_pull", after_polls)

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "polls": self.polls,
            "log": self.log,
            "message": self.message,
        }


@dataclass
class _Rollout:
    """What the deployment controller remembers about one Deployment (its ReplicaSets)."""

    template_hash: str = ""
    revisions: dict[str, int] = field(default_factory=dict)  # template hash -> revision
    started_at_poll: int = 0
    active: bool = False
    mode: RolloutMode = field(default_factory=RolloutMode)


class RolloutController:
    """Reconciles Deployments and Jobs of an `ObjectStore`; run `run()` as an asyncio task."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.modes: dict[tuple[str, str, str], RolloutMode] = {}
        self.logs: dict[tuple[str, str, str], str] = {}  # namespace, pod, container -> log
        self._polls: dict[tuple[Resource, str, str], int] = defaultdict(int)
        self._rollouts: dict[tuple[str, str], _Rollout] = {}
        self._jobs_started_at: dict[tuple[str, str], int] = {}
        self._wake = asyncio.Event()
        self._own_write = False
        store.listeners.append(self._changed)

    # ------------------------------------------------------------ public API

    def set_mode(self, kind: str, namespace: str, name: str, mode: RolloutMode) -> None:
        """`kind` is `deployment` or `job`; `name="*"` applies to the whole namespace."""
        if kind not in ("deployment", "job"):
            raise ValueError(f"kind must be 'deployment' or 'job', not {kind!r}")
        self.modes[(kind, namespace, name)] = mode

    def mode_for(self, kind: str, namespace: str, name: str) -> RolloutMode:
        return self.modes.get((kind, namespace, name)) or self.modes.get(
            (kind, namespace, "*"), RolloutMode()
        )

    def polled(self, resource: Resource, namespace: str, name: str) -> None:
        """A client read the object: the unit in which rollouts progress."""
        self._polls[(resource, namespace, name)] += 1
        self.reconcile()

    def finish_rollout(self, namespace: str, name: str) -> None:
        """Mark a Deployment fully rolled out now (seeding a tenant that is already running)."""
        self.reconcile()
        rollout = self._rollouts[(namespace, name)]
        deployment = self.store.get(DEPLOYMENTS, namespace, name)
        self._write_status(DEPLOYMENTS, deployment, self._complete(deployment, rollout))
        rollout.active = False

    async def run(self) -> None:
        """Reconcile on every change and read; the timeout is only a safety net."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.5)
            self._wake.clear()
            self.reconcile()

    def reconcile(self) -> None:
        for deployment in self.store.list(DEPLOYMENTS, None)["items"]:
            self._reconcile_deployment(deployment)
        for job in self.store.list(JOBS, None)["items"]:
            self._reconcile_job(job)

    # ------------------------------------------------------------ deployments

    def _reconcile_deployment(self, deployment: dict[str, Any]) -> None:
        meta, spec = deployment["metadata"], deployment["spec"]
        key = (meta["namespace"], meta["name"])
        rollout = self._rollouts.setdefault(key, _Rollout())
        polls = self._polls[(DEPLOYMENTS, *key)]
        if meta.get("generation", 1) > deployment["status"].get("observedGeneration", 0):
            template_hash = _hash(spec.get("template", {}))
            if template_hash != rollout.template_hash:
                # a new (or re-used) ReplicaSet becomes the newest revision, as on a real cluster
                rollout.revisions[template_hash] = max(rollout.revisions.values(), default=0) + 1
                rollout.template_hash = template_hash
                deployment = self._annotate_revision(deployment, rollout.revisions[template_hash])
            rollout.started_at_poll, rollout.active = polls, True
            rollout.mode = self.mode_for("deployment", *key)
            status = self._progressing(deployment, rollout)
            if spec.get("replicas", 1) == 0:  # nothing to wait for
                status, rollout.active = self._complete(deployment, rollout), False
            self._write_status(DEPLOYMENTS, deployment, status)
        elif rollout.active and polls - rollout.started_at_poll >= rollout.mode.polls:
            rollout.active = False
            if rollout.mode.outcome == "stuck":
                status = self._timed_out(deployment, rollout)
            else:
                status = self._complete(deployment, rollout)
            self._write_status(DEPLOYMENTS, deployment, status)

    def _annotate_revision(self, deployment: dict[str, Any], revision: int) -> dict[str, Any]:
        annotations = dict(deployment["metadata"].get("annotations") or {})
        annotations[REVISION] = str(revision)
        patch = {"metadata": {"annotations": annotations}}
        meta = deployment["metadata"]
        with self._writing():
            return self.store.patch(
                DEPLOYMENTS, meta["namespace"], meta["name"], "application/merge-patch+json", patch
            )

    def _progressing(self, deployment: dict[str, Any], rollout: _Rollout) -> dict[str, Any]:
        wanted = deployment["spec"].get("replicas", 1)
        available = min(deployment["status"].get("availableReplicas", 0), wanted)
        updated = min(1, wanted)  # the first new pod exists but is not ready yet
        return _omit_zero(
            {
                "observedGeneration": deployment["metadata"]["generation"],
                "replicas": available + updated,
                "updatedReplicas": updated,
                "readyReplicas": available,
                "availableReplicas": available,
                "unavailableReplicas": max(wanted - available, 0),
                "conditions": [
                    _available_condition(available >= wanted - 1 or wanted == 0),
                    _condition(
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        f'ReplicaSet "{_replica_set(deployment, rollout)}" is progressing.',
                    ),
                ],
            }
        )

    def _complete(self, deployment: dict[str, Any], rollout: _Rollout) -> dict[str, Any]:
        wanted = deployment["spec"].get("replicas", 1)
        return _omit_zero(
            {
                "observedGeneration": deployment["metadata"]["generation"],
                "replicas": wanted,
                "updatedReplicas": wanted,
                "readyReplicas": wanted,
                "availableReplicas": wanted,
                "conditions": [
                    _available_condition(True),
                    _condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        f'ReplicaSet "{_replica_set(deployment, rollout)}" '
                        "has successfully progressed.",
                    ),
                ],
            }
        )

    def _timed_out(self, deployment: dict[str, Any], rollout: _Rollout) -> dict[str, Any]:
        status = self._progressing(deployment, rollout)
        message = rollout.mode.message or (
            f'ReplicaSet "{_replica_set(deployment, rollout)}" has timed out progressing.'
        )
        status["conditions"][1] = _condition(
            "Progressing", "False", "ProgressDeadlineExceeded", message
        )
        return status

    # ------------------------------------------------------------------- jobs

    def _reconcile_job(self, job: dict[str, Any]) -> None:
        meta, status = job["metadata"], job["status"]
        key = (meta["namespace"], meta["name"])
        polls = self._polls[(JOBS, *key)]
        if any(c.get("type") in ("Complete", "Failed") for c in status.get("conditions", [])):
            return
        if "startTime" not in status:
            pod = self._create_job_pod(job)
            self._jobs_started_at[key] = polls
            self._write_status(
                JOBS,
                job,
                {"startTime": now(), "active": 1, "ready": 0, "uncountedTerminatedPods": {}},
            )
            self.logs[(key[0], pod, _first_container(job))] = "simulated job pod started\n"
            return
        mode = self.mode_for("job", *key)
        if mode.outcome == "stuck" or polls - self._jobs_started_at.get(key, 0) < mode.polls:
            return
        pods = self.store.list(PODS, key[0], parse_label_selector(f"job-name={key[1]}"))["items"]
        job_pod = pods[-1] if pods else None
        if mode.outcome == "image_pull":
            if job_pod is not None and job_pod["status"].get("phase") != "Pending":
                self._pull_back_off(job_pod)
            return
        succeeded = mode.outcome == "succeed"
        if job_pod is not None:
            container = _first_container(job)
            log_key = (key[0], job_pod["metadata"]["name"], container)
            self.logs[log_key] = self.logs.get(log_key, "") + (
                mode.log or "simulated job finished\n"
            )
            self._finish_pod(job_pod, succeeded)
        if succeeded:
            reason, message = "CompletionsReached", "Reached expected number of succeeded pods"
            final = {"succeeded": 1, "completionTime": now()}
            kinds = ("SuccessCriteriaMet", "Complete")
        else:
            reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
            final = {"failed": 1}
            kinds = ("FailureTarget", "Failed")
        self._write_status(
            JOBS,
            job,
            {
                "startTime": status["startTime"],
                **final,
                "ready": 0,
                "uncountedTerminatedPods": {},
                "conditions": [
                    _condition(kind, "True", reason, message, probe=True) for kind in kinds
                ],
            },
        )

    def _create_job_pod(self, job: dict[str, Any]) -> str:
        meta, template = job["metadata"], job["spec"]["template"]
        pod = {
            "metadata": {
                "name": f"{meta['name']}-{secrets.token_hex(3)[:5]}",
                "labels": dict(template.get("metadata", {}).get("labels", {})),
                "annotations": dict(template.get("metadata", {}).get("annotations", {})),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template.get("spec", {}),
        }
        with self._writing():
            created = self.store.create(PODS, meta["namespace"], pod)
            running = {
                "phase": "Running",
                "startTime": now(),
                "containerStatuses": [
                    _container_status(c, ready=True, state={"running": {"startedAt": now()}})
                    for c in created["spec"]["containers"]
                ],
            }
            self.store.replace(
                PODS,
                meta["namespace"],
                created["metadata"]["name"],
                {"status": running},
                status=True,
            )
        return created["metadata"]["name"]

    def _pull_back_off(self, pod: dict[str, Any]) -> None:
        statuses = []
        for c in pod["spec"]["containers"]:
            waiting = {
                "reason": "ImagePullBackOff",
                "message": f'Back-off pulling image "{c["image"]}"',
            }
            status = _container_status(c, ready=False, state={"waiting": waiting})
            status["imageID"] = ""  # nothing was pulled: the kubelet reports it empty
            statuses.append(status)
        self._write_status(PODS, pod, {"phase": "Pending", "containerStatuses": statuses})

    def _finish_pod(self, pod: dict[str, Any], succeeded: bool) -> None:
        exit_code, reason = (0, "Completed") if succeeded else (1, "Error")
        terminated = {"exitCode": exit_code, "reason": reason, "finishedAt": now()}
        status = {
            "phase": "Succeeded" if succeeded else "Failed",
            "startTime": pod["status"].get("startTime", now()),
            "containerStatuses": [
                _container_status(c, ready=False, state={"terminated": terminated})
                for c in pod["spec"]["containers"]
            ],
        }
        self._write_status(PODS, pod, status)

    # ---------------------------------------------------------------- helpers

    def _write_status(
        self, resource: Resource, obj: dict[str, Any], status: dict[str, Any]
    ) -> None:
        meta = obj["metadata"]
        with self._writing(), contextlib.suppress(ApiError):  # deleted meanwhile: nothing to report
            self.store.replace(
                resource, meta.get("namespace", ""), meta["name"], {"status": status}, status=True
            )

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        self._own_write = True
        try:
            yield
        finally:
            self._own_write = False

    def _changed(self, resource: Resource, namespace: str, name: str) -> None:
        if not self._own_write:
            self._wake.set()


def _container_status(container: dict[str, Any], *, ready: bool, state: dict) -> dict[str, Any]:
    image = container["image"]
    return {
        "name": container["name"],
        "image": image,
        "imageID": _image_id(image),
        "ready": ready,
        "restartCount": 0,
        "state": state,
    }


def _image_id(image: str) -> str:
    """What the kubelet reports: the image pinned by the digest it pulled."""
    if "@sha256:" in image:
        return image
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repository}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _first_container(job: dict[str, Any]) -> str:
    return job["spec"]["template"]["spec"]["containers"][0]["name"]


def _hash(template: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _replica_set(deployment: dict[str, Any], rollout: _Rollout) -> str:
    return f"{deployment['metadata']['name']}-{rollout.template_hash}"


def _available_condition(available: bool) -> dict[str, Any]:
    if available:
        return _condition(
            "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
        )
    return _condition(
        "Available",
        "False",
        "MinimumReplicasUnavailable",
        "Deployment does not have minimum availability.",
    )


def _condition(
    kind: str, status: str, reason: str, message: str, *, probe: bool = False
) -> dict[str, Any]:
    stamp = now()
    time_field = "lastProbeTime" if probe else "lastUpdateTime"
    return {
        "type": kind,
        "status": status,
        time_field: stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def _omit_zero(status: dict[str, Any]) -> dict[str, Any]:
    """Deployment status counters are `omitempty`: a real API server never sends zeros."""
    return {k: v for k, v in status.items() if v != 0}
