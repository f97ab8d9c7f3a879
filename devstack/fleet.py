"""The worker processes of the embedded stack: one `finrelease worker <queue>` process per queue."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from devstack.ports import free_port
from devstack.process import ManagedProcess

QUEUES = ("workflows", "db", "k8s", "azure", "smoke")


def worker_process(queue: str, state_dir: Path, env: dict[str, str]) -> ManagedProcess:
    """A worker as its own process; ready when its readiness probe (`/readyz`) answers 200."""
    health_port = free_port()
    return ManagedProcess(
        name=f"worker-{queue}",
        command=[str(Path(sys.executable).parent / "finrelease"), "worker", queue],
        state_dir=state_dir,
        ready=lambda: _ready(health_port),
        address=f"task queue finrelease-{queue}, probes http://127.0.0.1:{health_port}",
        env={**env, "FINRELEASE_HEALTH_PORT": str(health_port)},
    )


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_fleet(
    state_dir: Path, env: dict[str, str], queues: tuple[str, ...] = QUEUES
) -> list[ManagedProcess]:
    workers = [worker_process(queue, state_dir, env) for queue in queues]
    for worker in workers:
        worker.log_file.unlink(missing_ok=True)
        worker.start(timeout=60)
    return workers


def stop_fleet(workers: list[ManagedProcess]) -> None:
    for worker in workers:
        worker.stop(grace=15)
