"""`finrelease worker NAME`: run one task queue's worker (or `all` of them) until signalled.

Order of events: check the queue's environment (exit 2 at once naming what is missing) ->
connect with Temporal's environment configuration -> start polling -> `/readyz` turns
ready -> on SIGTERM/SIGINT stop polling and give running activities the grace period
(`FINRELEASE_SHUTDOWN_GRACE_SECONDS`) to finish before they are cancelled -> exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Mapping, Sequence

import structlog

from workers.logs import configure_logging
from workers.queues import BUILDERS, QUEUES, MissingConfiguration, QueueWorker, check_environment
from workers.runtime import HealthServer, WorkerSettings, build_runtime, connect, stop_on_signals

log = structlog.get_logger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_MISCONFIGURED = 0, 1, 2


def queues_of(name: str) -> list[str]:
    """`all` -> every queue; otherwise the one named (MissingConfiguration if unknown)."""
    if name == "all":
        return list(QUEUES)
    if name not in QUEUES:
        raise MissingConfiguration(f"unknown worker {name!r}: one of {', '.join(QUEUES)}, all")
    return [name]


def run_worker(name: str, environ: Mapping[str, str] | None = None) -> int:
    """Run worker `name` (a queue or `all`) until SIGTERM/SIGINT; return the exit code."""
    environ = os.environ if environ is None else environ
    configure_logging(environ.get("FINRELEASE_LOG_LEVEL", "INFO"))
    try:
        names = queues_of(name)
        for queue in names:
            check_environment(queue, environ)
        settings = WorkerSettings.from_environment(environ)
    except (MissingConfiguration, ValueError) as error:
        print(f"finrelease worker {name}: {error}", file=sys.stderr)
        return EXIT_MISCONFIGURED
    try:
        return asyncio.run(serve(names, settings, environ))
    except MissingConfiguration as error:
        print(f"finrelease worker {name}: {error}", file=sys.stderr)
        return EXIT_MISCONFIGURED


async def serve(
    names: Sequence[str],
    settings: WorkerSettings,
    environ: Mapping[str, str],
    stopping: asyncio.Event | None = None,
) -> int:
    """Connect, build the queues' workers, poll until `stopping` is set, then shut down."""
    stopping = stopping or asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
        stop_on_signals(stopping, lambda sig: log.info("shutdown requested", signal=sig))
    client = await connect(build_runtime(settings.metrics_port), environ)
    built: list[QueueWorker] = [
        BUILDERS[name](client, environ, settings.queue_prefix, settings.shutdown_grace)
        for name in names
    ]
    health = HealthServer(settings.health_port or 0, [b.worker for b in built], stopping)
    if settings.health_port is not None:
        await health.start()
    runs = [asyncio.create_task(b.worker.run(), name=f"worker-{b.name}") for b in built]
    chores = [asyncio.create_task(job(stopping)) for b in built for job in b.housekeeping]
    for b in built:
        log.info("worker polling", worker=b.name, task_queue=b.worker.task_queue)
    stop_wait = asyncio.create_task(stopping.wait())
    done, _ = await asyncio.wait([*runs, stop_wait], return_when=asyncio.FIRST_COMPLETED)
    crashed = [t for t in runs if t in done]
    stopping.set()
    log.info("stopping workers", grace_seconds=settings.shutdown_grace.total_seconds())
    await asyncio.gather(*(b.worker.shutdown() for b in built), return_exceptions=True)
    results = await asyncio.gather(*runs, return_exceptions=True)
    await asyncio.gather(*chores, return_exceptions=True)  # they end with `stopping`
    await health.stop()
    for b in built:
        for close in b.closers:
            with contextlib.suppress(Exception):
                await close()
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        log.error("worker failed", error=repr(failure))
    log.info("workers stopped", workers=list(names), failed=len(failures))
    return EXIT_FAILED if crashed or failures else EXIT_OK


def main() -> None:
    """`python -m workers.main NAME`."""
    if len(sys.argv) != 2:
        print(f"usage: python -m workers.main {{{'|'.join(QUEUES)}|all}}", file=sys.stderr)
        raise SystemExit(EXIT_MISCONFIGURED)
    raise SystemExit(run_worker(sys.argv[1]))


if __name__ == "__main__":
    main()
