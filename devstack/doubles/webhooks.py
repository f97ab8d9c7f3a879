"""A webhook receiver that records every JSON payload it was sent, per hook name."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from devstack.doubles._server import HttpDouble


class WebhookReceiver(HttpDouble):
    """`POST /hooks/{name}` records the payload; `fail(name)` makes that hook answer 500."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self.received: dict[str, list[Any]] = {}
        self.attempts: dict[str, int] = {}
        self.failing: set[str] = set()

    def hook_url(self, name: str) -> str:
        return f"{self.url}/hooks/{name}"

    def fail(self, name: str) -> None:
        self.failing.add(name)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hooks/{name}", self._receive)
        app.router.add_get("/hooks/{name}", self._show)

    async def _receive(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.attempts[name] = self.attempts.get(name, 0) + 1
        if name in self.failing:
            return web.Response(status=500, text="hook is down")
        self.received.setdefault(name, []).append(await request.json())
        return web.Response(text="1")

    async def _show(self, request: web.Request) -> web.Response:
        return web.json_response(self.received.get(request.match_info["name"], []))
