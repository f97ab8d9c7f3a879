"""HTTP surface of the double: the Kubernetes REST paths for the resources it serves, plus
`/_double/*` admin endpoints for tests and the devstack running in other processes."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from devstack.k8s.controller import RolloutController, RolloutMode
from devstack.k8s.holds import AnswerHolds
from devstack.k8s.patches import PatchError
from devstack.k8s.selectors import SelectorError, parse_label_selector
from devstack.k8s.store import NAMESPACES, PODS, ApiError, ObjectStore, Resource, find_resource

STORE = web.AppKey("store", ObjectStore)
CONTROLLER = web.AppKey("controller", RolloutController)
HOLDS = web.AppKey("holds", AnswerHolds)


def build_app(store: ObjectStore, controller: RolloutController) -> web.Application:
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app[STORE], app[CONTROLLER], app[HOLDS] = store, controller, AnswerHolds()
    app.router.add_get("/version", _version)
    app.router.add_route("*", "/_double/modes", _modes)
    app.router.add_route("*", "/_double/holds", _holds)
    app.router.add_post("/_double/seed", _seed)
    app.router.add_route("*", "/{path:(api|apis)/.*}", _api)
    return app


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


async def _version(request: web.Request) -> web.Response:
    return _json(
        {
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.0-finrelease-simulated",
            "platform": "simulated",
        }
    )


async def _modes(request: web.Request) -> web.Response:
    """GET lists the modes; POST `{kind, namespace, name, outcome, polls, log, message}`
    sets one (`name` `*` for a whole namespace)."""
    controller = request.app[CONTROLLER]
    if request.method == "POST":
        body = await request.json()
        mode = RolloutMode(
            outcome=body.get("outcome", "succeed"),
            polls=int(body.get("polls", 1)),
            log=body.get("log", ""),
            message=body.get("message", ""),
        )
        try:
            controller.set_mode(body["kind"], body["namespace"], body.get("name", "*"), mode)
        except (KeyError, ValueError) as error:
            return _json({"error": f"invalid mode request: {error}"}, status=400)
    modes = [
        {"kind": kind, "namespace": namespace, "name": name, **mode.to_json()}
        for (kind, namespace, name), mode in controller.modes.items()
    ]
    return _json({"modes": modes})


async def _holds(request: web.Request) -> web.Response:
    """POST `{resource, namespace, name, verb}` arms a hold (see `devstack.k8s.holds`);
    DELETE releases every held answer; GET lists the holds."""
    holds = request.app[HOLDS]
    if request.method == "POST":
        body = await request.json()
        try:
            holds.arm(
                body.get("resource", "deployments"),
                body.get("namespace", ""),
                body.get("name", ""),
                body.get("verb", "PATCH"),
            )
        except ValueError as error:
            return _json({"error": f"invalid hold request: {error}"}, status=400)
    elif request.method == "DELETE":
        return _json({"released": holds.release_all()})
    return _json({"holds": [hold.to_json() for hold in holds.holds]})


async def _seed(request: web.Request) -> web.Response:
    """POST `{namespace, deployments: {role: name}, image}`: a running tenant
    (see `devstack.k8s.seed.seed_tenant`)."""
    from devstack.k8s.seed import seed_tenant

    body = await request.json()
    seeded = seed_tenant(
        request.app[STORE],
        request.app[CONTROLLER],
        body["namespace"],
        body["deployments"],
        body["image"],
    )
    return _json({"seeded": seeded})


async def _api(request: web.Request) -> web.StreamResponse:
    try:
        return await _dispatch(request)
    except ApiError as error:
        return _json(error.status(), status=error.code)
    except PatchError as error:
        reason = "BadRequest" if error.code == 400 else "Invalid"
        return _json(ApiError(error.code, reason, str(error)).status(), status=error.code)
    except SelectorError as error:
        return _json(ApiError(400, "BadRequest", str(error)).status(), status=400)


async def _dispatch(request: web.Request) -> web.StreamResponse:
    segments = request.match_info["path"].strip("/").split("/")
    if segments[0] == "api":
        group, rest = "", segments[1:]
    else:
        group, rest = segments[1], segments[2:]
    if not rest:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    version, rest = rest[0], rest[1:]
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and find_resource(group, version, rest[2]):
        namespace, rest = rest[1], rest[2:]
    resource = find_resource(group, version, rest[0]) if rest else None
    if resource is None or len(rest) > 3:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if resource.namespaced and name and namespace is None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    ns = namespace or ""
    if not name:
        return await _collection(request, resource, namespace)
    if subresource == "log" and resource is PODS and request.method == "GET":
        return _pod_log(request, ns, name)
    if subresource not in ("", "status"):
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return await _object(request, resource, ns, name, status=subresource == "status")


async def _collection(
    request: web.Request, resource: Resource, namespace: str | None
) -> web.Response:
    store, controller = request.app[STORE], request.app[CONTROLLER]
    if request.method == "GET":
        labels = parse_label_selector(request.query.get("labelSelector", ""))
        return _json(
            store.list(resource, namespace, labels, request.query.get("fieldSelector", ""))
        )
    if request.method == "POST":
        if resource.namespaced and namespace is None:
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        created = store.create(resource, namespace or "", await _body(request, resource))
        controller.reconcile()
        return _json(created, status=201)
    raise ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


async def _object(
    request: web.Request, resource: Resource, namespace: str, name: str, *, status: bool
) -> web.Response:
    store, controller = request.app[STORE], request.app[CONTROLLER]
    if request.method == "GET":
        if store.exists(resource, namespace, name):
            controller.polled(resource, namespace, name)
        return _json(store.get(resource, namespace, name))
    if request.method == "PUT":
        result = store.replace(
            resource, namespace, name, await _body(request, resource), status=status
        )
    elif request.method == "PATCH":
        patch = await _parse(request)
        content_type = request.headers.get("Content-Type", "")
        result = store.patch(resource, namespace, name, content_type, patch, status=status)
    elif request.method == "DELETE" and not status:
        return await _delete(request, resource, namespace, name)
    else:
        raise ApiError(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    controller.reconcile()
    hold = request.app[HOLDS].take(resource.plural, namespace, name, request.method)
    if hold is not None:  # applied; the client hears back only when the test says so
        await hold.released.wait()
    return _json(result)


async def _delete(
    request: web.Request, resource: Resource, namespace: str, name: str
) -> web.Response:
    store = request.app[STORE]
    options = await _parse(request) if request.can_read_body else {}
    policy = request.query.get("propagationPolicy") or (options or {}).get("propagationPolicy")
    # batch/v1 Jobs still orphan their pods unless a propagation policy is given
    cascade = policy in ("Background", "Foreground") or (
        policy is None and resource.plural != "jobs"
    )
    deleted = store.delete(resource, namespace, name, cascade=cascade)
    if resource in (PODS, NAMESPACES):  # graceful deletion: the API answers with the object
        return _json(deleted)
    details: dict[str, Any] = {
        "name": name,
        "kind": resource.plural,
        "uid": deleted["metadata"]["uid"],
    }
    if resource.group:
        details["group"] = resource.group
    return _json(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }
    )


def _pod_log(request: web.Request, namespace: str, name: str) -> web.Response:
    pod = request.app[STORE].get(PODS, namespace, name)
    containers = [c["name"] for c in pod["spec"]["containers"]]
    container = request.query.get("container")
    if container is None:
        if len(containers) != 1:
            raise ApiError(
                400,
                "BadRequest",
                f"a container name must be specified for pod {name}, "
                f"choose one of: [{' '.join(containers)}]",
            )
        container = containers[0]
    if container not in containers:
        raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
    text = request.app[CONTROLLER].logs.get((namespace, name, container), "")
    if "tailLines" in request.query:
        lines = text.splitlines(keepends=True)
        text = (
            "".join(lines[-int(request.query["tailLines"]) :])
            if int(request.query["tailLines"])
            else ""
        )
    if "limitBytes" in request.query:
        text = text.encode()[: int(request.query["limitBytes"])].decode(errors="ignore")
    return web.Response(text=text, content_type="text/plain")


async def _parse(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw or b"{}")
    except json.JSONDecodeError as error:
        raise ApiError(400, "BadRequest", f"invalid JSON in request body: {error}") from error


async def _body(request: web.Request, resource: Resource) -> dict[str, Any]:
    body = await _parse(request)
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the request body must be a JSON object")
    if body.get("kind", resource.kind) != resource.kind:
        raise ApiError(
            400,
            "BadRequest",
            f"the API version in the data ({body.get('apiVersion')}) does not match "
            "the expected API "
            f"version ({resource.api_version}) or kind ({body.get('kind')}) is not {resource.kind}",
        )
    return body
