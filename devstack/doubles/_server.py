"""A small aiohttp server on a free 127.0.0.1 port, usable as an async context manager."""

from __future__ import annotations

from typing import Self

from aiohttp import web


class HttpDouble:
    """Base of every HTTP double: subclasses add routes in `routes()`."""

    def __init__(self, port: int = 0) -> None:
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self.port = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._requested_port)
        await site.start()
        # Port 0 asks the kernel for a free port; read back which one we got.
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
