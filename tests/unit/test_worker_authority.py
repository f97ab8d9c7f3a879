"""The side-effecting workers' own check of a release's signed authority (workers.authority)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from devstack.signing import signed_bundle
from governance.bundle import parse_bundle
from governance.trust import parse_trust_root
from tests.workflows.release_harness import (
    IMAGE,
    KEYS,
    REQUESTER,
    TRUST_ROOT,
    Release,
    inventory_text,
    make_release,
    people_of,
)
from workers.authority import Change, NotAuthorized, check_change
from workflows.messages import Authorization, RecordedSignedStatement, SignedStatement

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # a Wednesday, no close in the test calendars
ROOT = parse_trust_root(TRUST_ROOT)
TWO_WAVES = [{"name": "canary", "size": 1}, {"name": "rest", "size": "100%"}]


def recorded(signed: SignedStatement, at: datetime) -> RecordedSignedStatement:
    return RecordedSignedStatement(
        signed.statement, signed.signature, signed.comment, at.isoformat()
    )


def authorized(
    release: Release, *extra: RecordedSignedStatement, approvals: bool = True
) -> Authorization:
    """The release's record as its workflow would answer: start, the approvals, `extra`."""
    statements = [recorded(release.statement("start", REQUESTER, NOW), NOW)]
    if approvals:
        needed = {"low": [("bob@example.com", "platform")], "high": [
            ("bob@example.com", "platform"), ("carol@example.com", "finance"),
            ("erin@example.com", "release_manager"),
        ]}[release.risk]  # fmt: skip
        for minute, (who, role) in enumerate(needed, 1):
            at = NOW + timedelta(minutes=minute)
            statements.append(recorded(release.statement("approve", who, at, role=role), at))
    request = release.request
    return Authorization(
        release.release_id,
        spec=request.spec,
        governance=request.governance,
        migrations=list(request.migrations),
        statements=statements + list(extra),
    )


def change(release: Release, tenant: str = "t1", **fields: object) -> Change:
    inventory = parse_bundle(release.request.governance.bundle.encode()).inventory
    known = {t.name for t in inventory.tenants}
    entry = dataclasses.asdict(inventory.get(tenant)) if tenant in known else None
    values: dict[str, object] = {
        "activity": "set_image",
        "workflow_id": f"release-{release.release_id}-{tenant}",
        "release_id": release.release_id,
        "tenant": tenant,
        "tenant_entry": entry,
        "image": IMAGE,
        "enters_maintenance": False,
    }
    values.update(fields)
    return Change(**values)  # type: ignore[arg-type]


def refusal(change_: Change, record: Authorization, now: datetime = NOW) -> str:
    with pytest.raises(NotAuthorized) as refused:
        check_change(change_, record, ROOT, now + timedelta(hours=1))
    return str(refused.value)


def test_an_approved_release_may_change_its_tenant() -> None:
    release = make_release("q", 2)
    check_change(change(release), authorized(release), ROOT, NOW + timedelta(hours=1))


def test_a_change_scheduled_by_any_other_workflow_is_refused() -> None:
    release = make_release("q", 2)
    message = refusal(change(release, workflow_id="attacker-rollout"), authorized(release))
    assert "not by the release's own rollout" in message


def test_without_a_quorum_of_signed_approvals_nothing_changes() -> None:
    release = make_release("q", 2)
    assert "still missing {'platform': 1}" in refusal(
        change(release), authorized(release, approvals=False)
    )
    # the requester's own approval, even validly signed, does not count
    own = recorded(release.statement("approve", REQUESTER, NOW, role="platform"), NOW)
    assert "still missing" in refusal(change(release), authorized(release, own, approvals=False))


def test_a_forged_approval_counts_for_nothing() -> None:
    release = make_release("q", 2)
    good = release.statement("approve", "bob@example.com", NOW, role="platform")
    flipped = (
        good.signature[:60] + ("A" if good.signature[60] != "A" else "B") + good.signature[61:]
    )
    forged = recorded(dataclasses.replace(good, signature=flipped), NOW)
    assert "still missing" in refusal(change(release), authorized(release, forged, approvals=False))


def test_approvals_issued_after_the_approval_window_do_not_count() -> None:
    release = make_release("q", 2)
    late_at = NOW + timedelta(hours=73)  # the policy's approval_timeout is 72h
    late = recorded(
        release.statement("approve", "bob@example.com", late_at, role="platform"), late_at
    )
    assert "still missing" in refusal(
        change(release), authorized(release, late, approvals=False), late_at
    )


def test_a_rejection_and_a_sealed_release_refuse_every_change() -> None:
    release = make_release("q", 2)
    rejected = recorded(release.statement("reject", "dan@example.com", NOW, role="platform"), NOW)
    assert "was rejected by dan@example.com" in refusal(
        change(release), authorized(release, rejected)
    )
    sealed = dataclasses.replace(authorized(release), sealed=True)
    assert "is sealed" in refusal(change(release), sealed)


def test_another_image_or_another_database_than_the_signed_ones_is_refused() -> None:
    release = make_release("q", 2)
    other = "acr.example.io/odoo@sha256:" + "b" * 64
    assert "is not the approved" in refusal(change(release, image=other), authorized(release))
    entry = change(release).tenant_entry
    assert entry is not None
    moved = {**entry, "database": "odoo_payroll"}
    assert "database differ from the signed inventory" in refusal(
        change(release, tenant_entry=moved), authorized(release)
    )
    stranger = change(release, tenant="t9", workflow_id=f"release-{release.release_id}-t9")
    assert "is not in release" in refusal(
        dataclasses.replace(stranger, tenant_entry=None), authorized(release)
    )


def test_a_bundle_signed_by_one_administrator_of_two_is_refused() -> None:
    release = make_release("q", 2)
    record = authorized(release)
    assert record.governance is not None
    record.governance = dataclasses.replace(
        record.governance, signatures=record.governance.signatures[:1]
    )
    assert "quorum_not_met" in refusal(change(release), record)


def test_a_gated_wave_needs_a_signed_promotion_by_an_operator_not_the_requester() -> None:
    release = make_release(
        "q", 2, risk="high", waves=TWO_WAVES, policy_extra={"release_manager": [REQUESTER]}
    )
    later = NOW + timedelta(minutes=30)
    check_change(change(release, "t1"), authorized(release), ROOT, later)  # the canary
    assert "wave 'rest' of t2 has no signed promotion" in refusal(
        change(release, "t2"), authorized(release)
    )
    own = recorded(release.statement("promote", REQUESTER, later, wave="rest"), later)
    assert "no signed promotion" in refusal(change(release, "t2"), authorized(release, own))
    promoted = recorded(
        release.statement("promote", "operator@example.com", later, wave="rest"), later
    )
    check_change(change(release, "t2"), authorized(release, promoted), ROOT, later)


def test_maintenance_begins_only_inside_the_deployment_window() -> None:
    berlin = "timezone: Europe/Berlin\ndeployment_windows:\n  - {days: [sat], start: '20:00', end: '24:00'}\n"
    release = make_release("q", {"t1": ("Europe/Berlin", "berlin")}, calendars={"berlin": berlin})
    entering = change(release, activity="set_maintenance", image=None, enters_maintenance=True)
    wednesday = NOW + timedelta(hours=1)
    with pytest.raises(NotAuthorized) as refused:
        check_change(entering, authorized(release), ROOT, wednesday)
    assert "outside its deployment window" in str(refused.value)
    saturday_night = datetime(2026, 12, 5, 20, 30, tzinfo=UTC)
    check_change(entering, authorized(release), ROOT, saturday_night)


def test_the_bundle_must_be_the_one_the_approvals_signed() -> None:
    release = make_release("q", 2)
    record = authorized(release)
    # the same documents re-signed with a changed member list: a new digest, old approvals
    policy = parse_bundle(release.request.governance.bundle.encode()).texts["policy"]
    record.governance = signed_bundle(
        KEYS,
        policy=policy,
        inventory=inventory_text(
            {"t1": ("Europe/Berlin", "anytime"), "t2": ("Europe/Berlin", "anytime")}
        ),
        calendars={"anytime": "timezone: Europe/Berlin\n"},
        people=[*people_of(policy), "mallory@example.com"],
        serial=2,
    )
    assert "no valid start statement" in refusal(change(release), record)
