"""Reading governance documents: strict YAML, and collecting every problem with its path.

A typo in a finance policy must never be silently ignored, so the loader refuses
duplicate keys (and leaves dates as text for the documents to check), and
`Problems.keys` refuses unknown ones. Malformed YAML is reported with its line and
column (1-based). Anchors and aliases are refused: a governance document says everything
once, where a reviewer reads it, and a 530-byte alias bomb expanded to a 35 MB error.
Problems quote at most a short prefix of a value (`quoted`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

import yaml

from governance.problems import Problem, ValidationFailed

P = ParamSpec("P")
R = TypeVar("R")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


# libyaml's parser when PyYAML was built with it: the workflow parses the pinned documents in
# its first task, and the pure-Python parser needs seconds for a 1,000-tenant inventory —
# beyond Temporal's 2 s deadlock detector (measured in bench/orchestration.py).
_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """SafeLoader that refuses duplicate mapping keys (the second would silently win)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # unhashable key: the constructor below reports it properly
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {quoted(key)}",
                key_node.start_mark,
            )
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# Dates stay text: the documents parse them themselves, so a bad date (2026-13-01) is
# reported with its path instead of failing the whole YAML load.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


QUOTE_LIMIT = 40


def quoted(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """`repr(value)`, cut to `limit` characters: a problem names a value, never replays it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _refuse_aliases(text: str) -> None:
    # only a document with & or * can hold an anchor or an alias: skip the extra pass
    # (the workflow parses a 1,000-tenant inventory inside a 2 s workflow task)
    if "&" not in text and "*" not in text:
        return
    for event in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            line = event.start_mark.line + 1 if event.start_mark else 0
            raise ValidationFailed(
                [Problem("", f"line {line}: YAML anchors and aliases are not allowed")]
            )


def load_yaml(text: str) -> Any:
    """Parse YAML text; raise `ValidationFailed` naming line and column when malformed."""
    try:
        _refuse_aliases(text)
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        problem = f"malformed YAML at {where}{what}"
        raise ValidationFailed([Problem("", problem[:300])]) from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        raise ValidationFailed([Problem("", f"malformed YAML: {str(exc)[:300]}")]) from None


def problems_only(parse: Callable[P, R]) -> Callable[P, R]:
    """Let a parser raise `ValidationFailed` only: arbitrary input must never crash a caller.

    The parsers check every rule they know; this net turns anything they did not foresee
    (an overflow on an absurd date, say) into a problem instead of a traceback.
    """

    @functools.wraps(parse)
    def parse_or_report(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return parse(*args, **kwargs)
        except ValidationFailed:
            raise
        except Exception as exc:
            raise ValidationFailed(
                [Problem("", f"unreadable document: {quoted(exc, 200)}")]
            ) from None

    return parse_or_report


def join(path: str, key: str | int) -> str:
    """`join("rollout", "waves")` -> `rollout.waves`; `join("waves", 1)` -> `waves[1]`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def parse_duration(text: str) -> timedelta:
    """`30m`, `72h`, `2d`, `45s` and combinations in d-h-m-s order (`1h30m`); ValueError else."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"not a duration like 30m, 72h, 2d or 1h30m: {quoted(text)}")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    try:
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration too long: {quoted(text)}") from None


def format_duration(delta: timedelta) -> str:
    """The inverse of `parse_duration` (`0s` for zero)."""
    total = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size:
            parts.append(f"{total // size}{unit}")
            total %= size
    return "".join(parts) or "0s"


class Problems:
    """Collects problems while a document is read; `raise_if_any` raises them all at once."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, path: str, rule: str) -> None:
        self.items.append(Problem(path, rule))

    def extend(self, problems: Iterable[Problem], prefix: str = "") -> None:
        for p in problems:
            self.add(join(prefix, p.path) if prefix and p.path else (p.path or prefix), p.rule)

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationFailed(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    # --- typed readers: each returns None (and records a problem) when the value is wrong

    def keys(
        self,
        value: Any,
        path: str,
        required: Iterable[str] = (),
        optional: Iterable[str] = (),
    ) -> Mapping[str, Any] | None:
        """Check `value` is a mapping with every required key and no unknown key."""
        if not isinstance(value, Mapping):
            self.add(path, f"must be a mapping, not {_kind(value)}")
            return None
        required = tuple(required)
        allowed = set(required) | set(optional)
        for key in value:
            if not isinstance(key, str):
                self.add(path, f"keys must be text, not {_kind(key)} ({quoted(key)})")
            elif key not in allowed:
                where = join(path, key if len(key) <= QUOTE_LIMIT else f"{key[:QUOTE_LIMIT]}…")
                self.add(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for key in required:
            if key not in value:
                self.add(join(path, key), "is required")
        return value

    def mapping(self, value: Any, path: str) -> Mapping[str, Any] | None:
        """A mapping whose keys are names chosen by the author (roles, for instance)."""
        return self.keys(value, path, optional=value.keys() if isinstance(value, Mapping) else ())

    def text(self, value: Any, path: str, pattern: str | None = None, hint: str = "") -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.add(path, f"must be non-empty text, not {_kind(value)}")
            return None
        if pattern and not re.fullmatch(pattern, value):
            self.add(path, hint or f"must match {pattern}")
            return None
        return value

    def choice(self, value: Any, path: str, choices: Iterable[str]) -> str | None:
        choices = tuple(choices)
        if not isinstance(value, str) or value not in choices:
            self.add(path, f"must be one of {' | '.join(choices)}, not {quoted(value)}")
            return None
        return value

    def integer(self, value: Any, path: str, minimum: int | None = None) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, f"must be a whole number, not {_kind(value)}")
            return None
        if minimum is not None and value < minimum:
            self.add(path, f"must be ≥ {minimum}, not {value}")
            return None
        return value

    def boolean(self, value: Any, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.add(path, f"must be true or false, not {quoted(value)}")
            return None
        return value

    def duration(self, value: Any, path: str) -> timedelta | None:
        try:
            return parse_duration(value)
        except ValueError:
            self.add(path, f"must be a duration like 30m, 72h or 2d, not {quoted(value)}")
            return None

    def texts(self, value: Any, path: str, unique: bool = True) -> list[str] | None:
        """A list of non-empty texts (each item checked, duplicates refused)."""
        if not isinstance(value, list):
            self.add(path, f"must be a list, not {_kind(value)}")
            return None
        items = [self.text(v, join(path, i)) for i, v in enumerate(value)]
        if unique:
            seen: set[str] = set()
            for i, item in enumerate(items):
                if item is None:
                    continue
                if item in seen:
                    self.add(join(path, i), f"duplicate {quoted(item)}")
                seen.add(item)
        return None if any(i is None for i in items) else [i for i in items if i is not None]


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: f"text {quoted(value)}",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)
