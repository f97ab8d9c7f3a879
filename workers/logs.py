"""Structured logs: JSON lines outside a terminal, readable console output in one.

Temporal's own loggers (workflow.logger, activity.logger, the SDK) go through the same
processors, so every line carries `release_id`, `tenant`, `workflow_id` and `activity_id`
when they are known.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
import temporalio.activity
import temporalio.workflow

from workers.context import current_context


def _add_release_context(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Merge the release context propagated through Temporal headers (see workers.context)."""
    for key, value in current_context().items():
        event.setdefault(key, value)
    return event


def _flatten_temporal_extras(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """Temporal's loggers attach `temporal_workflow` / `temporal_activity` dicts: lift the ids."""
    workflow_info = event.pop("temporal_workflow", None) or {}
    activity_info = event.pop("temporal_activity", None) or {}
    for key in ("workflow_id", "run_id", "workflow_type", "task_queue"):
        if key in workflow_info:
            event.setdefault(key, workflow_info[key])
    for key in ("activity_id", "activity_type", "workflow_id", "attempt"):
        if key in activity_info:
            event.setdefault(key, activity_info[key])
    return event


def configure_logging(
    level: str = "INFO", json_output: bool | None = None, stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging through one pipeline; JSON unless stdout is a TTY."""
    stream = stream or sys.stdout
    if json_output is None:
        json_output = not stream.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_release_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _flatten_temporal_extras,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    # Temporal appends its info dict to the message by default; we keep it as fields instead.
    temporalio.workflow.logger.workflow_info_on_message = False
    temporalio.activity.logger.activity_info_on_message = False
    # The Azure SDK logs every HTTP request and response at INFO: noise in a release's log.
    logging.getLogger("azure").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
