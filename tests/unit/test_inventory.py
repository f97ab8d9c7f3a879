"""Tenant inventory parsing."""

from __future__ import annotations

import copy

import pytest
import yaml

from governance import ValidationFailed, parse_inventory

pytestmark = pytest.mark.unit

TENANT = {
    "name": "berlin",
    "tier": "shared",
    "namespace": "odoo-berlin",
    "deployments": {"web": "odoo-web", "worker": "odoo-worker", "cron": "odoo-cron"},
    "db_server": "main",
    "database": "odoo_berlin",
    "filestore": "filestore/berlin/",
    "url": "http://127.0.0.1:8069/berlin",
    "timezone": "Europe/Berlin",
    "calendar": "berlin",
}


def problems_of(*tenants: dict) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as failed:
        parse_inventory(yaml.safe_dump({"tenants": list(tenants)}))
    return {p.path: p.rule for p in failed.value.problems}


def changed(**changes: object) -> dict:
    tenant = copy.deepcopy(TENANT)
    tenant.update(changes)
    return tenant


def test_example_inventory_has_three_tenants_in_three_zones(inventory):
    assert inventory.names == ("berlin", "newyork", "tokyo")
    tokyo = inventory.get("tokyo")
    assert (tokyo.timezone, tokyo.database, tokyo.namespace) == (
        "Asia/Tokyo",
        "odoo_tokyo",
        "odoo-tokyo",
    )
    assert tokyo.deployments == {"web": "odoo-web", "worker": "odoo-worker", "cron": "odoo-cron"}
    assert tokyo.container == "odoo"


def test_tenant_names_must_be_unique():
    assert "duplicate" in problems_of(TENANT, changed(database="other"))["tenants[1].name"]


def test_db_server_must_be_an_alias_never_a_dsn():
    rule = problems_of(changed(db_server="postgresql://u:p@host/db"))["tenants[0].db_server"]
    assert "never a DSN" in rule


def test_unknown_time_zone_is_refused():
    assert (
        "unknown time zone"
        in problems_of(changed(timezone="Europe/Atlantis"))["tenants[0].timezone"]
    )


def test_unknown_tenant_key_is_refused():
    assert "tenants[0].calender" in problems_of(changed(calender="berlin"))


def test_missing_tenant_key_is_reported():
    tenant = copy.deepcopy(TENANT)
    del tenant["url"]
    assert problems_of(tenant)["tenants[0].url"] == "is required"


def test_deployments_need_web_and_only_known_roles():
    problems = problems_of(changed(deployments={"api": "odoo-api"}))
    assert {"tenants[0].deployments.web", "tenants[0].deployments.api"} <= problems.keys()


def test_tier_must_be_shared_or_dedicated():
    assert "tenants[0].tier" in problems_of(changed(tier="premium"))


def test_problems_of_every_tenant_are_reported():
    problems = problems_of(changed(tier="x"), changed(name="Bad_Name", url="ftp://x"))
    assert {"tenants[0].tier", "tenants[1].name", "tenants[1].url"} <= problems.keys()
