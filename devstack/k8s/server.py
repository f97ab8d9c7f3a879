"""Start the Kubernetes API double on a local port and point a kubeconfig at it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import TracebackType

import yaml
from aiohttp import web

from devstack.k8s.app import build_app
from devstack.k8s.controller import RolloutController, RolloutMode
from devstack.k8s.seed import seed_tenant
from devstack.k8s.store import ObjectStore

CONTEXT = "finrelease-simulated"


class KubernetesDouble:
    """An in-memory, SIMULATED Kubernetes API server with a rollout controller.

    Use as `async with KubernetesDouble() as k8s:`; `k8s.url` is its address (127.0.0.1,
    a free port unless one is given). Tests steer it through `set_mode` and `seed_tenant`
    and inspect `store` directly."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.store = ObjectStore()
        self.controller = RolloutController(self.store)
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> KubernetesDouble:
        self._runner = web.AppRunner(build_app(self.store, self.controller), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._task = asyncio.create_task(self.controller.run(), name="k8s-double-controller")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> KubernetesDouble:
        return await self.start()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.stop()

    def set_mode(self, kind: str, namespace: str, name: str, mode: RolloutMode) -> None:
        """How the Deployment or Job `name` (or `"*"`) of `namespace` finishes its rollout."""
        self.controller.set_mode(kind, namespace, name, mode)

    def seed_tenant(self, namespace: str, deployments: dict[str, str], image: str) -> list[str]:
        """Create a tenant's running web/worker/cron Deployments (see `devstack.k8s.seed`)."""
        return seed_tenant(self.store, self.controller, namespace, deployments, image)

    def write_kubeconfig(self, path: Path | str) -> Path:
        return write_kubeconfig(path, self.url)


def write_kubeconfig(path: Path | str, url: str) -> Path:
    """A kubeconfig with one context, `finrelease-simulated`, for the double at `url`."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": CONTEXT, "user": {"token": "simulated-no-auth"}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT}}],
        "current-context": CONTEXT,
        "preferences": {},
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target
