"""Worker processes: configuration checks, health and metrics endpoints, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from devstack.ports import free_port
from devstack.signing import demo_trust_root
from workers.queues import BUILDERS
from workers.runtime import HealthServer
from workflows.contracts import QUEUE_OF

FINRELEASE = str(Path(sys.executable).parent / "finrelease")
CREDENTIAL_PREFIXES = ("FINRELEASE_", "AZURE_", "KUBECONFIG", "KUBERNETES_", "TEMPORAL_")


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any worker credentials, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CREDENTIAL_PREFIXES)}
    return {**env, **extra}


@pytest.mark.parametrize(
    ("queue", "extra", "named"),
    [
        ("db", {}, "FINRELEASE_PG_<ALIAS>_DSN"),
        ("db", {"FINRELEASE_PG_MAIN_DSN": "postgresql://x"}, "AZURE_STORAGE_CONNECTION_STRING"),
        ("k8s", {}, "FINRELEASE_KUBECONFIG"),
        ("k8s", {"FINRELEASE_KUBECONFIG": "/dev/null"}, "FINRELEASE_TRUST_ROOT"),
        ("workflows", {}, "FINRELEASE_TRUST_ROOT"),
        (
            "azure",
            {"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"},
            "AZURE_DEVOPS_ORG_URL",
        ),
    ],
)
def test_worker_without_its_credentials_exits_at_once_naming_the_variable(
    queue: str, extra: dict[str, str], named: str
) -> None:
    # no Temporal address either: the check must come before any connection attempt
    result = subprocess.run(
        [FINRELEASE, "worker", queue],
        env=clean_environment(**extra),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert named in result.stderr


def test_all_worker_checks_every_queue_before_starting() -> None:
    result = subprocess.run(
        [FINRELEASE, "worker", "all"],
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "FINRELEASE_TRUST_ROOT" in result.stderr  # the workflows worker's, checked first


async def test_readiness_follows_the_workers_and_shutdown() -> None:
    worker = SimpleNamespace(is_running=False)
    stopping = asyncio.Event()
    port = free_port()
    health = HealthServer(port, [worker], stopping)  # type: ignore[list-item]
    await health.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 503
            worker.is_running = True
            assert (await http.get("/readyz")).status_code == 200
            stopping.set()
            not_ready = await http.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json() == {"status": "shutting down"}
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await health.stop()


def start_worker(name: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [FINRELEASE, "worker", name],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def _wait_until_ready(http: httpx.AsyncClient, process: subprocess.Popen[str]) -> None:
    for _ in range(600):
        assert process.poll() is None, process.communicate()[0]
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("the worker never became ready")


@pytest.mark.e2e
async def test_sigterm_stops_a_polling_worker_gracefully(
    dev_server_env: WorkflowEnvironment,
) -> None:
    health_port, metrics_port = free_port(), free_port()
    env = clean_environment(
        TEMPORAL_ADDRESS=dev_server_env.client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=dev_server_env.client.namespace,
        FINRELEASE_HEALTH_PORT=str(health_port),
        FINRELEASE_METRICS_PORT=str(metrics_port),
        FINRELEASE_QUEUE_PREFIX=f"t{uuid.uuid4().hex[:8]}-",
        FINRELEASE_SHUTDOWN_GRACE_SECONDS="5",
    )
    process = start_worker("smoke", env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health_port}") as http:
            await _wait_until_ready(http, process)
            assert (await http.get("/healthz")).json() == {"status": "alive"}
        async with httpx.AsyncClient() as http:
            metrics = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert metrics.status_code == 200
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "shutdown requested" in output and "SIGTERM" in output
    assert "workers stopped" in output


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: u, user: {token: not-a-secret}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.mark.e2e
async def test_each_queue_registers_exactly_its_contract_activities(
    dev_server_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    environ = {
        "AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
        "FINRELEASE_DEVOPS_DISABLED": "1",
        "FINRELEASE_PG_MAIN_DSN": "postgresql://db.invalid/postgres",
        "FINRELEASE_KUBECONFIG": str(kubeconfig),
        "FINRELEASE_TRUST_ROOT": str(demo_trust_root(tmp_path)),
    }
    for key, value in environ.items():  # the blob client is built from the process environment
        monkeypatch.setenv(key, value)
    for name, build in BUILDERS.items():
        built = build(dev_server_env.client, environ, "p-")
        queue = f"finrelease-{name}"
        assert built.worker.task_queue == f"p-{queue}"
        registered = (
            built.worker._activity_worker._activities if built.worker._activity_worker else {}
        )
        expected = {a for a, q in QUEUE_OF.items() if q == queue}
        if name == "workflows":
            expected = {
                "request_tenant_lock",
                "tenant_lock_holder_running",
                "workflows_worker_config",
            }
        assert set(registered) == expected, name
        if name == "db":
            assert built.worker._config["max_concurrent_activities"] == 2
        for close in built.closers:
            await close()
