"""Identities (e-mail-like names of people and pipelines): what one may look like, and the
one canonical way to compare two.

A look-alike must not pass for someone else: a Cyrillic "а" among Latin letters let a
requester approve their own release, and `Carol@example.com` was refused for carol. So an
identity is refused when it is longer than an e-mail address may be (254, RFC 5321), holds
a control, format (zero-width, bidi) or whitespace character, is not in NFKC form
(fullwidth and other compatibility letters), or mixes letters of scripts that UTS #39
("highly restrictive") would not allow together, such as Latin with Cyrillic; and
identities are compared NFKC-normalised and case-folded.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from governance.documents import Problems

MAX_IDENTITY = 254
# Japanese writes one name in three scripts; they count as one here (Han and Kana)
_SCRIPT_FAMILIES = {"HIRAGANA": "CJK", "KATAKANA": "CJK"}


def canonical_identity(identity: str) -> str:
    """The form identities are compared in: NFKC, surrounding space stripped, case folded."""
    return unicodedata.normalize("NFKC", identity).strip().casefold()


def same_identity(a: str, b: str) -> bool:
    return canonical_identity(a) == canonical_identity(b)


def identity_problem(identity: str) -> str:
    """Why `identity` is not acceptable ("" when it is); never quotes more than a prefix."""
    if not identity:
        return "must be non-empty"
    if len(identity) > MAX_IDENTITY:
        return f"must be at most {MAX_IDENTITY} characters, not {len(identity):,}"
    for char in identity:
        category = unicodedata.category(char)
        if category[0] in "CZ":  # Cc Cf Co Cn Cs, Zs Zl Zp
            return f"must not contain control, invisible or space characters (U+{ord(char):04X})"
    if unicodedata.normalize("NFKC", identity) != identity:
        return "must be in NFKC form (no fullwidth or other compatibility characters)"
    scripts = _scripts(identity)
    # UTS #39 "highly restrictive": one script, or Latin with Han/Kana or Han/Hangul
    if len(scripts) > 1 and not (scripts - {"LATIN"}) <= {"CJK", "HANGUL"}:
        return f"mixes scripts ({', '.join(sorted(scripts))}): a look-alike character?"
    return ""


def read_identity(value: Any, path: str, problems: Problems) -> str | None:
    """A document field holding an identity (e.g. the spec's `requested_by`)."""
    text = problems.text(value, path)
    problem = identity_problem(text) if text is not None else ""
    if problem:
        problems.add(path, problem)
        return None
    return text


def _scripts(identity: str) -> set[str]:
    """The scripts of the letters, from their Unicode names ("CYRILLIC SMALL LETTER A")."""
    scripts = set()
    for char in identity:
        if char.isalpha():
            first = unicodedata.name(char, "UNKNOWN").split()[0]
            scripts.add(_SCRIPT_FAMILIES.get(first, first))
    return scripts
