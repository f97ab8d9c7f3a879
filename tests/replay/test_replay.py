"""Recorded FinanceRelease histories must replay against today's workflow code.

A change that makes the workflows non-deterministic for runs already in flight fails here.
Re-record (after an intended, versioned change) with:
    RECORD_HISTORIES=1 .venv/bin/python -m pytest tests/workflows -q -k "evidence_chain or \
smoke_test_restores or writes_since_reopening or manual_promotion or transient"
TenantRollout children (the cutover) are recorded by tests/workflows/test_tenant_cutover.py:
    RECORD_HISTORIES=1 .venv/bin/python -m pytest tests/workflows/test_tenant_cutover.py -q \
-k "in_order or swaps_the_restore_point_back_before"
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_four_representative_histories_are_recorded() -> None:
    assert len(HISTORIES) >= 4, [h.name for h in HISTORIES]


@pytest.mark.parametrize("path", HISTORIES, ids=[h.stem for h in HISTORIES])
async def test_recorded_history_replays_deterministically(path: Path) -> None:
    from workflows.registry import (  # after conftest put the project package first
        WORKFLOW_RUNNER,
        WORKFLOWS,
    )

    history = WorkflowHistory.from_json(path.stem, await asyncio.to_thread(path.read_text))
    result = await Replayer(workflows=WORKFLOWS, workflow_runner=WORKFLOW_RUNNER).replay_workflow(
        history, raise_on_replay_failure=True
    )
    assert result.replay_failure is None
