"""What the `finrelease-workflows` worker registers: the saga's workflows and the lock's activities.

The lock's activities need a client (signal-with-start, describe), so the worker builds
`TenantLockActivities(client)` and registers `.activities()` beside `WORKFLOWS`.
"""

from workflows.lock import TenantLock, TenantLockActivities
from workflows.release import FinanceRelease
from workflows.tenant import TenantRollout

WORKFLOWS = [FinanceRelease, TenantRollout, TenantLock]

__all__ = ["WORKFLOWS", "FinanceRelease", "TenantLock", "TenantLockActivities", "TenantRollout"]
