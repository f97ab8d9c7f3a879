"""Release spec (`release.yaml`): what is released, to whom, and how it rolls out.

INTERFACE STUB — the governance work implements it; names and signatures are the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from governance.calendar import FreezeCalendar
from governance.inventory import Inventory
from governance.policy import ApprovalPolicy


@dataclass(frozen=True)
class Wave:
    name: str
    size: int | None = None  # absolute count, or
    percent: float | None = None  # cumulative percentage of all tenants


@dataclass(frozen=True)
class RolloutPlan:
    waves: tuple[Wave, ...]
    max_parallel: int = 10
    max_failure_ratio: float = 0.0
    bake: timedelta = timedelta(0)
    promotion: str = "auto"  # auto | manual
    on_failure: str = "rollback_failed"  # rollback_failed | rollback_all


@dataclass(frozen=True)
class ReleaseSpec:
    release_id: str
    work_item: int
    requested_by: str
    risk: str
    image: str
    modules: tuple[str, ...]
    migrations: tuple[str, ...]
    tenants: tuple[str, ...]  # resolved against the inventory, in inventory order
    rollout: RolloutPlan
    smoke: tuple[str, ...]

    def canonical(self) -> dict:
        """The normalised spec as plain JSON data (what the sha256 covers)."""
        raise NotImplementedError

    @property
    def sha256(self) -> str:
        raise NotImplementedError

    def waves(self) -> list[tuple[str, list[str]]]:
        """(wave name, tenant names) in rollout order; every tenant in exactly one wave."""
        raise NotImplementedError


def parse_spec(
    text: str,
    inventory: Inventory | None = None,
    policy: ApprovalPolicy | None = None,
    calendars: Mapping[str, FreezeCalendar] | None = None,
) -> ReleaseSpec:
    """Parse and validate; raise `ValidationFailed` with every problem (never anything else)."""
    raise NotImplementedError


def parse_duration(text: str) -> timedelta:
    """`30m`, `72h`, `2d`, `45s` (and combinations like `1h30m`); ValueError otherwise."""
    raise NotImplementedError
