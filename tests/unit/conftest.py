"""Fixtures for the governance unit tests: the example documents in `examples/`."""

from __future__ import annotations

from pathlib import Path

import pytest

from governance import (
    ApprovalPolicy,
    FreezeCalendar,
    Inventory,
    parse_calendar,
    parse_inventory,
    parse_policy,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES


@pytest.fixture(scope="session")
def inventory() -> Inventory:
    return parse_inventory((EXAMPLES / "tenants.yaml").read_text())


@pytest.fixture(scope="session")
def policy() -> ApprovalPolicy:
    return parse_policy((EXAMPLES / "policy.yaml").read_text())


@pytest.fixture(scope="session")
def calendars() -> dict[str, FreezeCalendar]:
    return {
        path.stem: parse_calendar(path.read_text(), path.stem)
        for path in (EXAMPLES / "calendars").glob("*.yaml")
    }
