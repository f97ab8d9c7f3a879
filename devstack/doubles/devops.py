"""Azure DevOps work item REST API double: fields and rev, comments, JSON Patch with `test`.

Serves `/{org}/{project}/_apis/wit/workitems/{id}` (GET, PATCH) and
`/{org}/{project}/_apis/wit/workItems/{id}/comments` (GET, POST), checks the PAT of the
Basic auth header, and has switches that make the next requests answer 429 (with
Retry-After) or 5xx, or that bump a work item's rev just before the next PATCH (a
concurrent edit), so clients' retries are exercised.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devstack.doubles._server import HttpDouble


@dataclass
class FakeWorkItem:
    id: int
    fields: dict[str, Any]
    rev: int = 1
    comments: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)  # every applied patch


@dataclass
class _Fault:
    status: int
    retry_after: str | None


class AzureDevOpsDouble(HttpDouble):
    """One organisation and project; work items live in memory."""

    def __init__(self, pat: str, org: str = "contoso", project: str = "Finance", port: int = 0):
        super().__init__(port)
        self.pat = pat
        self.org = org
        self.project = project
        self.work_items: dict[int, FakeWorkItem] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request seen
        self._faults: list[_Fault] = []
        self._concurrent_edits = 0

    @property
    def org_url(self) -> str:
        return f"{self.url}/{self.org}"

    def add_work_item(
        self, work_item_id: int, fields: dict[str, Any], rev: int = 1
    ) -> FakeWorkItem:
        item = FakeWorkItem(id=work_item_id, fields=dict(fields), rev=rev)
        self.work_items[work_item_id] = item
        return item

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """The next `times` requests answer `status` (e.g. 429 with Retry-After, or 503)."""
        self._faults += [_Fault(status, retry_after) for _ in range(times)]

    def edit_concurrently_before_next_patch(self, times: int = 1) -> None:
        """Someone else saves the work item just before each of the next `times` PATCHes."""
        self._concurrent_edits += times

    def routes(self, app: web.Application) -> None:
        base = f"/{self.org}/{self.project}/_apis/wit"
        app.router.add_get(base + "/workitems/{id}", self._get)
        app.router.add_patch(base + "/workitems/{id}", self._patch)
        app.router.add_get(base + "/workItems/{id}/comments", self._comments)
        app.router.add_post(base + "/workItems/{id}/comments", self._add_comment)
        app.middlewares.append(self._gate)

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if self._faults:
            fault = self._faults.pop(0)
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return web.json_response(
                {"message": "injected fault"}, status=fault.status, headers=headers
            )
        if not self._authorised(request.headers.get("Authorization", "")):
            return web.json_response({"message": "TF400813: not authorized"}, status=401)
        if not request.query.get("api-version", "").startswith("7.1"):
            return web.json_response({"message": "api-version 7.1 required"}, status=400)
        return await handler(request)

    def _authorised(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            _, _, pat = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return pat == self.pat

    def _item(self, request: web.Request) -> FakeWorkItem:
        item = self.work_items.get(int(request.match_info["id"]))
        if item is None:
            message = f"TF401232: Work item {request.match_info['id']} does not exist"
            raise web.HTTPNotFound(
                text=json.dumps({"message": message}), content_type="application/json"
            )
        return item

    def _body(self, request: web.Request, item: FakeWorkItem) -> dict[str, Any]:
        link = f"{self.org_url}/{self.project}/_workitems/edit/{item.id}"
        return {
            "id": item.id,
            "rev": item.rev,
            "fields": item.fields,
            "url": f"{self.org_url}/{self.project}/_apis/wit/workItems/{item.id}",
            "_links": {"html": {"href": link}},
        }

    async def _get(self, request: web.Request) -> web.Response:
        item = self._item(request)
        return web.json_response(self._body(request, item))

    async def _patch(self, request: web.Request) -> web.Response:
        item = self._item(request)
        if request.content_type != "application/json-patch+json":
            return web.json_response(
                {"message": "expected application/json-patch+json"}, status=415
            )
        if self._concurrent_edits:
            self._concurrent_edits -= 1
            item.rev += 1
        operations = await request.json()
        for op in operations:
            if op["op"] == "test" and op["path"] == "/rev" and op["value"] != item.rev:
                # What Azure DevOps answers when the rev guard fails: 412 Precondition Failed.
                return web.json_response(
                    {"message": f"TF26071: work item {item.id} was changed (rev {item.rev})"},
                    status=412,
                )
        for op in operations:
            if op["op"] in ("add", "replace") and op["path"].startswith("/fields/"):
                item.fields[op["path"].removeprefix("/fields/")] = op["value"]
        item.rev += 1
        item.history.append({"rev": item.rev, "operations": operations})
        return web.json_response(self._body(request, item))

    async def _comments(self, request: web.Request) -> web.Response:
        item = self._item(request)
        return web.json_response({"totalCount": len(item.comments), "comments": item.comments})

    async def _add_comment(self, request: web.Request) -> web.Response:
        item = self._item(request)
        body = await request.json()
        comment = {"id": len(item.comments) + 1, "workItemId": item.id, "text": body["text"]}
        item.comments.append(comment)
        return web.json_response(comment)
