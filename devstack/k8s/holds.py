"""Held answers: the API server applied a write, but its client has not heard back yet.

The failure every idempotent activity must survive: the change happened, the worker dies
before it learns so, and the retry meets a cluster that already changed. A test arms a hold
on one object and verb (`POST /_double/holds {resource, namespace, name, verb}`, resource
`deployments` unless given); the next such request is applied as usual and its answer
waits until the test releases every held answer (`DELETE /_double/holds`).
`GET /_double/holds` shows each hold and whether a request is waiting on it, so a test can
act at exactly that moment (e.g. kill the worker). A hold is used once; when its client is
gone by the release, the answer goes nowhere, as on a real API server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

VERBS = ("PATCH", "PUT")


@dataclass
class Hold:
    resource: str  # plural: deployments, jobs, ...
    namespace: str
    name: str
    verb: str
    waiting: bool = False  # a request matched; its answer is held
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def to_json(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "namespace": self.namespace,
            "name": self.name,
            "verb": self.verb,
            "waiting": self.waiting,
        }


class AnswerHolds:
    """Armed and waiting holds of one double (use from its event loop only)."""

    def __init__(self) -> None:
        self.holds: list[Hold] = []

    def arm(self, resource: str, namespace: str, name: str, verb: str) -> Hold:
        if verb not in VERBS:
            raise ValueError(f"verb must be one of {', '.join(VERBS)}, not {verb!r}")
        if not resource or not namespace or not name:
            raise ValueError("resource, namespace and name are required")
        hold = Hold(resource, namespace, name, verb)
        self.holds.append(hold)
        return hold

    def take(self, resource: str, namespace: str, name: str, verb: str) -> Hold | None:
        """The armed hold this request uses up, if any (it is then waiting)."""
        wanted = (resource, namespace, name, verb)
        for hold in self.holds:
            if not hold.waiting and (hold.resource, hold.namespace, hold.name, hold.verb) == wanted:
                hold.waiting = True
                return hold
        return None

    def release_all(self) -> int:
        """Let every held answer go and forget every hold; return how many were waiting."""
        waiting = [hold for hold in self.holds if hold.waiting]
        for hold in self.holds:
            hold.released.set()
        self.holds.clear()
        return len(waiting)
