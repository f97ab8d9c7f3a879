"""Release spec (`release.yaml`): what is released, to whom, and how it rolls out.

Decisions where the contract leaves room:
- `size: N` is the *cumulative* number of tenants reached by the end of the wave, and
  `size: "P%"` the cumulative percentage of the release's tenants, rounded up. Sizes of the
  same kind must strictly increase; once tenants are resolved, a wave may not reach fewer
  tenants than the wave before. The last wave must reach every tenant ("100%", or a count
  ≥ the number of tenants). A wave that reaches no new tenant (canary 1 then 25% of 3) is
  dropped from `waves()`; every tenant is in exactly one wave.
- `tenants: all | [names] | {tier: shared|dedicated}` resolves in inventory order. Without
  an inventory the names listed are kept as written and `all` / `tier` resolve to nothing.
- `migrations` are relative paths (no `..`), read by the CLI relative to the spec file.
- When the policy asks a risk class for `promotion: manual`, a spec that leaves promotion
  out gets manual; a spec that says `auto` is refused.
- `smoke` checks are among health | login | trial_balance | cron (default: health).
- The sha256 is `sha256(canonical_json(spec.canonical()))`: over the *resolved* tenants.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from governance.calendar import FreezeCalendar
from governance.documents import Problems, format_duration, join, load_yaml, problems_only, quoted
from governance.documents import parse_duration as parse_duration
from governance.evidence import canonical_json
from governance.identity import read_identity
from governance.inventory import TIERS, Inventory
from governance.policy import RISK_CLASSES, ApprovalPolicy

RELEASE_ID = r"[A-Za-z0-9._-]{3,64}"
PINNED_IMAGE = r"[^\s@]+@sha256:[0-9a-f]{64}"
PROMOTIONS = ("auto", "manual")
ON_FAILURE = ("rollback_failed", "rollback_all")
SMOKE_CHECKS = ("health", "login", "trial_balance", "cron")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)%$")
# The release workflow's history takes 6 fixed events per tenant plus workflow tasks (9 in
# all at 1,000 tenants, up to 13 with rollback_all and every tenant rehearsed); Temporal
# warns at 10,240 events and terminates the workflow at 51,200. 2,000 keeps a wide margin.
MAX_TENANTS = 2000

_REQUIRED = ("release_id", "work_item", "requested_by", "risk", "image", "tenants", "rollout")
_OPTIONAL = ("modules", "migrations", "smoke")
_ROLLOUT_OPTIONAL = ("max_parallel", "max_failure_ratio", "bake", "promotion", "on_failure")
WAVE_SIZE_RULE = "must be a count ≥ 1 or a percentage in (0, 100]"


@dataclass(frozen=True)
class Wave:
    name: str
    size: int | None = None  # absolute count, or
    percent: float | None = None  # cumulative percentage of all tenants

    def reach(self, total: int) -> int:
        """Tenants reached (cumulatively) by the end of this wave, out of `total`."""
        if self.size is not None:
            return min(self.size, total)
        return min(total, math.ceil((self.percent or 0) * total / 100 - 1e-9))

    def canonical(self) -> dict[str, Any]:
        if self.size is not None:
            return {"name": self.name, "size": self.size}
        return {"name": self.name, "percent": self.percent}


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
        plan = self.rollout
        return {
            "release_id": self.release_id,
            "work_item": self.work_item,
            "requested_by": self.requested_by,
            "risk": self.risk,
            "image": self.image,
            "modules": list(self.modules),
            "migrations": list(self.migrations),
            "tenants": list(self.tenants),
            "rollout": {
                "waves": [w.canonical() for w in plan.waves],
                "max_parallel": plan.max_parallel,
                "max_failure_ratio": float(plan.max_failure_ratio),
                "bake": format_duration(plan.bake),
                "promotion": plan.promotion,
                "on_failure": plan.on_failure,
            },
            "smoke": list(self.smoke),
        }

    @property
    def sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.canonical()).encode("utf-8")).hexdigest()

    def waves(self) -> list[tuple[str, list[str]]]:
        """(wave name, tenant names) in rollout order; every tenant in exactly one wave."""
        total = len(self.tenants)
        plan: list[tuple[str, list[str]]] = []
        reached = 0
        for wave in self.rollout.waves:
            reach = max(reached, wave.reach(total))
            if reach > reached:
                plan.append((wave.name, list(self.tenants[reached:reach])))
            reached = reach
        if reached < total:  # parse_spec refuses this; never lose a tenant regardless
            plan.append((self.rollout.waves[-1].name, list(self.tenants[reached:])))
        return plan

    @classmethod
    def from_canonical(cls, data: Mapping[str, Any]) -> ReleaseSpec:
        """Rebuild a spec from `canonical()` output (e.g. kept in workflow state)."""
        plan = data["rollout"]
        return cls(
            release_id=data["release_id"],
            work_item=data["work_item"],
            requested_by=data["requested_by"],
            risk=data["risk"],
            image=data["image"],
            modules=tuple(data["modules"]),
            migrations=tuple(data["migrations"]),
            tenants=tuple(data["tenants"]),
            rollout=RolloutPlan(
                waves=tuple(
                    Wave(w["name"], w.get("size"), w.get("percent")) for w in plan["waves"]
                ),
                max_parallel=plan["max_parallel"],
                max_failure_ratio=plan["max_failure_ratio"],
                bake=parse_duration(plan["bake"]),
                promotion=plan["promotion"],
                on_failure=plan["on_failure"],
            ),
            smoke=tuple(data["smoke"]),
        )

    @property
    def first_wave(self) -> list[str]:
        waves = self.waves()
        return waves[0][1] if waves else []


def parse_spec(
    text: str,
    inventory: Inventory | None = None,
    policy: ApprovalPolicy | None = None,
    calendars: Mapping[str, FreezeCalendar] | None = None,
) -> ReleaseSpec:
    """Parse and validate; raise `ValidationFailed` with every problem (never anything else)."""
    return _parse(text, inventory, policy, calendars)


@problems_only
def _parse(
    text: str,
    inventory: Inventory | None,
    policy: ApprovalPolicy | None,
    calendars: Mapping[str, FreezeCalendar] | None,
) -> ReleaseSpec:
    document = load_yaml(text)
    problems = Problems()
    root = problems.keys(document, "", _REQUIRED, _OPTIONAL)
    if root is None:
        problems.raise_if_any()
    assert root is not None
    # A missing required key is already reported; its value is then simply not checked.
    checks: dict[str, Callable[[Any], Any]] = {
        "release_id": lambda v: problems.text(
            v, "release_id", RELEASE_ID, "must be 3-64 of A-Z a-z 0-9 . _ -"
        ),
        "work_item": lambda v: problems.integer(v, "work_item", minimum=1),
        "requested_by": lambda v: read_identity(v, "requested_by", problems),
        "risk": lambda v: problems.choice(v, "risk", RISK_CLASSES),
        "image": lambda v: problems.text(
            v, "image", PINNED_IMAGE, "must be pinned by digest: <repository>@sha256:<64 hex>"
        ),
    }
    value = {key: check(root[key]) for key, check in checks.items() if key in root}
    release_id, work_item = value.get("release_id"), value.get("work_item")
    requested_by = value.get("requested_by")
    risk, image = value.get("risk"), value.get("image")
    modules = problems.texts(root.get("modules", []), "modules") or []
    migrations = _migrations(root.get("migrations", []), problems)
    smoke = problems.texts(root.get("smoke", ["health"]), "smoke") or []
    for i, smoke_check in enumerate(smoke):
        if smoke_check not in SMOKE_CHECKS:
            known = " | ".join(SMOKE_CHECKS)
            problems.add(join("smoke", i), f"unknown check {quoted(smoke_check)} ({known})")
    tenants = _tenants(root["tenants"], inventory, problems) if "tenants" in root else []
    if len(tenants) > MAX_TENANTS:
        problems.add(
            "tenants",
            f"{len(tenants)} tenants in one release, at most {MAX_TENANTS}: a release's history"
            " grows by about 10 events per tenant and Temporal ends a workflow at 51,200;"
            " split it into several releases",
        )
    total = len(tenants) if inventory is not None else None
    plan = _rollout(root["rollout"], total, problems) if "rollout" in root else None
    if risk is not None and policy is not None:
        plan = _apply_policy(plan, risk, policy, root.get("rollout"), problems)
    if inventory is not None and calendars is not None:
        for name in tenants:
            tenant = inventory.get(name)
            if tenant.calendar not in calendars:
                problems.add(
                    "tenants", f"tenant {name}: freeze calendar {quoted(tenant.calendar)} not found"
                )
    problems.raise_if_any()
    assert plan is not None
    return ReleaseSpec(
        release_id=str(release_id),
        work_item=int(work_item or 0),
        requested_by=str(requested_by),
        risk=str(risk),
        image=str(image),
        modules=tuple(modules),
        migrations=tuple(migrations),
        tenants=tuple(tenants),
        rollout=plan,
        smoke=tuple(smoke),
    )


def _migrations(value: Any, problems: Problems) -> list[str]:
    paths = problems.texts(value, "migrations") or []
    for i, path in enumerate(paths):
        parts = path.replace("\\", "/").split("/")
        if path.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", path):
            problems.add(
                join("migrations", i), f"must be a path relative to the spec, not {quoted(path)}"
            )
    return paths


def _tenants(value: Any, inventory: Inventory | None, problems: Problems) -> list[str]:
    """Resolve the tenant selection against the inventory, in inventory order."""
    known = inventory.names if inventory else ()
    if value == "all":
        if inventory is not None and not known:
            problems.add("tenants", "the inventory has no tenants")
        return list(known)
    if isinstance(value, list):
        names = problems.texts(value, "tenants")
        if names is None:
            return []
        if not names:
            problems.add("tenants", "must name at least one tenant")
        if inventory is None:
            return names
        unknown = [n for n in names if n not in known]
        if unknown:
            problems.add("tenants", f"unknown tenant(s): {', '.join(unknown)}")
        return [n for n in known if n in names]
    if isinstance(value, Mapping):
        selector = problems.keys(value, "tenants", required=("tier",))
        tier = problems.choice(selector.get("tier"), "tenants.tier", TIERS) if selector else None
        if tier is None or inventory is None:
            return []
        chosen = [t.name for t in inventory.tenants if t.tier == tier]
        if not chosen:
            problems.add("tenants.tier", f"no tenant of tier {quoted(tier)} in the inventory")
        return chosen
    problems.add("tenants", f"must be all, a list of names or {{tier: ...}}, not {quoted(value)}")
    return []


def _rollout(value: Any, total: int | None, problems: Problems) -> RolloutPlan | None:
    mapping = problems.keys(value, "rollout", ("waves",), _ROLLOUT_OPTIONAL)
    if mapping is None:
        return None
    waves = _waves(mapping.get("waves", []), total, problems)
    max_parallel = problems.integer(mapping.get("max_parallel", 10), "rollout.max_parallel", 1)
    ratio = mapping.get("max_failure_ratio", 0.0)
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
        problems.add(
            "rollout.max_failure_ratio", f"must be a number in [0, 1], not {quoted(ratio)}"
        )
        ratio = None
    bake = problems.duration(mapping.get("bake", "0s"), "rollout.bake")
    promotion = problems.choice(mapping.get("promotion", "auto"), "rollout.promotion", PROMOTIONS)
    on_failure = problems.choice(
        mapping.get("on_failure", "rollback_failed"), "rollout.on_failure", ON_FAILURE
    )
    if waves is None or None in (max_parallel, ratio, bake, promotion, on_failure):
        return None
    return RolloutPlan(
        waves=tuple(waves),
        max_parallel=int(max_parallel or 1),
        max_failure_ratio=float(ratio or 0.0),
        bake=bake or timedelta(0),
        promotion=str(promotion),
        on_failure=str(on_failure),
    )


def _waves(value: Any, total: int | None, problems: Problems) -> list[Wave] | None:
    if not isinstance(value, list) or not value:
        problems.add("rollout.waves", "must be a non-empty list of {name, size}")
        return None
    waves: list[Wave] = []
    for i, item in enumerate(value):
        path = join("rollout.waves", i)
        mapping = problems.keys(item, path, ("name", "size"))
        if mapping is None or "name" not in mapping or "size" not in mapping:
            continue
        name = problems.text(mapping["name"], join(path, "name"))
        wave = _wave_size(str(name), mapping["size"], join(path, "size"), problems)
        if name is not None and wave is not None:
            waves.append(wave)
    if len(waves) != len(value):
        return None
    _check_wave_order(waves, total, problems)
    return waves


def _wave_size(name: str, size: Any, path: str, problems: Problems) -> Wave | None:
    if isinstance(size, int) and not isinstance(size, bool) and size >= 1:
        return Wave(name, size=size)
    match = _PERCENT.match(size) if isinstance(size, str) else None
    if match and 0 < float(match.group(1)) <= 100:
        return Wave(name, percent=float(match.group(1)))
    problems.add(path, f"{WAVE_SIZE_RULE}, not {quoted(size)}")
    return None


def _check_wave_order(waves: list[Wave], total: int | None, problems: Problems) -> None:
    seen: set[str] = set()
    last_count: int | None = None
    last_percent: float | None = None
    reached = 0
    for i, wave in enumerate(waves):
        path = join("rollout.waves", i)
        if wave.name in seen:
            problems.add(join(path, "name"), f"duplicate wave name {quoted(wave.name)}")
        seen.add(wave.name)
        if wave.size is not None:
            if last_count is not None and wave.size <= last_count:
                problems.add(join(path, "size"), f"must be larger than the earlier {last_count}")
            last_count = wave.size
        if wave.percent is not None:
            if last_percent is not None and wave.percent <= last_percent:
                problems.add(join(path, "size"), f"must be larger than the earlier {last_percent}%")
            last_percent = wave.percent
        if total is not None:
            reach = wave.reach(total)
            if reach < reached:
                problems.add(
                    join(path, "size"),
                    f"reaches {reach} tenant(s), fewer than the {reached} reached before it",
                )
            reached = max(reached, reach)
    final = waves[-1]
    incomplete = final.percent is not None and final.percent < 100
    if total is not None and final.size is not None:
        incomplete = final.size < total
    elif total is None and final.size is not None:
        incomplete = False  # a count can only be checked once the tenants are known
    if incomplete:
        problems.add(
            join(join("rollout.waves", len(waves) - 1), "size"),
            'the last wave must reach every tenant ("100%")',
        )


def _apply_policy(
    plan: RolloutPlan | None,
    risk: str,
    policy: ApprovalPolicy,
    rollout: Any,
    problems: Problems,
) -> RolloutPlan | None:
    rule = policy.risk.get(risk)
    if rule is None:
        problems.add("risk", f"the approval policy has no rule for risk class {quoted(risk)}")
        return plan
    if plan is None or rule.promotion is None or rule.promotion == plan.promotion:
        return plan
    if isinstance(rollout, Mapping) and "promotion" in rollout:
        problems.add(
            "rollout.promotion",
            f"the policy requires promotion: {rule.promotion} for {risk} releases",
        )
        return plan
    return RolloutPlan(
        waves=plan.waves,
        max_parallel=plan.max_parallel,
        max_failure_ratio=plan.max_failure_ratio,
        bake=plan.bake,
        promotion=rule.promotion,
        on_failure=plan.on_failure,
    )
