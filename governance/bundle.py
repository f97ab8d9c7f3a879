"""The governance bundle: policy, members' keys, calendars and inventory, signed K of N.

The bundle is one canonical JSON document (sorted keys, no whitespace, UTF-8):

    {"format": "finrelease-governance/1", "serial": 7,
     "policy": "<policy.yaml text>", "inventory": "<tenants.yaml text>",
     "calendars": {"berlin": "<calendars/berlin.yaml text>", ...},
     "members": {"carol@example.com": ["ssh-ed25519 AAAA..."], ...}}

Its digest is the sha256 of those bytes. Each governance administrator signs the same bytes
in the `finrelease` SSHSIG namespace (a statement is never a valid bundle nor the reverse:
each refuses the other's fields). `verify_bundle` accepts it only when at least `threshold`
distinct administrators of the trust root signed it validly; `serial` only grows, so a
worker can refuse an older bundle replayed after a change of approvers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from governance import sshsig
from governance.calendar import FreezeCalendar, parse_calendar
from governance.documents import Problems, join
from governance.evidence import canonical_json
from governance.inventory import Inventory, parse_inventory
from governance.policy import ApprovalPolicy, parse_policy
from governance.problems import ValidationFailed
from governance.quoting import quoted
from governance.sshsig import BadSignature, MalformedSignature, PublicKey
from governance.trust import TrustRoot, key_map

FORMAT = "finrelease-governance/1"
MAX_BUNDLE_BYTES = 2 * 1024 * 1024  # Temporal refuses payloads over 2 MiB
MAX_SIGNATURES = 32
_KEYS = ("format", "serial", "policy", "inventory", "calendars", "members")

MALFORMED = "malformed"
QUORUM_NOT_MET = "quorum_not_met"
SERIAL_TOO_OLD = "serial_too_old"


class BundleRefused(ValueError):
    """A bundle that must not govern a release; `reason` is one of the codes above."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")


@dataclass(frozen=True)
class GovernanceBundle:
    serial: int
    policy: ApprovalPolicy
    inventory: Inventory
    calendars: dict[str, FreezeCalendar]
    members: dict[str, tuple[PublicKey, ...]]
    texts: dict[str, Any]  # the documents as signed: policy, inventory, calendars
    digest: str

    def keys_of(self) -> dict[str, tuple[PublicKey, ...]]:
        """identity -> public keys, as `verify_statement(keys_of=...)` wants it."""
        return dict(self.members)


@dataclass(frozen=True)
class BundleVerdict:
    bundle: GovernanceBundle
    signed_by: tuple[str, ...]  # the distinct administrators whose signature held


def pack_bundle(
    *,
    serial: int,
    policy: str,
    inventory: str,
    calendars: Mapping[str, str],
    members: Mapping[str, Iterable[str]],
) -> bytes:
    """The canonical bundle bytes for these documents; `BundleRefused` when any is invalid."""
    document = {
        "format": FORMAT,
        "serial": serial,
        "policy": policy,
        "inventory": inventory,
        "calendars": dict(calendars),
        "members": {identity: list(keys) for identity, keys in members.items()},
    }
    data = canonical_json(document).encode("utf-8")
    parse_bundle(data)
    return data


def parse_bundle(data: bytes) -> GovernanceBundle:
    """Parse and check canonical bundle bytes; `BundleRefused(MALFORMED)` listing the problems."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleRefused(MALFORMED, f"{len(data):,} bytes, at most {MAX_BUNDLE_BYTES:,}")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleRefused(MALFORMED, f"not JSON: {quoted(str(exc), 80)}") from None
    problems = Problems()
    root = problems.keys(document, "", required=_KEYS)
    if root is None or problems:
        raise _refused(problems)
    if root["format"] != FORMAT:
        problems.add("format", f"must be {FORMAT!r}, not {quoted(root['format'])}")
    serial = problems.integer(root["serial"], "serial", minimum=1)
    policy = _document(root["policy"], "policy", parse_policy, problems)
    inventory = _document(root["inventory"], "inventory", parse_inventory, problems)
    calendars: dict[str, FreezeCalendar] = {}
    for name, text in (problems.mapping(root["calendars"], "calendars") or {}).items():
        parsed = _document(
            text, join("calendars", name), lambda t, n=name: parse_calendar(t, n), problems
        )
        if parsed is not None:
            calendars[name] = parsed
    members = key_map(root["members"], "members", problems)
    if problems:
        raise _refused(problems)
    assert policy is not None and inventory is not None and serial is not None
    for role, people in policy.approvers.items():
        for person in people:
            if person not in members:
                problems.add(
                    join("policy.approvers", role), f"{quoted(person)} has no key under members"
                )
    for i, tenant in enumerate(inventory.tenants):
        if tenant.calendar not in calendars:
            problems.add(
                join(f"inventory.tenants[{i}]", "calendar"),
                f"no calendar {quoted(tenant.calendar)} in the bundle",
            )
    if canonical_json(document).encode("utf-8") != data:
        problems.add(
            "", "not canonical JSON (sorted keys, no whitespace): pack it with `governance pack`"
        )
    if problems:
        raise _refused(problems)
    texts = {
        "policy": root["policy"],
        "inventory": root["inventory"],
        "calendars": dict(root["calendars"]),
    }
    return GovernanceBundle(
        serial, policy, inventory, calendars, members, texts, hashlib.sha256(data).hexdigest()
    )


def sign_bundle(data: bytes, key: sshsig.SigningKey) -> str:
    """An administrator's armored SSHSIG over the bundle bytes (checked first)."""
    parse_bundle(data)
    return sshsig.sign(data, key)


def verify_bundle(
    data: bytes, signatures: Iterable[str], trust_root: TrustRoot, *, min_serial: int = 1
) -> BundleVerdict:
    """The bundle, if `trust_root.threshold` distinct administrators signed these bytes.

    Signatures that fail, or come from keys outside the trust root, count for nothing; the
    refusal says how many of each there were, so an operator can tell a typo from an attack.
    """
    bundle = parse_bundle(data)
    if bundle.serial < min_serial:
        raise BundleRefused(
            SERIAL_TOO_OLD, f"serial {bundle.serial}, this worker has seen {min_serial}"
        )
    signatures = list(signatures)
    if len(signatures) > MAX_SIGNATURES:
        raise BundleRefused(MALFORMED, f"{len(signatures)} signatures, at most {MAX_SIGNATURES}")
    signed_by: list[str] = []
    failed = strangers = 0
    for signature in signatures:
        try:
            key = sshsig.verify(data, signature)
        except (MalformedSignature, BadSignature):
            failed += 1
            continue
        owner = trust_root.owner_of(key)
        if owner is None:
            strangers += 1
        elif owner not in signed_by:
            signed_by.append(owner)
    if len(signed_by) < trust_root.threshold:
        who = ", ".join(signed_by) or "none"
        raise BundleRefused(
            QUORUM_NOT_MET,
            f"{trust_root.threshold} of {len(trust_root.admins)} governance administrators must "
            f"sign bundle {bundle.digest[:12]}; valid signatures from {len(signed_by)} ({who}); "
            f"{failed} did not verify, {strangers} by keys outside the trust root",
        )
    return BundleVerdict(bundle, tuple(signed_by))


def _document(value: Any, path: str, parse: Any, problems: Problems) -> Any:
    if not isinstance(value, str):
        problems.add(path, "must be the document's text")
        return None
    try:
        return parse(value)
    except ValidationFailed as exc:
        problems.extend(exc.problems, path)
        return None


def _refused(problems: Problems) -> BundleRefused:
    shown = [str(p) for p in problems.items[:20]]
    more = len(problems.items) - len(shown)
    return BundleRefused(MALFORMED, "; ".join(shown) + (f"; and {more} more" if more else ""))
