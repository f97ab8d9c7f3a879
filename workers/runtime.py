"""What every worker process shares: settings, the Temporal client, metrics, health, shutdown.

The connection comes from Temporal's environment configuration (`TEMPORAL_ADDRESS`,
`TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`, or a profile in
`temporal.toml`), so a worker and the `temporal` CLI read the same settings. Secrets never
leave the process: nothing here logs the API key or TLS material.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog
from aiohttp import web
from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RetryConfig
from temporalio.worker import Worker

from workers.context import ContextInterceptor
from workflows.contracts import TASK_QUEUES

log = structlog.get_logger(__name__)

DEFAULT_ADDRESS = "127.0.0.1:7233"

# Calls to the server — a worker's activity completions and heartbeats among them — are
# retried for up to 2 minutes (the SDK's default gives up after 10 s), so a result finished
# while the server restarts is delivered afterwards instead of dropped and run again.
SERVER_CALL_RETRIES = RetryConfig(
    initial_interval_millis=200,
    multiplier=1.5,
    max_interval_millis=5_000,
    max_elapsed_time_millis=120_000,
    max_retries=100,
)


@dataclass(frozen=True)
class WorkerSettings:
    """Process-level settings, from `FINRELEASE_*` variables (ports off when unset)."""

    metrics_port: int | None = None
    health_port: int | None = None
    shutdown_grace: timedelta = timedelta(seconds=30)
    queue_prefix: str = ""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> WorkerSettings:
        """`FINRELEASE_METRICS_PORT`, `FINRELEASE_HEALTH_PORT`,
        `FINRELEASE_SHUTDOWN_GRACE_SECONDS` (default 30), `FINRELEASE_QUEUE_PREFIX`."""
        return cls(
            metrics_port=_port(environ, "FINRELEASE_METRICS_PORT"),
            health_port=_port(environ, "FINRELEASE_HEALTH_PORT"),
            shutdown_grace=timedelta(
                seconds=float(environ.get("FINRELEASE_SHUTDOWN_GRACE_SECONDS") or 30)
            ),
            queue_prefix=environ.get("FINRELEASE_QUEUE_PREFIX", ""),
        )


def _port(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"{name} must be a TCP port number, not {value!r}")
    return int(value)


def queue_name(queue: str, prefix: str = "") -> str:
    """The task queue actually polled: `FINRELEASE_QUEUE_PREFIX` + the contract's name.

    A prefix lets two environments (or a test run) share one Temporal namespace without
    stealing each other's tasks; starter and workers must use the same one.
    """
    if queue not in TASK_QUEUES:
        raise ValueError(f"unknown task queue {queue!r}")
    return f"{prefix}{queue}"


def build_runtime(metrics_port: int | None) -> Runtime | None:
    """A Temporal runtime exporting Prometheus metrics on `metrics_port` (None: the default)."""
    if metrics_port is None:
        return None
    telemetry = TelemetryConfig(metrics=PrometheusConfig(bind_address=f"0.0.0.0:{metrics_port}"))
    return Runtime(telemetry=telemetry)


async def connect(
    runtime: Runtime | None = None,
    environ: Mapping[str, str] | None = None,
    quiet: bool = False,
) -> Client:
    """A client from Temporal's environment configuration, with release-context propagation.

    `quiet` leaves the connection unlogged (the CLI, whose stdout may be JSON).
    """
    config = dict(
        ClientConfig.load_client_connect_config(
            override_env_vars=dict(os.environ if environ is None else environ)
        )
    )
    config.setdefault("target_host", DEFAULT_ADDRESS)
    if not quiet:
        log.info(
            "connecting to Temporal",
            address=config["target_host"],
            namespace=config.get("namespace", "default"),
            tls=bool(config.get("tls")),
        )
    return await Client.connect(
        **config,  # type: ignore[arg-type]
        interceptors=[ContextInterceptor()],
        runtime=runtime,
        retry_config=SERVER_CALL_RETRIES,
    )


class HealthServer:
    """`/healthz` answers while the process lives; `/readyz` once every worker polls."""

    def __init__(self, port: int, workers: Sequence[Worker], stopping: asyncio.Event) -> None:
        self._port = port
        self._workers = workers
        self._stopping = stopping
        self._runner: web.AppRunner | None = None

    def ready(self) -> bool:
        # Worker.is_running turns true after the namespace check, when its pollers start.
        return not self._stopping.is_set() and all(w.is_running for w in self._workers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "0.0.0.0", self._port).start()
        log.info("health endpoints listening", port=self._port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, _: web.Request) -> web.Response:
        if self.ready():
            return web.json_response({"status": "ready"})
        reason = "shutting down" if self._stopping.is_set() else "not polling yet"
        return web.json_response({"status": reason}, status=503)


def stop_on_signals(stopping: asyncio.Event, on_signal: Callable[[str], None]) -> None:
    """Set `stopping` on SIGTERM (Kubernetes) or SIGINT (Ctrl-C)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):

        def handle(name: str = sig.name) -> None:
            on_signal(name)
            stopping.set()

        loop.add_signal_handler(sig, handle)
