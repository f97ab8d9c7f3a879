"""Which Odoo modules a tenant has installed: a release may only update those.

`odoo -u <name>` silently skips a name that is unknown or not installed and still exits 0
(odoo/modules/loading.py marks only installed modules `to upgrade`), so an update of a typo
would "succeed" having done nothing. States are those of `ir.module.module`
(odoo/addons/base/models/ir_module.py `STATES`); `to upgrade` is installed, pending an update.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from temporalio.exceptions import ApplicationError

from workflows.contracts import ErrorType

INSTALLED = ("installed", "to upgrade")
MODULE_NAME = re.compile(r"^[a-z0-9_]+$")  # technical names: the addon's directory name

STATES = "SELECT name, state, latest_version FROM ir_module_module WHERE name = ANY(%s)"


def check_module_names(tenant: str, modules: list[str]) -> None:
    """Refuse (non-retryable) a list that cannot name Odoo modules, before any connection."""
    malformed = [m for m in modules if not MODULE_NAME.match(m)]
    if malformed or not modules:
        raise ApplicationError(
            f"modules of tenant {tenant}: expected Odoo technical names ([a-z0-9_]+), "
            f"got {malformed or modules}",
            type=ErrorType.INVALID_RELEASE,
            non_retryable=True,
        )


async def installed_versions(
    conn: psycopg.AsyncConnection[Any], tenant: str, modules: list[str]
) -> dict[str, str]:
    """`latest_version` of each of `modules`; refuses (non-retryable) any not installed."""
    check_module_names(tenant, modules)
    rows = await (await conn.execute(STATES, (list(modules),))).fetchall()
    found = {name: (state, version) for name, state, version in rows}
    refused = [
        f"{m} ({found[m][0]})" if m in found else f"{m} (unknown to the database)"
        for m in modules
        if found.get(m, ("", ""))[0] not in INSTALLED
    ]
    if refused:
        raise ApplicationError(
            f"tenant {tenant} cannot update modules that are not installed: "
            f"{', '.join(refused)}; Odoo would skip them and report success",
            type=ErrorType.INVALID_RELEASE,
            non_retryable=True,
        )
    return {m: str(found[m][1] or "") for m in modules}
