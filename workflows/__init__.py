"""The release saga's workflows: register `WORKFLOWS` on the `finrelease-workflows` worker.

That worker also registers `TenantLockActivities(client).request_tenant_lock` (the lock's
signal-with-start needs a client; see workflows/lock.py).
"""

from workflows.lock import TenantLock, TenantLockActivities
from workflows.release import FinanceRelease
from workflows.tenant import TenantRollout

WORKFLOWS = [FinanceRelease, TenantRollout, TenantLock]

__all__ = ["WORKFLOWS", "FinanceRelease", "TenantLock", "TenantLockActivities", "TenantRollout"]
