"""The release runs start to finish: approvals, backups, rehearsal, waves, evidence."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from governance.evidence import verify
from tests.workflows.release_doubles import Doubles
from tests.workflows.release_harness import IMAGE, make_release, run_approved, worker
from workflows.contracts import Activity
from workflows.messages import Outcome


async def test_release_deploys_three_tenants_in_two_waves(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(
        task_queue,
        3,
        waves=[{"name": "canary", "size": 1}, {"name": "rest", "size": "100%"}],
        bake="30m",
    )
    async with worker(time_skipping_env.client, task_queue, doubles):
        result = await run_approved(time_skipping_env.client, release, task_queue)
    assert result.outcome == Outcome.COMPLETED, result
    assert doubles.images == {"t1": IMAGE, "t2": IMAGE, "t3": IMAGE}
    assert doubles.tenants_called(Activity.SET_IMAGE)[0] == "t1"  # the canary goes first
    assert doubles.ledger == {
        ("t1", "migrations/042_fix_tax_tags.sql"): 1,
        ("t2", "migrations/042_fix_tax_tags.sql"): 1,
        ("t3", "migrations/042_fix_tax_tags.sql"): 1,
    }
    assert doubles.tenants_called(Activity.REHEARSE_MIGRATION) == ["t1"]  # low risk: canary only
    assert set(doubles.bundles) == {"", "t1", "t2", "t3"}
    assert all(verify(bundle) is None for bundle in doubles.bundles.values())
