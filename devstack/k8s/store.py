"""In-memory object store with the API server's write semantics.

What is faithful because finrelease depends on it: `uid` and `creationTimestamp` set on
create; one cluster-wide `resourceVersion` counter, bumped by every write; a write that
names a stale `resourceVersion` fails with 409 Conflict; `metadata.generation` bumped only
when `spec` changes; `status` written only through the status subresource (and the main
resource ignores status in the body); API defaults applied on every write, so a no-op patch
changes nothing; errors are `Status` objects shaped like the API server's.
"""

from __future__ import annotations

import copy
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devstack.k8s.patches import json_merge, json_patch, strategic_merge
from devstack.k8s.selectors import Requirement, field_matches, matches


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    tracks_generation: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`deployments.apps`, `pods`: how the API server names a resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


NAMESPACES = Resource(
    "", "v1", "namespaces", "Namespace", namespaced=False, tracks_generation=False
)
PODS = Resource("", "v1", "pods", "Pod", namespaced=True, tracks_generation=False)
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment", True, tracks_generation=True)
JOBS = Resource("batch", "v1", "jobs", "Job", namespaced=True, tracks_generation=True)
RESOURCES = (NAMESPACES, PODS, DEPLOYMENTS, JOBS)


def find_resource(group: str, version: str, plural: str) -> Resource | None:
    for resource in RESOURCES:
        if (resource.group, resource.version, resource.plural) == (group, version, plural):
            return resource
    return None


class ApiError(Exception):
    """An error answer of the API server, rendered as its `Status` object."""

    def __init__(
        self, code: int, reason: str, message: str, resource: Resource | None = None, name: str = ""
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.resource, self.name = resource, name

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.resource is not None:
            details: dict[str, Any] = {"name": self.name, "kind": self.resource.plural}
            if self.resource.group:
                details["group"] = self.resource.group
            body["details"] = details
        return body


def not_found(resource: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource.qualified} "{name}" not found', resource, name)


def conflict(resource: Resource, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        resource,
        name,
    )


def invalid(resource: Resource, name: str, detail: str) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        f'{resource.kind}.{resource.group or "core"} "{name}" is invalid: {detail}',
        resource,
        name,
    )


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)

Key = tuple[Resource, str, str]  # resource, namespace ("" when cluster-scoped), name
Listener = Callable[[Resource, str, str], None]


class ObjectStore:
    """All objects of the double; every write goes through here."""

    def __init__(self) -> None:
        self._objects: dict[Key, dict[str, Any]] = {}
        self._revision = 0
        self.listeners: list[Listener] = []

    # ------------------------------------------------------------------ reads

    def exists(self, resource: Resource, namespace: str, name: str) -> bool:
        return (resource, namespace if resource.namespaced else "", name) in self._objects

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        found = self._objects.get((resource, namespace if resource.namespaced else "", name))
        if found is None:
            raise not_found(resource, name)
        return copy.deepcopy(found)

    def list(
        self,
        resource: Resource,
        namespace: str | None,
        labels: list[Requirement] | None = None,
        fields: str = "",
    ) -> dict[str, Any]:
        """The `<Kind>List`; `namespace=None` lists across all namespaces."""
        items = [
            copy.deepcopy(obj)
            for (res, ns, _), obj in sorted(self._objects.items(), key=lambda kv: kv[0][1:])
            if res == resource
            and (namespace is None or ns == namespace)
            and matches(labels or [], obj["metadata"].get("labels"))
            and field_matches(fields, obj)
        ]
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(self._revision)},
            "items": items,
        }

    # ----------------------------------------------------------------- writes

    def create(self, resource: Resource, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name") or ""
        if not name:
            raise invalid(
                resource, "", "metadata.name: Required value: name or generateName is required"
            )
        if resource.namespaced:
            if meta.get("namespace", namespace) != namespace:
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request",
                )
            if (NAMESPACES, "", namespace) not in self._objects:
                raise not_found(NAMESPACES, namespace)
            meta["namespace"] = namespace
        key = (resource, namespace if resource.namespaced else "", name)
        if key in self._objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{resource.qualified} "{name}" already exists',
                resource,
                name,
            )
        for server_owned in ("resourceVersion", "deletionTimestamp", "managedFields"):
            meta.pop(server_owned, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if resource.tracks_generation:
            meta["generation"] = 1
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        obj["status"] = {"phase": "Active"} if resource is NAMESPACES else {}
        apply_defaults(resource, obj)
        validate(resource, obj)
        return self._save(key, obj)

    def replace(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        body: dict[str, Any],
        *,
        status: bool = False,
    ) -> dict[str, Any]:
        """PUT of the object (spec and metadata) or, with `status=True`, of its status."""
        current = self.get(resource, namespace, name)
        meta = body.get("metadata") or {}
        if meta.get("name", name) != name:
            raise ApiError(
                400,
                "BadRequest",
                f"the name of the object ({meta.get('name')}) does not match the name on "
                f"the URL ({name})",
            )
        stale = meta.get("resourceVersion")
        if stale and stale != current["metadata"]["resourceVersion"]:
            raise conflict(resource, name)
        if status:
            updated = copy.deepcopy(current)
            updated["status"] = copy.deepcopy(body.get("status") or {})
        else:
            updated = copy.deepcopy(body)
            updated["status"] = current.get("status", {})
            updated["apiVersion"], updated["kind"] = resource.api_version, resource.kind
            new_meta = updated.setdefault("metadata", {})
            # server-owned metadata; resourceVersion is compared above and re-set on save
            server_owned = (
                "uid",
                "creationTimestamp",
                "namespace",
                "generation",
                "name",
                "resourceVersion",
            )
            for immutable in server_owned:
                if immutable in current["metadata"]:
                    new_meta[immutable] = current["metadata"][immutable]
                else:
                    new_meta.pop(immutable, None)
            apply_defaults(resource, updated)
            validate(resource, updated)
            check_immutable(resource, current, updated)
            if resource.tracks_generation and updated.get("spec") != current.get("spec"):
                new_meta["generation"] = current["metadata"].get("generation", 1) + 1
        key = (resource, namespace if resource.namespaced else "", name)
        if updated == current:
            return current  # the API server skips no-op writes: resourceVersion unchanged
        return self._save(key, updated)

    def patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        *,
        status: bool = False,
    ) -> dict[str, Any]:
        """PATCH: the patch applies to the current object, then the result is written like a
        PUT (so a `resourceVersion` inside the patch is an optimistic lock)."""
        current = self.get(resource, namespace, name)
        kind = content_type.split(";")[0].strip().lower()
        if kind == "application/strategic-merge-patch+json":
            patched = strategic_merge(current, patch)
        elif kind == "application/merge-patch+json":
            patched = json_merge(current, patch)
        elif kind == "application/json-patch+json":
            patched = json_patch(current, patch)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{', '.join(PATCH_TYPES)}",
            )
        return self.replace(resource, namespace, name, patched, status=status)

    def delete(
        self, resource: Resource, namespace: str, name: str, *, cascade: bool
    ) -> dict[str, Any]:
        current = self.get(resource, namespace, name)
        del self._objects[(resource, namespace if resource.namespaced else "", name)]
        self._revision += 1
        uid = current["metadata"]["uid"]
        if cascade or resource is NAMESPACES:
            for (res, ns, child), obj in list(self._objects.items()):
                owned = any(
                    ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", [])
                )
                if owned or (resource is NAMESPACES and ns == name):
                    self.delete(res, ns, child, cascade=True)
        self._notify(resource, namespace, name)
        return current

    def _save(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        self._objects[key] = obj
        self._notify(*key)
        return copy.deepcopy(obj)

    def _notify(self, resource: Resource, namespace: str, name: str) -> None:
        for listener in self.listeners:
            listener(resource, namespace, name)


def apply_defaults(resource: Resource, obj: dict[str, Any]) -> None:
    """The defaults the API server fills in, so clients see what a real cluster returns."""
    spec = obj.get("spec")
    if resource is DEPLOYMENTS and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
        if strategy.get("type") == "RollingUpdate":
            strategy.setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
        _default_pod_spec(spec.get("template", {}).get("spec"), restart="Always")
    if resource is JOBS and isinstance(spec, dict):
        for field, value in (("parallelism", 1), ("completions", 1), ("backoffLimit", 6)):
            spec.setdefault(field, value)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
        template = spec.setdefault("template", {})
        uid = obj["metadata"].get("uid", "")
        labels = {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": obj["metadata"]["name"],
            "controller-uid": uid,
            "job-name": obj["metadata"]["name"],
        }
        template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
        _default_pod_spec(template.get("spec"), restart=None)
    if resource is PODS and isinstance(spec, dict):
        _default_pod_spec(spec, restart="Always")


def _default_pod_spec(spec: Any, restart: str | None) -> None:
    if not isinstance(spec, dict):
        return
    if restart:
        spec.setdefault("restartPolicy", restart)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        if isinstance(container, dict):
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault("imagePullPolicy", "IfNotPresent")


def validate(resource: Resource, obj: dict[str, Any]) -> None:
    """The validation errors a client of this project could plausibly trigger."""
    name = obj["metadata"].get("name", "")
    pod_spec = obj.get("spec", {}).get("template", {}).get("spec")
    if resource is PODS:
        pod_spec = obj.get("spec")
    if resource in (DEPLOYMENTS, JOBS, PODS):
        containers = (pod_spec or {}).get("containers") or []
        if not containers:
            raise invalid(resource, name, "spec.template.spec.containers: Required value")
        for index, container in enumerate(containers):
            if not container.get("name") or not container.get("image"):
                raise invalid(
                    resource,
                    name,
                    f"spec.template.spec.containers[{index}]: name and image are required",
                )
    if resource is JOBS and pod_spec.get("restartPolicy") not in ("Never", "OnFailure"):
        raise invalid(
            resource,
            name,
            'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"',
        )


def check_immutable(resource: Resource, current: dict[str, Any], updated: dict[str, Any]) -> None:
    """A Job's pod template and selector cannot change after creation (422 like the API)."""
    if resource is not JOBS:
        return
    for field in ("template", "selector", "completions"):
        if current.get("spec", {}).get(field) != updated.get("spec", {}).get(field):
            raise invalid(
                resource,
                current["metadata"]["name"],
                f"spec.{field}: Invalid value: field is immutable",
            )
