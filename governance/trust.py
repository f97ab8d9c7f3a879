"""Who holds which keys: the trust root (K of N governance administrators) and key maps.

The trust root is a small YAML file configured on the workers, never sent by a caller:

    threshold: 2                     # K: distinct administrators that must sign a bundle
    admins:                          # N: identity -> public keys (allowed_signers style)
      alice@example.com: [ssh-ed25519 AAAA...]
      ops-hsm@example.com: [ecdsa-sha2-nistp256 AAAA...]

A key belongs to one identity only (two people sharing a key would count twice), and
identities are unique when case-folded, so `Alice@` and `alice@` cannot both appear.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from governance.documents import Problems, join, load_yaml, problems_only
from governance.quoting import quoted
from governance.sshsig import MalformedSignature, PublicKey

MAX_IDENTITY_CHARS = 254
MAX_KEYS_PER_IDENTITY = 8
# No controls, no invisible or direction-changing characters: an identity is printed.
_UNPRINTABLE = re.compile(
    r"[\x00-\x20\x7f-\x9f\u00a0\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)

KeyMap = Mapping[str, tuple[PublicKey, ...]]


@dataclass(frozen=True)
class TrustRoot:
    threshold: int
    admins: dict[str, tuple[PublicKey, ...]]

    def owner_of(self, key: PublicKey) -> str | None:
        return owner_of(self.admins, key)


def owner_of(keys_of: KeyMap, key: PublicKey) -> str | None:
    """The identity holding `key`, if any (a key has at most one owner, see `key_map`)."""
    for identity, keys in keys_of.items():
        if key in keys:
            return identity
    return None


@problems_only
def parse_trust_root(text: str) -> TrustRoot:
    """Parse a trust root file; `ValidationFailed` listing every problem."""
    problems = Problems()
    root = problems.keys(load_yaml(text), "", required=("threshold", "admins")) or {}
    admins = key_map(root.get("admins"), "admins", problems) if "admins" in root else {}
    threshold = (
        problems.integer(root.get("threshold"), "threshold", minimum=1)
        if "threshold" in root
        else None
    )
    if threshold is not None and admins and threshold > len(admins):
        problems.add("threshold", f"{threshold} signatures asked of {len(admins)} admins")
    problems.raise_if_any()
    assert threshold is not None
    return TrustRoot(threshold, admins)


def key_map(value: Any, path: str, problems: Problems) -> dict[str, tuple[PublicKey, ...]]:
    """`identity: [public key line, ...]`, checked: bounded identities, parseable and unshared keys."""
    entries = problems.mapping(value, path)
    result: dict[str, tuple[PublicKey, ...]] = {}
    folded: dict[str, str] = {}
    owners: dict[PublicKey, str] = {}
    for identity, lines in (entries or {}).items():
        # checked before it becomes part of a path: a path is printed as it is
        if not isinstance(identity, str) or not check_identity(identity, path, problems):
            continue
        where = join(path, identity)
        if identity.casefold() in folded:
            problems.add(
                where, f"the same identity as {quoted(folded[identity.casefold()])} (case aside)"
            )
            continue
        folded[identity.casefold()] = identity
        texts = problems.texts(lines, where)
        if texts is None:
            continue
        if not 1 <= len(texts) <= MAX_KEYS_PER_IDENTITY:
            problems.add(where, f"must list 1 to {MAX_KEYS_PER_IDENTITY} public keys")
            continue
        keys = []
        for i, line in enumerate(texts):
            try:
                key = PublicKey.parse(line)
            except MalformedSignature as exc:
                problems.add(join(where, i), str(exc))
                continue
            if key in owners:
                problems.add(
                    join(where, i), f"key {key.fingerprint} is also {quoted(owners[key])}'s"
                )
                continue
            owners[key] = identity
            keys.append(key)
        result[identity] = tuple(keys)
    if entries is not None and not entries:
        problems.add(path, "must name at least one identity")
    return result


def check_identity(identity: str, path: str, problems: Problems) -> bool:
    """Record the problem with `identity`, if any; True when it is usable."""
    problem = identity_problem(identity)
    if problem:
        problems.add(path, problem)
    return problem is None


def identity_problem(identity: str) -> str | None:
    """Why `identity` cannot name a person or service (1-254 printable characters, no spaces,
    controls or invisible characters), or None."""
    if not 0 < len(identity) <= MAX_IDENTITY_CHARS:
        return f"an identity has 1 to {MAX_IDENTITY_CHARS} characters"
    if _UNPRINTABLE.search(identity):
        return f"identity {quoted(identity)} contains a space, control or invisible character"
    return None
