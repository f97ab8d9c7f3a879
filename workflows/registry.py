"""What the `finrelease-workflows` worker registers: the saga's workflows and the lock's activities.

The lock's activities need a client (signal-with-start, describe), so the worker builds
`TenantLockActivities(client)` and registers `.activities()` beside `WORKFLOWS`.
"""

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from workflows.lock import TenantLock, TenantLockActivities
from workflows.release import FinanceRelease
from workflows.tenant import TenantRollout

WORKFLOWS = [FinanceRelease, TenantRollout, TenantLock]
# Signatures are verified inside the workflow (update validators); `cryptography` is a
# deterministic native library, passed through rather than re-imported per run (sdk-python
# README, "Passthrough Modules"). Every worker and replayer of WORKFLOWS uses this runner.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("cryptography")
)

__all__ = [
    "WORKFLOW_RUNNER",
    "WORKFLOWS",
    "FinanceRelease",
    "TenantLock",
    "TenantLockActivities",
    "TenantRollout",
]
