"""Governance documents: no anchors or aliases, and problems that quote only a short prefix."""

from __future__ import annotations

import pytest

from governance import ValidationFailed, load_yaml, parse_policy

pytestmark = pytest.mark.unit

# the "billion laughs" shape: 530 bytes of YAML, tens of megabytes once expanded
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


def _problems(text: str) -> list[str]:
    with pytest.raises(ValidationFailed) as failed:
        parse_policy(text)
    return [str(p) for p in failed.value.problems]


def test_an_alias_bomb_is_refused_in_one_short_problem():
    (problem,) = _problems(BOMB)
    assert "YAML anchors and aliases are not allowed" in problem and len(problem) < 100


def test_a_single_anchor_or_alias_is_refused_with_its_line():
    with pytest.raises(ValidationFailed) as failed:
        load_yaml("approvers:\n  platform: &p [bob@example.com]\n  finance: *p\n")
    assert "line 2: YAML anchors and aliases are not allowed" in str(failed.value.problems[0])


def test_stars_and_ampersands_in_plain_text_are_fine():
    assert load_yaml("url: 'https://x.example/?a=1&b=*'\n") == {"url": "https://x.example/?a=1&b=*"}


def test_problems_quote_a_short_prefix_of_huge_values():
    huge = "z" * 1_000_000
    problems = _problems(
        f"approvers: {{platform: [bob@example.com]}}\n"
        f"risk: {{low: {{approvals: {{platform: 1}}, rehearse: {huge}}}}}\n"
        f"approval_timeout: {huge}\n{'k' * 1000}: 1\n"
    )
    assert problems and all(len(p) < 300 for p in problems), [p[:300] for p in problems]
    assert any("approval_timeout" in p and "(1,000,002 characters)" in p for p in problems)
    assert any("kkkk…: unknown key" in p for p in problems), problems
