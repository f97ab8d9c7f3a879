"""What the workflows worker decides, never the caller: each activity's task queue,
whether a release may run on a simulated clock, and the trust root governance bundles are
checked against.

The worker reads both from its own environment at startup and answers a local activity
with them. Each workflow asks once, first thing: the answer is recorded in its history (a
local activity marker), so it replays identically on any worker and nothing in a start
request can change it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

from workflows.contracts import QUEUE_OF

WORKER_CONFIG = "workflows_worker_config"
# Only drills and tests set it: production workers always run releases on real time.
DEMO_CLOCK_VARIABLE = "FINRELEASE_DEMO_CLOCK"
# A file: threshold + governance administrators' public keys (governance.trust).
TRUST_ROOT_VARIABLE = "FINRELEASE_TRUST_ROOT"
MAX_TRUST_ROOT_BYTES = 64 * 1024


@dataclass(frozen=True)
class WorkerConfig:
    """Activity name -> task queue in force, whether `simulated_start` is honoured, and the
    trust root's text (public keys only; empty: no bundle can be accepted)."""

    queues: dict[str, str] = field(default_factory=dict)
    demo_clock: bool = False
    trust_root: str = ""


@dataclass
class ConfigQuery:
    workflow_id: str  # who asks (for the worker's logs)


def config_from_environment(
    environ: Mapping[str, str] = os.environ, prefix: str = ""
) -> WorkerConfig:
    """The contract's queues under `prefix` (FINRELEASE_QUEUE_PREFIX); the demo clock only
    with FINRELEASE_DEMO_CLOCK=1 (or true/yes); the trust root read from the file
    FINRELEASE_TRUST_ROOT names, checked now (ValueError naming the problem) so that a worker
    with a broken trust root does not start."""
    flag = environ.get(DEMO_CLOCK_VARIABLE, "").strip().lower() in ("1", "true", "yes")
    queues = {name: f"{prefix}{queue}" for name, queue in QUEUE_OF.items()}
    return WorkerConfig(queues, flag, read_trust_root(environ.get(TRUST_ROOT_VARIABLE, "")))


def read_trust_root(path: str) -> str:
    """The trust root file's text ("" when no path is set); ValueError when unusable."""
    if not path:
        return ""
    from governance.problems import ValidationFailed
    from governance.trust import parse_trust_root

    try:
        with open(path, "rb") as file:
            data = file.read(MAX_TRUST_ROOT_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{TRUST_ROOT_VARIABLE}={path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_TRUST_ROOT_BYTES:
        raise ValueError(f"{TRUST_ROOT_VARIABLE}: larger than {MAX_TRUST_ROOT_BYTES:,} bytes")
    try:
        text = data.decode("utf-8")
        parse_trust_root(text)
    except UnicodeDecodeError:
        raise ValueError(f"{TRUST_ROOT_VARIABLE}={path}: not UTF-8") from None
    except ValidationFailed as exc:
        problems = "; ".join(str(p) for p in exc.problems[:5])
        raise ValueError(f"{TRUST_ROOT_VARIABLE}={path}: {problems}") from None
    return text


class WorkerConfigActivities:
    """Serves the workflows worker's configuration to the workflows it runs."""

    def __init__(self, config: WorkerConfig) -> None:
        self._config = config

    @activity.defn(name=WORKER_CONFIG)
    async def workflows_worker_config(self, query: ConfigQuery) -> WorkerConfig:
        return self._config

    def activities(self) -> list[Callable[..., Any]]:
        return [self.workflows_worker_config]


async def fetch_worker_config() -> WorkerConfig:
    """Ask this workflow's worker for its configuration (workflow code only).

    A local activity, not a read of the environment: its result is a marker in history, so
    a replay uses what the first run was told, whatever the replaying worker's environment
    (local activity results persist as `MarkerRecorded` events, see temporalio/temporal#712;
    tests/replay replays such histories without the activity registered).
    """
    return await workflow.execute_local_activity(
        WORKER_CONFIG,
        ConfigQuery(workflow.info().workflow_id),
        result_type=WorkerConfig,
        start_to_close_timeout=timedelta(seconds=10),
        retry_policy=RetryPolicy(maximum_attempts=5),
    )
