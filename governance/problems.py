"""Validation problems: every rule broken, each named by its path, collected before raising."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One broken rule: `path` locates the value (``rollout.waves[1].size``), `rule` says why."""

    path: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}" if self.path else self.rule


class ValidationFailed(ValueError):
    """Raised with every problem found in a document, never just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
