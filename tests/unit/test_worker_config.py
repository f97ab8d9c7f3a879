"""The workflows worker's own configuration: routing under its prefix, the demo clock flag."""

from __future__ import annotations

import pytest

from starter.status_view import status_lines
from workflows.contracts import QUEUE_OF
from workflows.messages import ReleaseStatus
from workflows.validation import simulated_start_problems
from workflows.worker_config import config_from_environment


def test_routing_is_the_contract_under_the_worker_prefix_and_the_clock_is_real_by_default():
    config = config_from_environment({}, "ci-")
    assert config.queues == {name: f"ci-{queue}" for name, queue in QUEUE_OF.items()}
    assert config.demo_clock is False


@pytest.mark.parametrize("value,demo", [("1", True), ("true", True), ("0", False), ("", False)])
def test_demo_clock_only_when_the_worker_environment_says_so(value: str, demo: bool):
    assert config_from_environment({"FINRELEASE_DEMO_CLOCK": value}).demo_clock is demo


def test_simulated_start_is_refused_on_real_time_and_checked_on_a_demo_clock():
    assert simulated_start_problems("", demo_clock=False) == []
    (refused,) = simulated_start_problems("2026-11-27T10:00:00+01:00", demo_clock=False)
    assert refused.startswith("simulated_start: refused") and "FINRELEASE_DEMO_CLOCK" in refused
    assert simulated_start_problems("2026-11-27T10:00:00+01:00", demo_clock=True) == []
    (garbled,) = simulated_start_problems("x" * 5000, demo_clock=True)
    assert "not an ISO 8601 instant" in garbled and len(garbled) < 120  # a short prefix only


def test_status_says_in_capitals_when_a_release_runs_on_a_simulated_clock():
    status = ReleaseStatus(
        "FIN-1", "AwaitingApproval", "", "a" * 64, "low", [], {}, [], "", "", [], False, {}, "",
        simulated_start="2026-11-27T10:00:00+01:00",
    )  # fmt: skip
    assert status_lines(status)[1].startswith("SIMULATED CLOCK: runs as if started at 2026-11-27")
    status.simulated_start = ""
    assert not any("SIMULATED" in line for line in status_lines(status))
