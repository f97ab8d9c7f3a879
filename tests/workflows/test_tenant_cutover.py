"""The cutover in TenantRollout: step order, rollback before reopening, retried steps."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from tests.workflows.release_doubles import OLD_IMAGE, Doubles
from tests.workflows.release_harness import IMAGE, make_release, run_approved, save_history, worker
from workflows.contracts import Activity
from workflows.messages import tenant_workflow_id

CUTOVER = [
    Activity.SET_MAINTENANCE,  # every workload to zero
    Activity.CLOSE_DATABASE,
    Activity.TAKE_RESTORE_POINT,
    Activity.FINANCE_SNAPSHOT,  # the quiesced baseline
    Activity.MIGRATE_DATABASE,
    Activity.REOPEN_DATABASE,  # for the module update Job, workloads still at zero
    Activity.RUN_MODULE_UPDATE,
    Activity.FINANCE_SNAPSHOT,  # the ledger check
    Activity.SET_IMAGE,
    Activity.SET_MAINTENANCE,  # replicas back
    Activity.WAIT_FOR_ROLLOUT,
    Activity.RUN_SMOKE_CHECKS,
    Activity.DROP_RESTORE_POINT,
]
DEPLOY_STEPS = set(CUTOVER) | {
    Activity.SWAP_TO_RESTORE_POINT,
    Activity.RESTORE_RUNNING_STATE,
    Activity.RESTORE_DATABASE,
    Activity.ENTRIES_SINCE_BACKUP,
}


def deploy_calls(doubles: Doubles, tenant: str) -> list[str]:
    """The tenant's calls from entering maintenance on (preparation left out)."""
    calls = [n for n, t in doubles.calls if t == tenant and n in DEPLOY_STEPS]
    first = calls.index(Activity.SET_MAINTENANCE)
    return calls[first:]


def kinds(doubles: Doubles, tenant: str) -> list[str]:
    return [e["kind"] for e in doubles.bundles[tenant]["entries"]]


async def test_cutover_runs_maintenance_restore_point_migration_check_start_in_order(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles()
    release = make_release(task_queue, 1)
    client = time_skipping_env.client
    async with worker(client, task_queue, doubles):
        result = await run_approved(client, release, task_queue)
        child = client.get_workflow_handle(tenant_workflow_id(release.release_id, "t1"))
        await save_history(child, "tenant_cutover_deployed")
    assert result.tenants == {"t1": "deployed"}
    assert [c for c in deploy_calls(doubles, "t1") if c != Activity.REOPEN_DATABASE] == [
        c for c in CUTOVER if c != Activity.REOPEN_DATABASE
    ]
    calls = deploy_calls(doubles, "t1")
    assert calls.index(Activity.REOPEN_DATABASE) < calls.index(Activity.RUN_MODULE_UPDATE)
    assert doubles.closed == set() and doubles.restore_points["t1"] == 1
    assert doubles.images["t1"] == IMAGE and doubles.replicas["t1"] == 1
    evidence = kinds(doubles, "t1")
    order = ["maintenance_entered", "database_closed", "restore_point", "finance_baseline"]
    order += ["migration", "module_update", "ledger_check", "image_set", "reopened", "smoke"]
    order += ["deployed", "restore_point_dropped"]
    assert [k for k in evidence if k in order] == order


async def test_failed_migration_swaps_the_restore_point_back_before_the_previous_image(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(migration_fails={"t1"})
    release = make_release(task_queue, 1)
    client = time_skipping_env.client
    async with worker(client, task_queue, doubles):
        result = await run_approved(client, release, task_queue)
        child = client.get_workflow_handle(tenant_workflow_id(release.release_id, "t1"))
        await save_history(child, "tenant_cutover_swapped_back")
    assert result.tenants == {"t1": "rolled_back"}
    assert doubles.database["t1"] == "restore_point"
    calls = deploy_calls(doubles, "t1")
    assert calls.index(Activity.SWAP_TO_RESTORE_POINT) < calls.index(Activity.RESTORE_RUNNING_STATE)
    # nobody could write: no count of entries, no human asked, no restore from the backup
    assert doubles.count(Activity.ENTRIES_SINCE_BACKUP) == 0
    assert doubles.count(Activity.RESTORE_DATABASE) == 0
    assert doubles.count(Activity.SET_IMAGE) == 0
    assert doubles.images["t1"] == OLD_IMAGE and doubles.replicas["t1"] == 1
    assert doubles.closed == set()  # never left closed
    evidence = kinds(doubles, "t1")
    swapped, image = evidence.index("database_swapped_back"), evidence.index("image_restored")
    assert swapped < image < evidence.index("database_reopened") < evidence.index("compensated")


async def test_a_ledger_moved_by_the_migration_is_rolled_back_before_anyone_can_write(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(ledger_drifts={"t1"})
    release = make_release(task_queue, 1)
    async with worker(time_skipping_env.client, task_queue, doubles):
        result = await run_approved(time_skipping_env.client, release, task_queue)
    assert result.tenants == {"t1": "rolled_back"}
    failed = [e for e in doubles.bundles["t1"]["entries"] if e["kind"] == "deployment_failed"]
    assert "ledger of t1 changed by the migration" in failed[0]["data"]["error"]
    assert doubles.count(Activity.SET_IMAGE) == 0  # the new image never started
    assert doubles.database["t1"] == "restore_point"
    check = [e for e in doubles.bundles["t1"]["entries"] if e["kind"] == "ledger_check"][0]
    assert check["data"]["passed"] is False
    assert "total_debit 100.00 -> 99.00" in check["data"]["differences"]


async def test_retried_cutover_steps_take_one_restore_point_and_leave_nothing_closed(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(
        migration_fails={"t1"},
        transient_once={
            Activity.SET_MAINTENANCE,
            Activity.CLOSE_DATABASE,
            Activity.TAKE_RESTORE_POINT,
            Activity.SWAP_TO_RESTORE_POINT,
        },
    )
    release = make_release(task_queue, 1)
    async with worker(time_skipping_env.client, task_queue, doubles):
        result = await run_approved(time_skipping_env.client, release, task_queue)
    assert result.tenants == {"t1": "rolled_back"}
    assert doubles.count(Activity.TAKE_RESTORE_POINT, "t1") == 2  # the retry ran ...
    assert doubles.restore_points["t1"] == 1  # ... and reused the copy
    assert doubles.count(Activity.SWAP_TO_RESTORE_POINT, "t1") == 2
    assert doubles.database["t1"] == "restore_point" and doubles.closed == set()
    assert kinds(doubles, "t1").count("restore_point") == 1


async def test_a_failure_after_reopening_with_no_write_since_swaps_back_without_asking(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    doubles = Doubles(smoke_fails={"t1"})
    release = make_release(task_queue, 1)
    async with worker(time_skipping_env.client, task_queue, doubles):
        result = await run_approved(time_skipping_env.client, release, task_queue)
    assert result.tenants == {"t1": "rolled_back"}
    calls = deploy_calls(doubles, "t1")
    smoke = calls.index(Activity.RUN_SMOKE_CHECKS)
    # back into maintenance, then database before image
    after = calls[smoke + 1 :]
    assert after[0] == Activity.SET_MAINTENANCE
    assert after.index(Activity.SWAP_TO_RESTORE_POINT) < after.index(Activity.RESTORE_RUNNING_STATE)
    assert doubles.count(Activity.ENTRIES_SINCE_BACKUP) == 0
    evidence = kinds(doubles, "t1")
    assert "decision" not in evidence
    written = [e for e in doubles.bundles["t1"]["entries"] if e["kind"] == "writes_since_reopen"]
    assert written[0]["data"] == {"tenant": "t1", "known": True, "rows": 0, "tables": []}
