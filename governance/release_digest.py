"""The release digest approvers sign: one sha256 over everything that will run, and where.

`release_manifest` is what the digest covers, shown to an approver before they sign:

    {"format": "finrelease-release/1",
     "spec": spec.canonical(),                       # resolved tenants, waves, risk ...
     "image_digest": "sha256:...",                   # the pinned image
     "migrations": [{"name", "sha256"}, ...],        # of each script's *content*, in order
     "tenants": [inventory entry, ...],              # of the release's tenants, in order
     "policy_sha256": ..., "members_sha256": ...,    # who approves, with which keys
     "calendars": {name: sha256}}                    # the calendars of those tenants

`release_digest = sha256(canonical_json(manifest))`. Changing a byte of a migration, an
inventory entry of one of the release's tenants, the policy, a member's key or a calendar in
use changes the digest, so an approval cannot be carried over to something else.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

from governance.bundle import GovernanceBundle
from governance.evidence import canonical_json
from governance.quoting import quoted
from governance.spec import ReleaseSpec

FORMAT = "finrelease-release/1"


def release_manifest(
    spec: ReleaseSpec, migrations: Sequence[tuple[str, str | bytes]], bundle: GovernanceBundle
) -> dict[str, Any]:
    """What the digest covers; `migrations` are (name, content) in the spec's order.
    ValueError when they are not the spec's migrations or a tenant is not in the bundle."""
    names = [name for name, _ in migrations]
    if names != list(spec.migrations):
        raise ValueError(
            f"migrations: {quoted(names, 80)} are not the spec's {quoted(list(spec.migrations), 80)}"
        )
    tenants = []
    for name in spec.tenants:
        try:
            tenants.append(dataclasses.asdict(bundle.inventory.get(name)))
        except KeyError:
            raise ValueError(
                f"tenants: {quoted(name)} is not in the governance bundle's inventory"
            ) from None
    used = sorted({tenant["calendar"] for tenant in tenants})
    return {
        "format": FORMAT,
        "spec": spec.canonical(),
        "image_digest": spec.image.rpartition("@")[2],
        "migrations": [{"name": name, "sha256": _sha256(content)} for name, content in migrations],
        "tenants": tenants,
        "policy_sha256": _sha256(bundle.texts["policy"]),
        "members_sha256": _sha256(
            canonical_json(
                {who: [k.openssh() for k in keys] for who, keys in bundle.members.items()}
            )
        ),
        "calendars": {name: _sha256(bundle.texts["calendars"][name]) for name in used},
    }


def release_digest(
    spec: ReleaseSpec, migrations: Sequence[tuple[str, str | bytes]], bundle: GovernanceBundle
) -> str:
    """sha256 (hex) of the canonical manifest: the `bundle_digest` approval statements sign."""
    return _sha256(canonical_json(release_manifest(spec, migrations, bundle)))


def _sha256(content: str | bytes) -> str:
    data = content.encode("utf-8") if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()
