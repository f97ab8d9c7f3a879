"""Label and field selectors as the API server parses them on list requests."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Requirement = Callable[[Mapping[str, str]], bool]

_SET = re.compile(r"^\s*(?P<key>[^\s!=,()]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)\s*$")
_EQUALITY = re.compile(r"^\s*(?P<key>[^\s!=,()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=,()]*)\s*$")
_EXISTS = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=,()]+)\s*$")


class SelectorError(ValueError):
    """A selector the API server would refuse with 400 Bad Request."""


def parse_label_selector(text: str) -> list[Requirement]:
    """`a=b,c!=d,e in (f,g),!h,i` -> requirements that must all hold."""
    return [_requirement(part) for part in _split(text) if part.strip()]


def matches(requirements: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    return all(requirement(labels or {}) for requirement in requirements)


def _split(text: str) -> list[str]:
    # commas inside `in (a,b)` do not separate requirements
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _requirement(part: str) -> Requirement:
    if found := _SET.match(part):
        key, values = found["key"], {v.strip() for v in found["values"].split(",")}
        if found["op"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if found := _EQUALITY.match(part):
        key, value = found["key"], found["value"]
        if found["op"] == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if found := _EXISTS.match(part):
        key = found["key"]
        if found["neg"]:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise SelectorError(f"unable to parse requirement: {part.strip()!r}")


def field_matches(selector: str, obj: dict[str, Any]) -> bool:
    """Field selectors the API server supports everywhere (metadata.name/namespace) and
    `status.phase` for pods; `a=b` and `a!=b` only."""
    for part in _split(selector):
        if not part.strip():
            continue
        found = _EQUALITY.match(part)
        if not found:
            raise SelectorError(f"invalid field selector: {part.strip()!r}")
        node: Any = obj
        for segment in found["key"].split("."):
            node = node.get(segment) if isinstance(node, dict) else None
        actual = "" if node is None else str(node)
        if (actual == found["value"]) == (found["op"] == "!="):
            return False
    return True
