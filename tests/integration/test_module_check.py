"""A release may only update modules installed on the tenant: Odoo would skip the others
and report success."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from devstack.odoo_seed import seed_odoo_database
from tests.integration.conftest import tenant_on
from workflows.contracts import ErrorType, ModuleCheck


@pytest.mark.parametrize("version", ["17.0", "18.0"])
async def test_installed_modules_pass_with_their_versions(postgres, pg_database, version):
    seed_odoo_database(pg_database.dsn, entries=5, version=version)
    check = ModuleCheck("rel-m", tenant_on(pg_database.name), ["account", "mail"])

    result = await ActivityEnvironment().run(postgres.check_modules, check)

    assert result.versions == {"account": f"{version}.1.3", "mail": f"{version}.1.3"}


async def test_uninstalled_and_unknown_modules_are_refused_by_name(postgres, pg_database):
    seed_odoo_database(pg_database.dsn, entries=5)
    check = ModuleCheck(
        "rel-m", tenant_on(pg_database.name), ["account", "sale_management", "acount"]
    )

    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(postgres.check_modules, check)

    assert refused.value.type == ErrorType.INVALID_RELEASE and refused.value.non_retryable
    message = str(refused.value)
    assert "sale_management (uninstalled)" in message
    assert "acount (unknown to the database)" in message
    assert "account (" not in message


async def test_a_module_name_that_cannot_be_odoo_is_refused_before_any_query(postgres):
    check = ModuleCheck("rel-m", tenant_on("never_connected"), ["account; DROP TABLE x"])

    with pytest.raises(ApplicationError, match=r"expected Odoo technical names"):
        await ActivityEnvironment().run(postgres.check_modules, check)
