"""Release spec: every validation rule, tenant resolution, waves and the sha256."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from governance import ReleaseSpec, ValidationFailed, parse_spec

pytestmark = pytest.mark.unit

IMAGE = "acr.example.io/odoo@sha256:" + "ab" * 32
BASE: dict[str, Any] = {
    "release_id": "FIN-2026-11-042",
    "work_item": 4711,
    "requested_by": "alice@example.com",
    "risk": "medium",
    "image": IMAGE,
    "modules": ["account"],
    "migrations": ["migrations/042_fix_tax_tags.sql"],
    "tenants": "all",
    "rollout": {
        "waves": [{"name": "canary", "size": 1}, {"name": "rest", "size": "100%"}],
        "bake": "30m",
    },
    "smoke": ["health", "login"],
}


def spec_text(**changes: Any) -> str:
    document = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = document
        for parent in parents:
            target = target[parent]
        if value is DELETE:
            del target[key]
        else:
            target[key] = value
    return yaml.safe_dump(document)


DELETE = object()


def problems_of(text: str, *context: Any) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as failed:
        parse_spec(text, *context)
    return {p.path: p.rule for p in failed.value.problems}


def test_valid_spec_resolves_all_tenants_in_inventory_order(inventory, policy, calendars):
    spec = parse_spec(spec_text(), inventory, policy, calendars)
    assert spec.tenants == ("berlin", "newyork", "tokyo")
    assert spec.rollout.bake.total_seconds() == 1800


def test_example_release_validates_against_example_documents(
    examples, inventory, policy, calendars
):
    spec = parse_spec((examples / "release.yaml").read_text(), inventory, policy, calendars)
    assert spec.waves() == [("canary", ["berlin"]), ("rest", ["newyork", "tokyo"])]


@pytest.mark.parametrize("release_id", ["ab", "x" * 65, "FIN 42", "FIN/42", 42])
def test_release_id_must_be_3_to_64_safe_characters(release_id):
    assert "release_id" in problems_of(spec_text(release_id=release_id))


@pytest.mark.parametrize(
    "image",
    [
        "acr.example.io/odoo:17.0",
        "acr.example.io/odoo@sha256:" + "ab" * 31,
        "acr.example.io/odoo@sha256:" + "AB" * 32,
        "acr.example.io/odoo:17.0@sha1:" + "ab" * 20,
    ],
)
def test_image_must_be_pinned_by_sha256_digest(image):
    assert "pinned by digest" in problems_of(spec_text(image=image))["image"]


def test_risk_must_be_a_known_class():
    assert "low | medium | high | emergency" in problems_of(spec_text(risk="critical"))["risk"]


def test_work_item_must_be_a_positive_number():
    assert "work_item" in problems_of(spec_text(work_item="CR-1"))


def test_waves_must_not_be_empty():
    assert "rollout.waves" in problems_of(spec_text(rollout__waves=[]))


@pytest.mark.parametrize("size", [0, -1, "0%", "101%", "25", "half", True, 2.5])
def test_wave_size_must_be_a_count_or_a_percentage(size):
    waves = [{"name": "canary", "size": size}, {"name": "rest", "size": "100%"}]
    rule = problems_of(spec_text(rollout__waves=waves))["rollout.waves[0].size"]
    assert rule.startswith("must be a count ≥ 1 or a percentage in (0, 100]")


def test_last_wave_must_reach_every_tenant():
    waves = [{"name": "canary", "size": 1}, {"name": "most", "size": "90%"}]
    assert "last wave" in problems_of(spec_text(rollout__waves=waves))["rollout.waves[1].size"]


def test_last_wave_count_must_cover_the_resolved_tenants(inventory):
    waves = [{"name": "canary", "size": 1}, {"name": "two", "size": 2}]
    problems = problems_of(spec_text(rollout__waves=waves), inventory)
    assert "last wave" in problems["rollout.waves[1].size"]


def test_wave_sizes_must_increase():
    waves = [{"name": "a", "size": "50%"}, {"name": "b", "size": "25%"}]
    waves.append({"name": "c", "size": "100%"})
    assert "larger" in problems_of(spec_text(rollout__waves=waves))["rollout.waves[1].size"]


def test_wave_may_not_reach_fewer_tenants_than_the_wave_before(inventory):
    waves = [{"name": "a", "size": "50%"}, {"name": "b", "size": 1}, {"name": "c", "size": "100%"}]
    problems = problems_of(spec_text(rollout__waves=waves), inventory)
    assert "fewer" in problems["rollout.waves[1].size"]


def test_wave_names_must_be_unique():
    waves = [{"name": "canary", "size": 1}, {"name": "canary", "size": "100%"}]
    assert "duplicate" in problems_of(spec_text(rollout__waves=waves))["rollout.waves[1].name"]


def test_max_parallel_must_be_at_least_one():
    assert "rollout.max_parallel" in problems_of(spec_text(rollout__max_parallel=0))


@pytest.mark.parametrize("ratio", [-0.1, 1.5, "none", True])
def test_max_failure_ratio_must_be_between_zero_and_one(ratio):
    assert "rollout.max_failure_ratio" in problems_of(spec_text(rollout__max_failure_ratio=ratio))


@pytest.mark.parametrize("bake", ["30 minutes", "1w", "m30", "", 30])
def test_bake_must_be_a_duration(bake):
    assert "rollout.bake" in problems_of(spec_text(rollout__bake=bake))


def test_promotion_and_on_failure_must_be_known_choices():
    problems = problems_of(spec_text(rollout__promotion="yolo", rollout__on_failure="pray"))
    assert {"rollout.promotion", "rollout.on_failure"} <= problems.keys()


def test_unknown_tenants_are_listed(inventory):
    problems = problems_of(spec_text(tenants=["berlin", "paris", "rome"]), inventory)
    assert problems["tenants"] == "unknown tenant(s): paris, rome"


def test_tenant_list_resolves_in_inventory_order(inventory):
    spec = parse_spec(spec_text(tenants=["tokyo", "berlin"]), inventory)
    assert spec.tenants == ("berlin", "tokyo")


def test_tier_selection_needs_a_tenant_of_that_tier(inventory):
    assert parse_spec(spec_text(tenants={"tier": "shared"}), inventory).tenants == (
        "berlin",
        "newyork",
        "tokyo",
    )
    assert (
        "no tenant of tier"
        in problems_of(spec_text(tenants={"tier": "dedicated"}), inventory)["tenants.tier"]
    )


def test_every_tenant_calendar_must_exist(inventory, policy, calendars):
    without_tokyo = {name: c for name, c in calendars.items() if name != "tokyo"}
    problems = problems_of(spec_text(), inventory, policy, without_tokyo)
    assert problems["tenants"] == "tenant tokyo: freeze calendar 'tokyo' not found"


def test_unknown_keys_are_errors_at_every_level():
    document = copy.deepcopy(BASE)
    document["approver"] = "bob"
    document["rollout"]["bake_time"] = "1h"
    document["rollout"]["waves"][0]["percent"] = 5
    problems = problems_of(yaml.safe_dump(document))
    assert {"approver", "rollout.bake_time", "rollout.waves[0].percent"} <= problems.keys()


def test_missing_required_keys_are_each_reported():
    problems = problems_of(spec_text(release_id=DELETE, image=DELETE))
    assert problems["release_id"] == "is required"
    assert problems["image"] == "is required"


def test_malformed_yaml_reports_line_and_column():
    problems = problems_of("release_id: FIN-1\nrollout: {waves: [\n")
    assert "line 3, column 1" in problems[""]


def test_duplicate_keys_are_refused():
    assert "duplicate key 'risk'" in problems_of(spec_text() + "risk: low\n")[""]


def test_migrations_must_be_relative_paths():
    problems = problems_of(spec_text(migrations=["/etc/passwd", "../secret.sql"]))
    assert {"migrations[0]", "migrations[1]"} <= problems.keys()


def test_smoke_checks_must_be_known():
    assert "unknown check" in problems_of(spec_text(smoke=["health", "vibes"]))["smoke[1]"]


def test_risk_class_must_exist_in_the_policy(policy):
    from dataclasses import replace

    partial = replace(policy, risk={k: v for k, v in policy.risk.items() if k != "medium"})
    assert "no rule for risk class" in problems_of(spec_text(), None, partial)["risk"]


def test_policy_requiring_manual_promotion_refuses_auto(policy):
    problems = problems_of(spec_text(risk="high", rollout__promotion="auto"), None, policy)
    assert "requires promotion: manual" in problems["rollout.promotion"]


def test_policy_manual_promotion_applies_when_spec_leaves_it_out(policy):
    assert parse_spec(spec_text(risk="high"), None, policy).rollout.promotion == "manual"


def test_every_problem_is_reported_not_just_the_first():
    problems = problems_of(spec_text(release_id="x", risk="none", rollout__max_parallel=0))
    assert {"release_id", "risk", "rollout.max_parallel"} <= problems.keys()


def test_same_content_has_the_same_sha256_whatever_the_formatting(inventory):
    first = parse_spec(spec_text(), inventory)
    reordered = yaml.safe_dump(dict(reversed(list(BASE.items()))), default_flow_style=True)
    assert parse_spec(reordered, inventory).sha256 == first.sha256
    assert parse_spec(spec_text(rollout__bake="0h30m"), inventory).sha256 == first.sha256


def test_any_change_of_content_changes_the_sha256(inventory):
    first = parse_spec(spec_text(), inventory)
    assert parse_spec(spec_text(modules=["account", "l10n_de"]), inventory).sha256 != first.sha256
    assert parse_spec(spec_text(tenants=["berlin"]), inventory).sha256 != first.sha256


def test_spec_survives_a_round_trip_through_its_canonical_form(inventory):
    spec = parse_spec(spec_text(), inventory)
    assert ReleaseSpec.from_canonical(spec.canonical()) == spec


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([1, "25%", "100%"], [["berlin"], ["newyork", "tokyo"]]),  # 25% of 3 adds nobody
        ([1, 2, 3], [["berlin"], ["newyork"], ["tokyo"]]),
        (["34%", "100%"], [["berlin", "newyork"], ["tokyo"]]),  # ceil(1.02) = 2
        (["100%"], [["berlin", "newyork", "tokyo"]]),
        ([5], [["berlin", "newyork", "tokyo"]]),
    ],
)
def test_wave_sizes_are_cumulative_and_empty_waves_are_dropped(inventory, sizes, expected):
    waves = [{"name": f"w{i}", "size": size} for i, size in enumerate(sizes)]
    spec = parse_spec(spec_text(rollout__waves=waves), inventory)
    assert [tenants for _, tenants in spec.waves()] == expected
    assert sorted(sum(expected, [])) == sorted(spec.tenants)


def test_a_release_over_more_tenants_than_its_history_can_hold_is_refused():
    from governance.inventory import parse_inventory
    from governance.spec import MAX_TENANTS

    count = MAX_TENANTS + 1
    tenants = [
        {
            "name": f"t{i:04d}",
            "tier": "shared",
            "namespace": f"odoo-t{i:04d}",
            "deployments": {"web": "odoo-web"},
            "db_server": "main",
            "database": f"odoo_t{i:04d}",
            "filestore": f"filestore/t{i:04d}",
            "url": f"https://t{i:04d}.example.io",
            "timezone": "Europe/Berlin",
            "calendar": "berlin",
        }
        for i in range(count)
    ]
    inventory = parse_inventory(yaml.safe_dump({"tenants": tenants}))
    problems = problems_of(spec_text(tenants="all"), inventory)
    assert problems["tenants"].startswith(f"{count} tenants in one release, at most {MAX_TENANTS}")
    assert "split it" in problems["tenants"]
    assert parse_spec(spec_text(tenants=[f"t{i:04d}" for i in range(MAX_TENANTS)]), inventory)
