"""The release digest changes with anything that will run or decide, and nothing else."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from governance import sshsig
from governance.bundle import pack_bundle, parse_bundle
from governance.release_digest import release_digest, release_manifest
from governance.spec import parse_spec
from tests.signing_people import EXAMPLES, PEOPLE

pytestmark = pytest.mark.unit

KEYS = {
    who: [sshsig.public_key_of(ed25519.Ed25519PrivateKey.generate()).openssh()] for who in PEOPLE
}
SQL = [("migrations/042_fix_tax_tags.sql", "UPDATE account_tax SET active = true;\n")]


def bundle(**changes):
    texts = dict(
        serial=1,
        policy=(EXAMPLES / "policy.yaml").read_text(),
        inventory=(EXAMPLES / "tenants.yaml").read_text(),
        calendars={p.stem: p.read_text() for p in (EXAMPLES / "calendars").glob("*.yaml")},
        members=KEYS,
    )
    texts.update(changes)
    return parse_bundle(pack_bundle(**texts))


def spec(text: str | None = None, governance=None):
    governance = governance or bundle()
    return parse_spec(
        text or (EXAMPLES / "release.yaml").read_text(),
        governance.inventory,
        governance.policy,
        governance.calendars,
    )


BASE = bundle()
DIGEST = release_digest(spec(), SQL, BASE)


def test_manifest_shows_what_the_digest_covers():
    manifest = release_manifest(spec(), SQL, BASE)
    assert manifest["image_digest"].startswith("sha256:4f5c2a9d")
    assert manifest["migrations"][0]["name"] == "migrations/042_fix_tax_tags.sql"
    assert len(manifest["migrations"][0]["sha256"]) == 64
    assert [t["name"] for t in manifest["tenants"]] == ["berlin", "newyork", "tokyo"]
    assert set(manifest["calendars"]) == {"berlin", "newyork", "tokyo"}  # demo is not used
    assert len(DIGEST) == 64 and release_digest(spec(), SQL, bundle()) == DIGEST


def test_digest_changes_with_each_thing_that_will_run_or_decide():
    release = (EXAMPLES / "release.yaml").read_text()
    inventory = (EXAMPLES / "tenants.yaml").read_text()
    calendar = (EXAMPLES / "calendars" / "berlin.yaml").read_text()
    policy = (EXAMPLES / "policy.yaml").read_text()
    other_key = {
        **KEYS,
        "carol@example.com": [sshsig.public_key_of(ed25519.Ed25519PrivateKey.generate()).openssh()],
    }
    berlin_moved = bundle(
        inventory=inventory.replace("database: odoo_berlin", "database: odoo_berlin2")
    )
    berlin_closes = bundle(
        calendars={**BASE.texts["calendars"], "berlin": calendar + "\n# edited\n"}
    )
    timeout = bundle(policy=policy.replace("approval_timeout: 72h", "approval_timeout: 96h"))
    variants = {
        "migration content": release_digest(
            spec(), [(SQL[0][0], SQL[0][1] + "DROP TABLE x;\n")], BASE
        ),
        "image": release_digest(spec(release.replace("4f5c2a9d", "5f5c2a9d")), SQL, BASE),
        "spec": release_digest(
            spec(release.replace("max_parallel: 2", "max_parallel: 1")), SQL, BASE
        ),
        "tenant entry": release_digest(spec(governance=berlin_moved), SQL, berlin_moved),
        "calendar": release_digest(spec(governance=berlin_closes), SQL, berlin_closes),
        "policy": release_digest(spec(governance=timeout), SQL, timeout),
        "member key": release_digest(spec(), SQL, bundle(members=other_key)),
    }
    assert all(value != DIGEST for value in variants.values()), variants
    assert len(set(variants.values())) == len(variants)


def test_digest_ignores_what_the_release_does_not_use():
    calendars = {
        **BASE.texts["calendars"],
        "demo": BASE.texts["calendars"]["demo"] + "\n# edited\n",
    }
    assert release_digest(spec(), SQL, bundle(calendars=calendars)) == DIGEST
    assert release_digest(spec(), SQL, bundle(serial=2)) == DIGEST


def test_migrations_must_be_the_specs_in_order():
    with pytest.raises(ValueError, match="are not the spec's"):
        release_digest(spec(), [], BASE)
    with pytest.raises(ValueError, match="are not the spec's"):
        release_digest(spec(), [("migrations/other.sql", "SELECT 1;")], BASE)
